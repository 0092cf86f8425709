// Fuzz target: the outpost command line, parsed by the tool's own Program (tools/cli/program.hpp:
// every command of the table with its options and checks), never run: nothing touches a file or
// the network.
//
// The bytes are argv after the program name, split at NUL bytes. Parsing must end in a
// CLI::ParseError (whose message, help or version text is then formatted as the tool prints it)
// or in exactly one command selected, whose common options give AdminOptions without an error
// (--busy-timeout passed its check, so it must parse). Each argument is also given to
// parse_duration: accepted means a non-negative count that reads back from "<count>ms".
// --config is left to fuzz_config: an argument naming a file would make the run read it.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "command.hpp"
#include "duration.hpp"
#include "fuzz_support.hpp"
#include "program.hpp"

namespace {

using outpost::fuzz::require;

void duration(const std::string& text) {
    std::chrono::milliseconds d;
    try {
        d = outpost::cli::parse_duration(text);
    } catch (const std::invalid_argument&) {
        return;
    }
    require(d.count() >= 0, "parse_duration() gave a negative duration");
    require(outpost::cli::parse_duration(std::to_string(d.count()) + "ms") == d,
            "parse_duration() of its own count in ms differs");
    require(!outpost::cli::format_duration(d).empty(), "format_duration() gave nothing");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::vector<std::string> args{"outpost"};
    std::string current;
    for (std::size_t i = 0; i < size; ++i) {
        if (data[i] == 0) {
            args.push_back(current);
            current.clear();
        } else {
            current += static_cast<char>(data[i]);
        }
    }
    if (size > 0) {
        args.push_back(current);
    }
    for (const std::string& a : args) {
        if (a.find("config") != std::string::npos) {
            return 0;
        }
        duration(a);
    }
    std::vector<char*> argv;
    for (std::string& a : args) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);

    outpost::cli::Program program;
    try {
        program.app().parse(static_cast<int>(args.size()), argv.data());
    } catch (const CLI::ParseError& e) {
        std::ostringstream out, err;
        program.app().exit(e, out, err);  // what the tool prints: help, version or the error
        return 0;
    }
    require(program.parsed_run() != nullptr, "a parse without error selected no command");
    try {
        (void)outpost::cli::admin_options(program.common(), true);
    } catch (const std::exception& e) {
        outpost::fuzz::fail(std::string("--busy-timeout passed its check but: ") + e.what());
    }
    return 0;
}
