// The `outpost` subcommands: what each does once its arguments are parsed.
//
// Every run_* function writes its result to stdout (an aligned table or key/value lines for
// people, one JSON document or JSON Lines with --json) and returns the process exit code. Failures
// are thrown (outpost::Error or std::exception) and turned into one line on stderr by main().
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "outpost/admin.hpp"

namespace outpost::cli {

// Exit codes.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitSyncTimeout = 3;  // records still pending at --timeout
// `sync` left nothing pending, but records went dead (retry cap) or expired (ttl) during it.
inline constexpr int kExitSyncGaveUp = 4;

// A mistake in the arguments found after parsing: main() exits with kExitUsage.
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Options every command takes.
struct Common {
    std::string db;
    bool json = false;
    std::string busy_timeout = "5s";
};

struct StatsArgs {
    std::size_t top = 10;
};

struct ListArgs {
    std::string state = "all";
    std::optional<std::string> topic;
    std::optional<std::string> key;
    std::size_t limit = 100;
    std::int64_t after = 0;
};

struct ShowArgs {
    std::int64_t id = 0;
};

struct AddArgs {
    std::string topic;
    std::optional<std::string> payload;
    std::optional<std::string> payload_file;
    std::optional<std::string> key;
    int qos = 1;
    int priority = 0;
    bool retain = false;
    std::optional<std::string> ttl;
    std::vector<std::string> headers;
    std::optional<std::string> content_type;
};

struct RetryArgs {
    std::vector<std::int64_t> ids;
    bool all_dead = false;
};

struct PurgeArgs {
    std::string state;
    std::optional<std::string> older_than;
    bool dry_run = false;
};

struct ExportArgs {
    std::string state = "all";
    bool skip_unreadable = false;
};

struct CheckArgs {
    bool quick = false;
};

struct SyncArgs {
    std::vector<std::string> brokers;
    std::string client_id;
    std::optional<std::string> username;
    std::optional<std::string> password_file;
    std::optional<std::string> ca_file;
    std::optional<std::string> cert_file;
    std::optional<std::string> key_file;
    int mqtt_version = 5;
    std::string timeout = "10m";
    std::size_t window = 100;
    std::string progress = "auto";
};

// The Admin options of `common` (busy timeout parsed), opened read-only or read-write.
outpost::AdminOptions admin_options(const Common& common, bool read_only);

int run_stats(const Common& common, const StatsArgs& args);
int run_list(const Common& common, const ListArgs& args);
int run_show(const Common& common, const ShowArgs& args);
int run_add(const Common& common, const AddArgs& args);
int run_retry(const Common& common, const RetryArgs& args);
int run_purge(const Common& common, const PurgeArgs& args);
int run_export(const Common& common, const ExportArgs& args);
int run_check(const Common& common, const CheckArgs& args);
// Built only with MQTT support (OUTPOST_CLI_HAVE_MQTT); main() refuses `sync` otherwise.
int run_sync(const Common& common, const SyncArgs& args);

}  // namespace outpost::cli
