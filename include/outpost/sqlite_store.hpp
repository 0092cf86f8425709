// outpost: the Store on a SQLite file, on a connection of its own.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "outpost/store.hpp"

namespace outpost {

struct SqliteStoreOptions {
    // Busy timeout of the store's connection. Default 5 s.
    std::chrono::milliseconds busy_timeout{5000};
    // PRAGMA synchronous for the store's own writes (marks, deletes). NORMAL by default: under
    // WAL a mark lost to power loss means a duplicate delivery, never a lost message.
    // One of "NORMAL", "FULL", "EXTRA". "OFF" is refused (InvalidConfig): this connection also
    // checkpoints the WAL, and an unsynced checkpoint followed by a WAL reset could lose the
    // app's own synchronous=FULL commits at a power cut.
    std::string synchronous = "NORMAL";
};

// Opens `path` (which must already hold the outpost schema: an Outbox creates it) in WAL mode.
// Throws SchemaError when the file is not SQLite, has no outpost tables or a newer schema, and
// StorageError (SQLITE_CORRUPT) when its records table is damaged: read once, whole, before the
// store writes anything, so a damaged file is never written to.
//
// Disk space (README, "Disk space"): keeps a reserve file `<path>-outpost-reserve` (twice the
// WAL limit plus 64 KiB) that it deletes when one of its writes fails with SQLITE_FULL (then it
// checkpoints and tries that write once more) and makes again once there is room; while space
// is short it gives the pages of removed records back to the file system (incremental vacuum,
// on a file with auto_vacuum = INCREMENTAL) and truncates the WAL.
class SqliteStore final : public Store {
  public:
    explicit SqliteStore(const std::string& path, SqliteStoreOptions options = {});
    ~SqliteStore() override;
    SqliteStore(const SqliteStore&) = delete;
    SqliteStore& operator=(const SqliteStore&) = delete;

    std::vector<PendingRef> scan_pending(const DispatchCursor& after, std::size_t limit) override;
    std::optional<PendingRef> key_head(const std::string& key) override;
    std::vector<PendingRef> scan_arrivals(std::int64_t after_id, std::int64_t upto_id,
                                          int above_priority, std::size_t limit) override;
    std::int64_t last_id() override;
    std::int64_t requeue_count() override;
    LoadedRecords load_pending(const std::vector<std::int64_t>& ids) override;
    void apply(const std::vector<Outcome>& outcomes, bool keep_delivered) override;
    bool has_pending() override;
    std::optional<std::int64_t> next_expiry() override;
    std::vector<std::int64_t> expire_due(std::int64_t now_ms,
                                         const std::vector<std::int64_t>& in_flight) override;
    std::size_t clamp_retry_times(std::int64_t now_ms, std::int64_t horizon_ms) override;
    std::size_t purge_delivered(std::int64_t before_ms) override;
    std::int64_t data_version() override;
    void acquire_lease(const LeaseInfo& mine) override;
    bool renew_lease(const std::string& owner, std::int64_t heartbeat_at,
                     std::int64_t expires_at) override;
    void release_lease(const std::string& owner) noexcept override;
    void set_wake_handler(std::function<void(bool rescan)> wake) override;

    // Counts by state.
    StoreCounts counts();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace outpost
