// outpost: what the dispatcher needs from storage.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "outpost/message.hpp"

namespace outpost {

// A position in dispatch order (priority descending, then id ascending).
struct DispatchCursor {
    int priority = 0;
    std::int64_t id = 0;
    bool at_start = true;  // true: before the first record
};

// What the dispatcher needs to decide whether a pending record can go now; the record itself
// (payload and all) is loaded only when it is sent.
struct PendingRef {
    std::int64_t id = 0;
    int priority = 0;
    std::optional<std::string> key;
    std::int64_t next_attempt_at = 0;
    std::optional<std::int64_t> expires_at;
    std::uint32_t attempts = 0;
};

// A state change the dispatcher wants written. Applied in batches, one transaction per batch.
struct Outcome {
    enum class Kind { delivered, retry, dead, expired };
    Kind kind = Kind::delivered;
    std::int64_t id = 0;
    std::uint32_t attempts = 0;        // retry/dead: the new attempt count
    std::int64_t next_attempt_at = 0;  // retry: when to try again (wall ms)
    std::string error;                 // retry/dead/expired: the reason kept as last_error;
                                       // delivered: "" or the broker's "no matching
                                       // subscribers" notice (reported, not kept)
    std::int64_t at = 0;               // wall ms of the change
};

// The dispatcher's lease on a database file: one dispatcher per file at a time.
struct LeaseInfo {
    std::string owner;              // random token of the holder
    std::string host;               // hostname of the holder
    std::int64_t pid = 0;           // process id of the holder
    std::int64_t started_at = 0;    // wall ms
    std::int64_t heartbeat_at = 0;  // wall ms of the last heartbeat
    std::int64_t expires_at = 0;    // wall ms after which anyone may take it over
};

// A pending record whose stored form does not decode (headers blob damaged, a column of the
// wrong type): the dispatcher moves it to dead with `reason` instead of sending it.
struct UnreadableRecord {
    std::int64_t id = 0;
    std::string reason;
};

// What load_pending() found.
struct LoadedRecords {
    std::vector<Record> records;               // still pending, in the order asked for
    std::vector<UnreadableRecord> unreadable;  // pending but undecodable
};

// Counts of records by state (and bytes of payload).
struct StoreCounts {
    std::uint64_t pending = 0, delivered = 0, dead = 0, expired = 0;
    std::uint64_t pending_bytes = 0;  // payload bytes by state
    std::uint64_t delivered_bytes = 0, dead_bytes = 0, expired_bytes = 0;
    std::optional<std::int64_t> oldest_pending_at;  // created_at of the oldest pending record
    std::uint64_t dropped = 0;  // pending records ever removed by WhenFull::drop_oldest
};

// Storage as the dispatcher uses it. One Store belongs to one dispatcher thread: no method is
// called concurrently. Every method throws StorageError on failure (transient() when busy).
class Store {
  public:
    virtual ~Store() = default;

    // Pending records after `after` in dispatch order, at most `limit`. Includes records whose
    // next_attempt_at or expires_at lie in the future or past: the dispatcher decides.
    virtual std::vector<PendingRef> scan_pending(const DispatchCursor& after,
                                                 std::size_t limit) = 0;
    // The first pending record of `key` in dispatch order (its head), if any: one index seek,
    // whatever the key's backlog.
    virtual std::optional<PendingRef> key_head(const std::string& key) = 0;
    // Pending records with `after_id < id <= upto_id` and a priority above `above_priority`, in
    // id order, at most `limit`: what arrived since the dispatcher last looked and lies before
    // its scan position. Costs O(records in the id range), not O(backlog).
    virtual std::vector<PendingRef> scan_arrivals(std::int64_t after_id, std::int64_t upto_id,
                                                  int above_priority, std::size_t limit) = 0;
    // The highest record id ever given out (ids only grow), or 0.
    virtual std::int64_t last_id() = 0;
    // A count that every requeue of dead records (by any process) moves: when it changed,
    // records may have become pending before the dispatcher's scan position.
    virtual std::int64_t requeue_count() = 0;
    // The whole records of `ids` that are still pending, in the order of `ids` (one read
    // transaction for all of them, always ended, also when this throws). A record that does not
    // decode is listed in `unreadable` and never stops the others; only a storage failure
    // (busy, I/O) throws.
    virtual LoadedRecords load_pending(const std::vector<std::int64_t>& ids) = 0;
    // Writes all outcomes in one transaction (BEGIN IMMEDIATE). With `keep_delivered` false,
    // delivered records are deleted at once; otherwise they are marked delivered with done_at.
    virtual void apply(const std::vector<Outcome>& outcomes, bool keep_delivered) = 0;
    // True when at least one record is pending.
    virtual bool has_pending() = 0;
    // The earliest expires_at of a pending record, if any has a ttl.
    virtual std::optional<std::int64_t> next_expiry() = 0;
    // Marks pending records whose expires_at <= now_ms as expired, except those in `in_flight`
    // (their acknowledgement decides); returns their ids.
    virtual std::vector<std::int64_t> expire_due(std::int64_t now_ms,
                                                 const std::vector<std::int64_t>& in_flight) = 0;
    // Pulls back next_attempt_at values further than `horizon_ms` in the future to `now_ms`
    // (the wall clock stepped backwards); returns how many.
    virtual std::size_t clamp_retry_times(std::int64_t now_ms, std::int64_t horizon_ms) = 0;
    // Deletes delivered records whose done_at < before_ms; returns how many.
    virtual std::size_t purge_delivered(std::int64_t before_ms) = 0;
    // Changes whenever another connection commits (PRAGMA data_version).
    virtual std::int64_t data_version() = 0;

    // Takes the lease if it is free, expired, or held by a dead process on this host.
    // Throws LeaseHeld naming the holder otherwise.
    virtual void acquire_lease(const LeaseInfo& mine) = 0;
    // Extends the lease; false when it is no longer ours (taken over after expiry).
    virtual bool renew_lease(const std::string& owner, std::int64_t heartbeat_at,
                             std::int64_t expires_at) = 0;
    // Gives the lease up if it is ours. Never throws.
    virtual void release_lease(const std::string& owner) noexcept = 0;

    // Asks to be told (from any thread) when this process commits new records to the file;
    // `rescan` is true when records may have become pending before the dispatcher's scan
    // position (a requeue of dead records), false for new records. An empty function unregisters.
    virtual void set_wake_handler(std::function<void(bool rescan)> wake) = 0;
};

}  // namespace outpost
