// `outpost export`: records as JSON Lines, payload in base64.
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "command.hpp"
#include "outpost/admin.hpp"
#include "outpost/error.hpp"
#include "record_json.hpp"
#include "text.hpp"

namespace outpost::cli {

namespace {

using json = nlohmann::json;

struct ExportArgs {
    std::string state = "all";
    bool skip_unreadable = false;
};

int run_export(const Common& common, const ExportArgs& args) {
    AdminOptions options = admin_options(common, true);
    // A rescue reads what SQLite can still read of a damaged file (truncated, a bad schema entry).
    options.lenient = args.skip_unreadable;
    Admin admin(common.db, options);
    RecordFilter filter;
    filter.state = state_filter(args.state);
    filter.skip_unreadable = args.skip_unreadable;
    std::size_t unreadable = 0;
    admin.for_each(
        filter,
        [&](const Record& r) {
            json line = record_json(r);
            line["payload"] = base64_encode(payload_of(r));
            std::cout << dump(line) << '\n';
            return static_cast<bool>(std::cout);
        },
        &unreadable);
    std::cout.flush();
    if (!std::cout) {
        throw std::runtime_error("writing the export to stdout failed");
    }
    if (unreadable > 0) {
        throw StorageError("export skipped " + std::to_string(unreadable) +
                               " unreadable record ids or regions: " + common.db +
                               " is corrupt (everything readable was written; see outpost check)",
                           false, 0);
    }
    return kExitOk;
}

Run setup_export(CLI::App& cmd, const Common& common) {
    auto args = std::make_shared<ExportArgs>();
    add_state_option(cmd, args->state, StateChoice::any)->capture_default_str();
    cmd.add_flag("--skip-unreadable", args->skip_unreadable,
                 "On a corrupt file, skip the records that cannot be read and export the rest "
                 "(slow: one lookup per id); exits 1 if any were skipped");
    cmd.footer(
        "One JSON object a line, per record: every field (as in list --json) and \"payload\"\n"
        "in base64. Reads in short pages: safe on a live, large outbox. Exports the records\n"
        "present when it starts (up to the largest id then), so it ends even while the app adds\n"
        "records faster than it reads; later ones are left for the next export.\n"
        "Example: outpost export --db app.db --state dead > dead.jsonl");
    return [&common, args] { return run_export(common, *args); };
}

}  // namespace

extern const Command kExportCommand{"export", "Write records as JSON Lines, payload in base64",
                                    setup_export};

}  // namespace outpost::cli
