// outpost: the command-line tool for an outbox file on a live device.
//
// The top level lives here: the program's help and options, the common options, and the loop over
// the command table (command.hpp); each command's options, help and work are in its cmd_*.cpp
// file. Exit codes:
// 0 ok, 1 failure, 2 usage error, 3 `sync` timed out with records pending, 4 `sync` left nothing
// pending but records went dead or expired during it, 5 `check` found problems in the file.
#include <CLI/CLI.hpp>
#include <iostream>
#include <string>

#include "command.hpp"
#include "outpost/error.hpp"
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

void add_common(CLI::App& cmd, Common& common) {
    cmd.add_option("--db", common.db, "The outbox database file (never created by this tool)")
        ->required()
        ->envname("OUTPOST_DB")
        ->type_name("FILE");
    cmd.add_flag("--json", common.json,
                 "Machine-readable output: one JSON document (JSON Lines for export and sync)");
    cmd.add_option("--busy-timeout", common.busy_timeout,
                   "How long to wait for a lock held by the app or the dispatcher")
        ->check(duration_validator())
        ->type_name("DURATION")
        ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "outpost: inspect and maintain an outpost outbox (a SQLite file shared with a running "
        "app),\n"
        "and deliver its pending records to an MQTT broker.\n"
        "Safe next to the running app and its dispatcher: reads are short, writes are small\n"
        "BEGIN IMMEDIATE transactions with a busy timeout, and read commands never modify the "
        "file.",
        "outpost"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string("outpost ") + OUTPOST_CLI_VERSION);
    app.allow_config_extras(false);  // a misspelt key in a config file is an error, not ignored
    app.set_config("--config", "",
                   "Read options from a TOML or INI file; options of a command go in a section "
                   "named after it, e.g. [sync] broker=\"mqtts://host:8883\"")
        ->type_name("FILE");
    app.fallthrough();  // `outpost sync --config FILE ...` works too
    app.footer(
        "Durations: a number and a unit, ms s m h d w, summed: 30s, 5m, 2h, 7d, 1h30m.\n"
        "Exit codes: 0 ok, 1 failure (one line on stderr names it), 2 usage error,\n"
        "3 sync timed out with records still pending, 4 sync left nothing pending but\n"
        "records went dead or expired during it, 5 check found problems in the file.\n"
        "Times in JSON are milliseconds since the Unix epoch (UTC).\n"
        "Run 'outpost COMMAND --help' for a command's options.");

    Common common;

    std::vector<std::pair<CLI::App*, Run>> parsed_runs;
    for (const Command* command : commands()) {
        CLI::App* cmd = app.add_subcommand(command->name, command->description);
        add_common(*cmd, common);
        parsed_runs.emplace_back(cmd, command->setup(*cmd, common));
    }

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
        for (const auto& [cmd, run] : parsed_runs) {
            if (cmd->parsed()) {
                return run();
            }
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
