// The maintenance commands: retry (requeue dead records) and purge (delete finished ones).
#include <chrono>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "command.hpp"
#include "duration.hpp"
#include "outpost/admin.hpp"
#include "outpost/error.hpp"
#include "record_json.hpp"
#include "text.hpp"

namespace outpost::cli {

namespace {

using json = nlohmann::json;

struct RetryArgs {
    std::vector<std::int64_t> ids;
    bool all_dead = false;
};

struct PurgeArgs {
    std::string state;
    std::optional<std::string> older_than;
    bool dry_run = false;
};

int run_retry(const Common& common, const RetryArgs& args) {
    Admin admin = open_admin(common, false);
    if (args.all_dead) {
        const std::size_t n = admin.requeue_all_dead();
        if (common.json) {
            std::cout << dump(json{{"requeued", n}}) << '\n';
        } else {
            std::cout << "requeued " << n << " dead record" << (n == 1 ? "" : "s") << '\n';
        }
        return kExitOk;
    }
    json requeued = json::array();
    json failed = json::array();
    for (const std::int64_t id : args.ids) {
        try {
            admin.requeue(id);
            requeued.push_back(id);
            if (!common.json) {
                std::cout << "requeued " << id << '\n';
            }
        } catch (const NotFound& e) {
            // Keep going: one wrong id must not stop the others; the exit code reports it.
            failed.push_back({{"id", id}, {"error", e.what()}});
            std::cerr << "outpost: error: " << one_line(e.what()) << '\n';
        }
    }
    if (common.json) {
        std::cout << dump(json{{"requeued", requeued}, {"failed", failed}}) << '\n';
    }
    return failed.empty() ? kExitOk : kExitFailure;
}

int run_purge(const Common& common, const PurgeArgs& args) {
    const std::optional<RecordState> state = parse_record_state(args.state);
    if (!state || *state == RecordState::pending) {
        throw UsageError(
            "purge: --state must be delivered, dead or expired (pending records are never purged)");
    }
    std::optional<std::chrono::milliseconds> older;
    if (args.older_than) {
        older = parse_duration(*args.older_than);
    }
    Admin admin = open_admin(common, args.dry_run);
    const std::size_t n = admin.purge(*state, older, args.dry_run);
    if (common.json) {
        std::cout << dump(json{{"state", args.state},
                               {"older_than_ms", older ? json(older->count()) : json(nullptr)},
                               {"dry_run", args.dry_run},
                               {args.dry_run ? "would_delete" : "deleted", n}})
                  << '\n';
    } else {
        std::cout << (args.dry_run ? "would delete " : "deleted ") << n << ' ' << args.state
                  << " record" << (n == 1 ? "" : "s")
                  << (older ? " older than " + format_duration(*older) : std::string()) << '\n';
    }
    return kExitOk;
}

Run setup_retry(CLI::App& cmd, const Common& common) {
    auto args = std::make_shared<RetryArgs>();
    CLI::Option* retry_ids =
        cmd.add_option("ids", args->ids, "Ids of dead records")->type_name("ID...");
    CLI::Option* all_dead = cmd.add_flag("--all-dead", args->all_dead, "Requeue every dead record");
    retry_ids->excludes(all_dead);
    cmd.footer(
        "A requeued record is pending again with attempts 0 and is sent at once.\n"
        "Give ids or --all-dead. An id that is not a dead record is reported and the others are\n"
        "still requeued (exit code 1).\n"
        "Example: outpost retry --db app.db 17 18   |   outpost retry --db app.db --all-dead");
    return [&common, args] {
        if (args->ids.empty() && !args->all_dead) {
            throw UsageError("retry: give record ids or --all-dead");
        }
        return run_retry(common, *args);
    };
}

Run setup_purge(CLI::App& cmd, const Common& common) {
    auto args = std::make_shared<PurgeArgs>();
    add_state_option(cmd, args->state, StateChoice::finished)->required();
    cmd.add_option_function<std::string>(
           "--older-than", [args](const std::string& v) { args->older_than = v; },
           "Only records that reached their state longer ago than this")
        ->check(duration_validator())
        ->type_name("DURATION");
    cmd.add_flag("--dry-run", args->dry_run, "Only count what would be deleted");
    cmd.footer(
        "Ages count from when the record became delivered, dead or expired. Deletes in batches\n"
        "of short transactions, so the app is never blocked for long. Pending records are never\n"
        "touched. Only records present when it starts (up to the largest id then) are deleted,\n"
        "so it ends even while the dispatcher keeps delivering.\n"
        "Example: outpost purge --db app.db --state dead --older-than 7d --dry-run");
    return [&common, args] { return run_purge(common, *args); };
}

}  // namespace

extern const Command kRetryCommand{"retry", "Requeue dead records with attempts reset",
                                   setup_retry};
extern const Command kPurgeCommand{
    "purge", "Delete delivered, dead or expired records (never pending)", setup_purge};

}  // namespace outpost::cli
