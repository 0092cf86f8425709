// Fuzz target: the config file of the outpost command (`outpost --config FILE COMMAND`, TOML or
// INI, a section per command: tools/cli/program.cpp), the one configuration file the project
// reads. The library itself reads none: its options are structs the app fills.
//
// The first byte picks the command, the rest is the file, written to a scratch file and parsed
// by the tool's own Program (never run). Parsing must end in a CLI::ParseError (formatted as the
// tool prints it) or in that command selected with options that give AdminOptions.
#include <CLI/CLI.hpp>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "command.hpp"
#include "fuzz_support.hpp"
#include "program.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    outpost::fuzz::Bytes in(data, size);
    const auto commands = outpost::cli::commands();
    std::string command = commands[in.byte() % commands.size()]->name;
    const std::string file = (outpost::fuzz::scratch_dir() / "config.toml").string();
    {
        std::ofstream out(file, std::ios::binary | std::ios::trunc);
        out << in.rest();
        outpost::fuzz::require(static_cast<bool>(out.flush()), "writing the config file");
    }
    std::vector<std::string> args{"outpost", "--config", file, command};
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
        program.app().exit(e, out, err);
        return 0;
    }
    outpost::fuzz::require(program.parsed_run() != nullptr,
                           "a parse without error selected no command");
    try {
        (void)outpost::cli::admin_options(program.common(), true);
    } catch (const std::exception& e) {
        outpost::fuzz::fail(std::string("busy-timeout passed its check but: ") + e.what());
    }
    return 0;
}
