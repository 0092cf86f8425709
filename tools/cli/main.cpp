// outpost: the command-line tool for an outbox file on a live device.
//
// The top level lives here: parsing with the Program (program.hpp: the program's help and
// options, the common options, the command table of command.hpp) and running the command parsed;
// each command's options, help and work are in its cmd_*.cpp file. Exit codes:
// 0 ok, 1 failure, 2 usage error, 3 `sync` timed out with records pending, 4 `sync` left nothing
// pending but records went dead or expired during it, 5 `check` found problems in the file.
#include <CLI/CLI.hpp>
#include <iostream>
#include <string>

#include "command.hpp"
#include "outpost/error.hpp"
#include "program.hpp"
#include "text.hpp"

namespace {

using namespace outpost::cli;

// One line, whatever the message holds.
std::string flatten(const std::string& text) {
    std::string out;
    for (const char c : text) {
        if (c == '\n') {
            if (!out.empty() && out.back() != ' ') {
                out += "; ";
            }
        } else {
            out += c;
        }
    }
    while (!out.empty() && (out.back() == ' ' || out.back() == ';')) {
        out.pop_back();
    }
    return one_line(out);
}

}  // namespace

int main(int argc, char** argv) {
    Program program;
    CLI::App& app = program.app();

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) {
            return app.exit(e);  // --help, --version
        }
        std::string where = "outpost";
        for (const CLI::App* sub : app.get_subcommands()) {
            where += " " + sub->get_name();
        }
        std::cerr << "outpost: usage error: " << flatten(e.what()) << " (see '" << where
                  << " --help')\n";
        return kExitUsage;
    }

    try {
        if (const Run* run = program.parsed_run()) {
            return (*run)();
        }
    } catch (const UsageError& e) {
        std::cerr << "outpost: usage error: " << flatten(e.what()) << '\n';
        return kExitUsage;
    } catch (const outpost::Error& e) {
        std::cerr << "outpost: error: " << flatten(e.what()) << '\n';
        return kExitFailure;
    } catch (const std::exception& e) {
        std::cerr << "outpost: error: " << flatten(e.what()) << '\n';
        return kExitFailure;
    }
    return kExitFailure;  // unreachable: require_subcommand(1)
}
