// The `outpost` subcommands as a table: main() adds each entry of commands() as a CLI11
// subcommand, lets the entry declare its options, and runs the one that was parsed.
//
// A command's run function writes its result to stdout (an aligned table or key/value lines for
// people, one JSON document or JSON Lines with --json) and returns the process exit code.
// Failures are thrown (outpost::Error or std::exception) and turned into one line on stderr by
// main(); a UsageError exits with kExitUsage.
//
// To add a command: a cmd_NAME.cpp defining `extern const Command kNameCommand` (its options,
// help, footer and run function), its place in the table in command.cpp, and the file in
// meson.build.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>

#include "outpost/admin.hpp"
#include "outpost/message.hpp"

namespace outpost::cli {

// Exit codes.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitSyncTimeout = 3;  // records still pending at --timeout
// `sync` left nothing pending, but records went dead (retry cap) or expired (ttl) during it.
inline constexpr int kExitSyncGaveUp = 4;
// `check` examined the file and found problems (damaged, not SQLite, not an outbox, newer
// schema): its own code, so a script tells a damaged file from a check that could not run (1).
inline constexpr int kExitCheckFoundProblems = 5;

// A mistake in the arguments found after parsing: main() exits with kExitUsage.
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Options every command takes (declared by main() before the command's own).
struct Common {
    std::string db;
    bool json = false;
    std::string busy_timeout = "5s";
};

// Runs a parsed command; returns the exit code.
using Run = std::function<int()>;

struct Command {
    const char* name;
    const char* description;  // the one line shown in `outpost --help`
    // Declares the command's options, arguments and footer on `cmd` (the common options are
    // already there) and returns its run function, which reads what the options parsed into and
    // `common`. Both outlive the run function.
    Run (*setup)(CLI::App& cmd, const Common& common);
};

// Every command, in the order `outpost --help` lists them.
std::span<const Command* const> commands();

// The Admin options of `common` (busy timeout parsed), opened read-only or read-write.
outpost::AdminOptions admin_options(const Common& common, bool read_only);
outpost::Admin open_admin(const Common& common, bool read_only);

// Checks a DURATION option (see duration.hpp); the message names the problem.
const CLI::Validator& duration_validator();

// Which record states a --state option accepts.
enum class StateChoice {
    any,       // every state, or "all" (the default of list and export)
    finished,  // a state a record reaches at the end: delivered, dead, expired (purge)
};

// Adds `--state` to `cmd` with the accepted names as its check and its type name
// ("pending|delivered|dead|expired|all"), all derived from the one list of record states.
CLI::Option* add_state_option(CLI::App& cmd, std::string& state, StateChoice choice);

// std::nullopt for "all", otherwise the state named; a UsageError for anything else.
std::optional<RecordState> state_filter(const std::string& name);

}  // namespace outpost::cli
