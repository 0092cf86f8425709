// The command table and what several commands share.
#include "command.hpp"

#include <string>
#include <vector>

#include "duration.hpp"

namespace outpost::cli {

// Each defined in its own file.
extern const Command kStatsCommand;   // cmd_inspect.cpp
extern const Command kListCommand;    // cmd_inspect.cpp
extern const Command kShowCommand;    // cmd_inspect.cpp
extern const Command kAddCommand;     // cmd_add.cpp
extern const Command kRetryCommand;   // cmd_repair.cpp
extern const Command kPurgeCommand;   // cmd_repair.cpp
extern const Command kExportCommand;  // cmd_export.cpp
extern const Command kCheckCommand;   // cmd_check.cpp
extern const Command kSyncCommand;    // cmd_sync.cpp

namespace {

// The record states, in the order help texts and checks name them: the one list the --state
// options derive from.
constexpr RecordState kRecordStates[] = {RecordState::pending, RecordState::delivered,
                                         RecordState::dead, RecordState::expired};

std::vector<std::string> state_names(StateChoice choice) {
    std::vector<std::string> names;
    for (const RecordState s : kRecordStates) {
        if (choice == StateChoice::any || s != RecordState::pending) {
            names.emplace_back(to_string(s));
        }
    }
    if (choice == StateChoice::any) {
        names.emplace_back("all");
    }
    return names;
}

std::string joined(const std::vector<std::string>& names, const char* separator) {
    std::string out;
    for (const std::string& n : names) {
        out += (out.empty() ? "" : separator) + n;
    }
    return out;
}

constexpr const Command* kCommands[] = {
    &kStatsCommand, &kListCommand,   &kShowCommand,  &kAddCommand,  &kRetryCommand,
    &kPurgeCommand, &kExportCommand, &kCheckCommand, &kSyncCommand,
};

}  // namespace

std::span<const Command* const> commands() {
    return kCommands;
}

AdminOptions admin_options(const Common& common, bool read_only) {
    AdminOptions options;
    options.read_only = read_only;
    options.busy_timeout = parse_duration(common.busy_timeout);
    return options;
}

Admin open_admin(const Common& common, bool read_only) {
    return Admin(common.db, admin_options(common, read_only));
}

const CLI::Validator& duration_validator() {
    static const CLI::Validator v(
        [](std::string& text) -> std::string {
            try {
                parse_duration(text);
                return {};
            } catch (const std::exception& e) {
                return e.what();
            }
        },
        "DURATION", "duration");
    return v;
}

CLI::Option* add_state_option(CLI::App& cmd, std::string& state, StateChoice choice) {
    const std::vector<std::string> names = state_names(choice);
    return cmd.add_option("--state", state, "Which records")
        ->check(CLI::IsMember(names))
        ->type_name(joined(names, "|"));
}

std::optional<RecordState> state_filter(const std::string& name) {
    if (name == "all") {
        return std::nullopt;
    }
    if (auto s = parse_record_state(name)) {
        return s;
    }
    throw UsageError("unknown state '" + name + "'");
}

}  // namespace outpost::cli
