// outpost: inspection and maintenance of an outbox file, for tools next to a running app.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "outpost/message.hpp"
#include "outpost/store.hpp"

namespace outpost {

struct AdminOptions {
    // Open the file read-only (SQLITE_OPEN_READONLY): nothing this Admin does can modify the
    // database. add(), requeue(), requeue_all_dead() and purge() then throw StorageError.
    // Default true.
    bool read_only = true;
    // Busy timeout of the Admin's connection. Default 5 s.
    std::chrono::milliseconds busy_timeout{5000};
    // Records read per page by for_each(): each page is one short read transaction, so no read
    // snapshot is held while the caller handles the records. Default 500; must be >= 1.
    std::size_t page_size = 500;
    // For a rescue (export --skip-unreadable): a read-only Admin opens a file SQLite refuses as
    // corrupt (truncated, a damaged schema entry) as far as it can still be read
    // (PRAGMA writable_schema on that read-only connection: nothing can be written). Never for a
    // check: a file opened this way is one the app cannot open. Default false.
    bool lenient = false;
};

// One topic's share of the outbox, for Admin::stats().
struct TopicCount {
    std::string topic;
    std::uint64_t records = 0;  // records of every state
    std::uint64_t pending = 0;
    std::uint64_t bytes = 0;  // payload bytes of every state
};

// Who holds the dispatcher lease, as stored in the file.
struct LeaseStatus {
    LeaseInfo holder;
    // expires_at lies in the past: any dispatcher may take the lease over.
    bool expired = false;
    // The holder runs on this host and its process no longer exists: the next dispatcher takes
    // the lease over at once. Always false for holders on other hosts (we cannot tell).
    bool holder_dead = false;
    // True when a new dispatcher would be refused (LeaseHeld): neither expired nor holder_dead.
    bool blocks_new_dispatcher() const noexcept { return !expired && !holder_dead; }
};

struct AdminStats {
    StoreCounts counts;  // records and payload bytes by state, oldest pending
    // The topics with the most records, most first (ties by topic name), at most `top_topics`.
    std::vector<TopicCount> top_topics;
    int schema_version = 0;
    std::uint64_t file_bytes = 0;      // size of the database file
    std::uint64_t wal_bytes = 0;       // size of its -wal file (0 when there is none)
    std::string journal_mode;          // "wal", "delete", ...
    std::optional<LeaseStatus> lease;  // std::nullopt when no dispatcher holds or held it
    std::int64_t now_ms = 0;           // the wall time the figures were read at
};

// Which records list()/for_each() visit. Records come in id (commit) order, and only those
// present when the call starts: the largest id is read once at the start, so records committed
// later (they have larger ids) are not visited and a writer faster than the reader cannot keep
// the call going.
struct RecordFilter {
    std::optional<RecordState> state;         // std::nullopt = every state
    std::optional<std::string> topic_prefix;  // byte prefix of the topic, no wildcards
    std::optional<std::string> key;           // exact ordering key
    std::int64_t after_id = 0;                // only records with id > after_id
    std::size_t limit = 0;                    // at most this many; 0 = no limit
    // Salvage mode for a corrupt file: when a page of records cannot be read (SQLITE_CORRUPT),
    // go on id by id up to the largest id (from the table, or from its indexes when the table's
    // end is damaged) and skip the ids that cannot be read, instead of throwing. Slow (one
    // lookup per id) but reads whatever the damage left intact.
    bool skip_unreadable = false;
};

// Outcome of Admin::check(). clean() when nothing is wrong.
struct CheckReport {
    bool sqlite_ok = false;             // the file opened as a SQLite database
    bool integrity_ok = false;          // PRAGMA integrity_check / quick_check said "ok"
    int schema_version = 0;             // outpost schema in the file (0 = none)
    std::vector<std::string> problems;  // one line each; empty when clean
    std::vector<std::string> notes;     // facts worth knowing that are not problems
    bool clean() const noexcept { return problems.empty(); }
};

// Inspection and maintenance of an outbox file, on a connection of its own.
//
// Made for tools that run next to a live app and dispatcher (the `outpost` command):
// - It never creates a file: a missing path throws StorageError naming it.
// - Read-only by default (AdminOptions::read_only): stats(), list(), get(), for_each() never
//   write, and check() opens its own read-only connection.
// - Every read is a short transaction (one statement, or one page of for_each()); writes are
//   short BEGIN IMMEDIATE transactions with a busy timeout, so the app and the dispatcher are
//   delayed by at most one batch.
// - add(), requeue() and requeue_all_dead() go through an Outbox on this connection: the same
//   validation and rules as the app's own calls.
//
// Errors: the constructor throws SchemaError when the file is not SQLite, holds no outpost tables
// or a newer outpost schema (nothing is written to it), StorageError for a missing, unreadable or
// corrupt file. Methods throw StorageError when SQLite fails (transient() when busy).
// Not thread-safe: use one Admin from one thread.
class Admin {
  public:
    explicit Admin(const std::string& path, AdminOptions options = {});
    ~Admin();
    Admin(const Admin&) = delete;
    Admin& operator=(const Admin&) = delete;

