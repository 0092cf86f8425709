// outpost: capture messages inside the app's own SQLite transactions.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "outpost/clock.hpp"
#include "outpost/message.hpp"
#include "outpost/store.hpp"

namespace SQLite {
class Database;
}

namespace outpost {

// The outpost schema version this library reads and writes.
inline constexpr int kSchemaVersion = 3;

// What add() does once the quota (max_pending, max_pending_bytes) is reached.
enum class WhenFull {
    refuse,       // throw OutboxFull; nothing is stored, nothing is removed
    drop_oldest,  // remove the oldest pending records of the lowest priority to make room
};

struct OutboxOptions {
    // Largest payload add() accepts. Default 1 MiB; at most 268,435,455 (MQTT's limit).
    std::size_t max_payload_bytes = 1 << 20;
    // Busy timeout set on the app's connection when it has none (0). Default 5 s.
    std::chrono::milliseconds busy_timeout{5000};
    // Quota, by pending records and by their payload bytes (on disk a record takes its payload
    // and topic + about 100 bytes). 0 = no limit, the default for both. The totals are counted
    // from the database at most every `quota_refresh` (and at once when an add() would pass a
    // limit), so add() stays a single insert on its hot path; counting the bytes reads every
    // pending record, so prefer max_pending alone for backlogs of millions.
    std::uint64_t max_pending = 0;
    std::uint64_t max_pending_bytes = 0;
    std::chrono::milliseconds quota_refresh{1000};
    // At the quota: refuse (default) or drop_oldest. drop_oldest removes pending records, lowest
    // priority first and oldest first within it, until there is room for 1% of the limit more
    // (one exact count per 1%, not per add), inside add()'s transaction: a rollback keeps them.
    // Every removal is counted in StoreCounts::dropped (and `outpost stats`). A dropped record
    // the dispatcher had already sent may still arrive. A payload larger than max_pending_bytes
    // is refused either way. Needs a quota.
    WhenFull when_full = WhenFull::refuse;

    // Throws InvalidConfig naming the field when a value is out of range.
    void validate() const;
};

// validate(message) with the limits of an Outbox opened with `options`: what add() checks.
inline void validate(const Message& message, const OutboxOptions& options) {
    validate(message, MessageLimits{options.max_payload_bytes});
}

// The capture side, bound to the app's connection.
//
// add() runs on the app's connection, so it joins the app's open transaction: commit = the state
// and the message together, rollback = neither. Without an open transaction it commits at once
// (autocommit). Not thread-safe: use it from the thread that uses the connection, like the
// connection itself.
//
// Construction creates or migrates the outpost_* tables (its own version, never the app's
// user_version), switches a rollback-journal database to WAL and sets a busy timeout when the
// connection has none. Construct it outside a transaction. It also installs a WAL hook on the
// connection, to wake this process's dispatcher right after each commit that added records; the
// hook runs the auto-checkpoint, so an app must not install its own. The checkpoint comes every
// 1/32 of the file system's size (16 to 1,000 pages: SQLite's usual 1,000 on a partition of
// 128 MB or more), journal_size_limit is set to that size when the app set none, and a new,
// empty file gets auto_vacuum = INCREMENTAL (so the store can return the space of delivered
// records to a partition that ran short; README, "Disk space"). When a checkpoint cannot grow
// the file for want of space, or the partition has less room than two WALs (statvfs, looked at
// with each checkpoint attempt), add() throws StorageError (code SQLITE_FULL, transient) before
// writing anything until statvfs shows room again, so the space left stays for the dispatcher.
class Outbox {
  public:
    // Throws SchemaError when the file is not a SQLite database or holds a newer outpost schema
    // (and then writes nothing to it), StorageError when SQLite fails.
    explicit Outbox(SQLite::Database& db, OutboxOptions options = {},
                    const Clock& clock = SystemClock::instance());
    ~Outbox();
    Outbox(const Outbox&) = delete;
    Outbox& operator=(const Outbox&) = delete;

    // Validates then inserts `message` as a pending record; returns its id. One prepared insert,
    // nothing else (with a quota, at a limit or every quota_refresh: a count, and with
    // drop_oldest the removals). The count comes after the insert, under a savepoint that undoes
    // the insert when the quota refuses it: add() never reads before it writes, so as the first
    // statement of a deferred transaction it cannot turn that transaction into a reader that a
    // commit by another connection (the dispatcher's) would make fail with SQLITE_BUSY_SNAPSHOT.
    // Throws InvalidMessage (nothing stored, the app's transaction still usable), OutboxFull
    // (likewise), or StorageError.
    std::int64_t add(const Message& message);

    // Moves a dead record back to pending with attempts reset. Throws NotFound when `id` is not
    // a dead record.
    void requeue(std::int64_t id);
    // Moves every dead record back to pending; returns how many.
    std::size_t requeue_all_dead();
    // Counts by state.
    StoreCounts counts();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace outpost
