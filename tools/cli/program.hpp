// The whole `outpost` command line without running anything: the program's help and options,
// the common options and every command of the table (command.hpp), as one CLI11 app.
//
// main() parses argv with it and runs the command that was parsed; the argument fuzzer
// (tests/faults/fuzz) parses with it alone, so the parsing it tests is the tool's own.
#pragma once

#include <CLI/CLI.hpp>
#include <utility>
#include <vector>

#include "command.hpp"

namespace outpost::cli {

class Program {
  public:
    Program();
    Program(const Program&) = delete;
    Program& operator=(const Program&) = delete;

    CLI::App& app() noexcept { return app_; }
    const Common& common() const noexcept { return common_; }

    // The run function of the command app().parse() selected, or nullptr when none was parsed.
    const Run* parsed_run() const;

  private:
    CLI::App app_;
    Common common_;
    std::vector<std::pair<CLI::App*, Run>> runs_;
};

}  // namespace outpost::cli