    const std::string& path() const noexcept;
    int schema_version() const noexcept;

    // Counts, sizes, top `top_topics` topics, lease holder. Each figure comes from its own short
    // read, so figures may differ by what committed in between.
    AdminStats stats(std::size_t top_topics = 10);
    // Counts by state alone (stats() without the topics; a scan of the whole table).
    StoreCounts counts();
    // Records in `state` (one read; uses the partial indexes, so it is cheap enough to poll).
    std::uint64_t count(RecordState state);
    // The lease row, or std::nullopt when there is none.
    std::optional<LeaseStatus> lease();

    // The record `id`, or std::nullopt.
    std::optional<Record> get(std::int64_t id);
    // Records matching `filter`, in id order, at most filter.limit (0 = all: mind the memory).
    std::vector<Record> list(const RecordFilter& filter);
    // Calls `visit` with each record matching `filter`, in id order, reading in pages of
    // AdminOptions::page_size; no read transaction is open while `visit` runs. Visits only the
    // records present when it starts (ids up to the largest id then); a record that changes state
    // meanwhile is visited as the page that reaches it finds it. `visit` returns
    // false to stop. Returns how many records were visited. With filter.skip_unreadable, the
    // ids that could not be read (plus one when the end of the table could not be read, so more
    // records may be missing) are counted in `*unreadable` (when not null) instead of throwing:
    // 0 means everything matching was visited.
    std::size_t for_each(const RecordFilter& filter,
                         const std::function<bool(const Record&)>& visit,
                         std::size_t* unreadable = nullptr);

    // Enqueues `message` as the app would (Outbox::add). Returns the new id. Throws
    // InvalidMessage, OutboxFull, StorageError.
    std::int64_t add(const Message& message);
    // Moves dead record `id` back to pending with attempts reset (Outbox::requeue). Throws
    // NotFound when `id` is not a dead record.
    void requeue(std::int64_t id);
    // Moves every dead record back to pending; returns how many.
    std::size_t requeue_all_dead();

    // Deletes records in `state` whose done_at (or, if unset, created_at) is older than
    // `older_than` (std::nullopt = all of them), in batches of short transactions. Only records
    // present when it starts (ids up to the largest id then) are considered, so records that
    // reach `state` faster than the batches delete cannot keep it going. With `dry_run`,
    // only counts. Returns how many records were (or would be) deleted. Throws InvalidConfig for
    // RecordState::pending: pending records are never purged.
    std::size_t purge(RecordState state, std::optional<std::chrono::milliseconds> older_than,
                      bool dry_run);

    // Integrity and schema check of the file at `path`, on a read-only connection of its own: a
    // SQLite database, PRAGMA integrity_check (quick_check when `quick`) clean, the outpost schema
    // known, its tables, columns and indexes present, every record's state known. Never writes.
    // Problems found in the file are reported, not thrown; throws StorageError only when the file
    // does not exist or cannot be opened at all. The check holds one read transaction for as long
    // as integrity_check runs (it scans the whole file).
    static CheckReport check(const std::string& path, bool quick = false);

  private:
    std::size_t salvage(const RecordFilter& filter, std::int64_t after, std::int64_t last,
                        std::size_t visited_before, const std::function<bool(const Record&)>& visit,
                        std::size_t* unreadable);

    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace outpost
