#include "program.hpp"

#include <string>

namespace outpost::cli {

namespace {

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

Program::Program()
    : app_{
          "outpost: inspect and maintain an outpost outbox (a SQLite file shared with a running "
          "app),\n"
          "and deliver its pending records to an MQTT broker.\n"
          "Safe next to the running app and its dispatcher: reads are short, writes are small\n"
          "BEGIN IMMEDIATE transactions with a busy timeout, and read commands never modify "
          "the file.",
          "outpost"} {
    app_.require_subcommand(1);
    app_.set_version_flag("--version", std::string("outpost ") + OUTPOST_CLI_VERSION);
    app_.allow_config_extras(false);  // a misspelt key in a config file is an error, not ignored
    app_.set_config("--config", "",
                    "Read options from a TOML or INI file; options of a command go in a section "
                    "named after it, e.g. [sync] broker=\"mqtts://host:8883\"")
        ->type_name("FILE");
    app_.fallthrough();  // `outpost sync --config FILE ...` works too
    app_.footer(
        "Durations: a number and a unit, ms s m h d w, summed: 30s, 5m, 2h, 7d, 1h30m.\n"
        "Exit codes: 0 ok, 1 failure (one line on stderr names it), 2 usage error,\n"
        "3 sync timed out with records still pending, 4 sync left nothing pending but\n"
        "records went dead or expired during it, 5 check found problems in the file.\n"
        "Times in JSON are milliseconds since the Unix epoch (UTC).\n"
        "Run 'outpost COMMAND --help' for a command's options.");

    for (const Command* command : commands()) {
        CLI::App* cmd = app_.add_subcommand(command->name, command->description);
        add_common(*cmd, common_);
        runs_.emplace_back(cmd, command->setup(*cmd, common_));
    }
}

const Run* Program::parsed_run() const {
    for (const auto& [cmd, run] : runs_) {
        if (cmd->parsed()) {
            return &run;
        }
    }
    return nullptr;
}

}  // namespace outpost::cli
