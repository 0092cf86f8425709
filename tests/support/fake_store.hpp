// Test support: the Store contract (include/outpost/store.hpp) in memory, with fault switches.
//
// FakeStore keeps records the way SqliteStore does (tests/unit/store_contract_test.cpp runs the
// same suite on both): dispatch order is priority descending then id ascending, ids are never
// reused, retry/dead/expired outcomes touch only pending records while a delivered outcome is
// written whatever the record's state, expire_due() writes last_error "ttl passed before
// delivery", data_version() moves only on commits "from another connection" (add, requeue,
// commit_elsewhere, take_lease), never on the store's own calls.
//
// Where it simplifies (the contract suite's FakeHarness says so as capabilities):
//  - liveness of a lease holder: no process table and no boot id. A holder on the asker's host
//    is gone only when the test said so with end_process(host, pid); reboots are not modelled.
//  - an unreadable record is one the test marked with mark_unreadable(); scans still list it,
//    load_pending() reports it with the reason given.
//
// Fault switches (store_faults.hpp): fail(op, nth, times, error), fail_always(op, error), clear,
// calls, armed, rows_scanned; plus set_disk_full() (every write throws SQLITE_FULL, reads work)
// and take_lease() (another owner holds the lease: renew_lease() returns false).
//
// Thread-safe: the test thread may add records, flip switches and read state back while a
// dispatcher thread calls the Store methods. The wake handler runs on the thread that adds or
// requeues, after the record is in, outside the store's lock (so it may call the Store methods,
// but not set_wake_handler()), and set_wake_handler() waits for a running handler to return.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "outpost/error.hpp"
#include "outpost/outbox.hpp"
#include "outpost/store.hpp"
#include "store_faults.hpp"

namespace outpost::testing {

class FakeStore final : public Store, public StoreFaults {
  public:
    // Who commits a record: this process (wakes the handler, like the Outbox's WAL hook) or
    // another process (only data_version() tells).
    enum class Writer { this_process, other_process };

    FakeStore() = default;

    // ---- the app's side: what an Outbox (or the CLI) would commit ----

    // Validates `m` as Outbox::add() does (throws InvalidMessage) and stores it as a pending
    // record created at `now_ms`; returns its id (1, 2, ...; never reused).
    std::int64_t add(const Message& m, std::int64_t now_ms = 0, Writer by = Writer::this_process) {
        validate(m);
        std::int64_t id = 0;
        {
            std::lock_guard lock(mutex_);
            id = next_id_++;
            Record r;
            r.id = id;
            r.uid = uid_for(id);
            r.message = m;
            r.created_at = now_ms;
            if (m.ttl) {
                r.expires_at = now_ms + m.ttl->count();
            }
            insert_pending(std::move(r));
            ++data_version_;
        }
        if (by == Writer::this_process) {
            wake(false);
        }
        return id;
    }
    // Moves dead record `id` back to pending with attempts and next_attempt_at reset and done_at
    // cleared (last_error is kept), as Outbox::requeue() does; moves requeue_count() and wakes
    // the handler with rescan = true. Throws NotFound when `id` is not a dead record.
    void requeue(std::int64_t id, Writer by = Writer::this_process) {
        {
            std::lock_guard lock(mutex_);
            auto it = records_.find(id);
            if (it == records_.end() || it->second.state != RecordState::dead) {
                throw NotFound("record " + std::to_string(id) + " is not a dead record");
            }
            requeue_locked(it->second);
            ++data_version_;
        }
        if (by == Writer::this_process) {
            wake(true);
        }
    }
    // Every dead record back to pending; returns how many.
    std::size_t requeue_all_dead(Writer by = Writer::this_process) {
        std::size_t n = 0;
        {
            std::lock_guard lock(mutex_);
            for (auto& [id, r] : records_) {
                if (r.state == RecordState::dead) {
                    requeue_locked(r);
                    ++n;
                }
            }
            if (n != 0) {
                ++data_version_;
            }
        }
        if (n != 0 && by == Writer::this_process) {
            wake(true);
        }
        return n;
    }
    // A commit by another connection that changes no record (the app's own tables, say):
    // data_version() moves.
    void commit_elsewhere() {
        std::lock_guard lock(mutex_);
        ++data_version_;
    }
    // From now on load_pending() lists record `id` as unreadable with `reason` (its stored form
    // "does not decode"); scans still list it. Throws NotFound for an unknown id.
    void mark_unreadable(std::int64_t id, std::string reason = "the stored record cannot be read") {
        std::lock_guard lock(mutex_);
        if (records_.find(id) == records_.end()) {
            throw NotFound("record " + std::to_string(id) + " does not exist");
        }
        unreadable_[id] = std::move(reason);
    }

    // ---- fault switches beyond StoreFaults ----

    // While set, every write (apply, expire_due, clamp_retry_times, purge_delivered,
    // acquire_lease, renew_lease) throws disk_full_error() and changes nothing; reads work.
    // add() and requeue() (the app's side) are not affected.
    void set_disk_full(bool full) {
        std::lock_guard lock(mutex_);
        disk_full_ = full;
    }
    // Another dispatcher holds the lease from now on (as after a takeover of a lapsed lease):
    // renew_lease() by the old owner returns false, acquire_lease() throws LeaseHeld unless the
    // rules let it take `holder`'s lease over. A commit by another connection.
    void take_lease(const LeaseInfo& holder) {
        std::lock_guard lock(mutex_);
        lease_ = holder;
        ++data_version_;
    }
    // The process `pid` on `host` is gone: a lease it holds may be taken over by a dispatcher
    // on the same host (SqliteStore asks the kernel; the fake only knows what it was told).
    void end_process(const std::string& host, std::int64_t pid) {
        std::lock_guard lock(mutex_);
        ended_.insert({host, pid});
    }

    // ---- reading back ----

    // A copy of record `id` as stored (state, attempts, next_attempt_at, last_error, done_at),
    // or nullopt when it never existed or was deleted.
    std::optional<Record> record(std::int64_t id) const {
        std::lock_guard lock(mutex_);
        auto it = records_.find(id);
        if (it == records_.end()) {
            return std::nullopt;
        }
        return it->second;
    }
    std::optional<RecordState> state_of(std::int64_t id) const {
        auto r = record(id);
        return r ? std::optional<RecordState>(r->state) : std::nullopt;
    }
    // Ids of the records in `state`, ascending.
    std::vector<std::int64_t> ids(RecordState state) const {
        std::lock_guard lock(mutex_);
        std::vector<std::int64_t> out;
        for (const auto& [id, r] : records_) {
            if (r.state == state) {
                out.push_back(id);
            }
        }
        return out;
    }
    // Records stored, any state.
    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return records_.size();
    }
    // Counts by state, as SqliteStore::counts() (dropped is always 0: no quota here).
    StoreCounts counts() const {
        std::lock_guard lock(mutex_);
        StoreCounts c;
        for (const auto& [id, r] : records_) {
            const std::uint64_t bytes = r.message.payload.size();
            switch (r.state) {
                case RecordState::pending:
                    ++c.pending;
                    c.pending_bytes += bytes;
                    if (!c.oldest_pending_at || r.created_at < *c.oldest_pending_at) {
                        c.oldest_pending_at = r.created_at;
                    }
                    break;
                case RecordState::delivered:
                    ++c.delivered;
                    c.delivered_bytes += bytes;
                    break;
                case RecordState::dead:
                    ++c.dead;
                    c.dead_bytes += bytes;
                    break;
                case RecordState::expired:
                    ++c.expired;
                    c.expired_bytes += bytes;
                    break;
            }
        }
        return c;
    }
    // The lease as stored, if anyone holds it.
    std::optional<LeaseInfo> lease() const {
        std::lock_guard lock(mutex_);
        return lease_;
    }
    // Whether a wake handler is registered.
    bool has_wake_handler() const {
        std::lock_guard lock(wake_mutex_);
        return static_cast<bool>(wake_);
    }

    // ---- Store ----

    std::vector<PendingRef> scan_pending(const DispatchCursor& after, std::size_t limit) override {
        enter(Op::scan_pending);
        std::vector<PendingRef> out;
        {
            std::lock_guard lock(mutex_);
            auto it = after.at_start ? pending_.begin()
                                     : pending_.upper_bound(Position{after.priority, after.id});
            for (; it != pending_.end() && out.size() < limit; ++it) {
                out.push_back(ref(records_.at(it->id)));
            }
        }
        count_rows(out.size());
        return out;
    }
    std::optional<PendingRef> key_head(const std::string& key) override {
        enter(Op::key_head);
        std::lock_guard lock(mutex_);
        auto it = by_key_.find(key);
        if (it == by_key_.end() || it->second.empty()) {
            return std::nullopt;
        }
        return ref(records_.at(it->second.begin()->id));
    }
    std::vector<PendingRef> scan_arrivals(std::int64_t after_id, std::int64_t upto_id,
                                          int above_priority, std::size_t limit) override {
        enter(Op::scan_arrivals);
        std::vector<PendingRef> out;
        {
            std::lock_guard lock(mutex_);
            for (auto it = records_.upper_bound(after_id);
                 it != records_.end() && it->first <= upto_id && out.size() < limit; ++it) {
                const Record& r = it->second;
                if (r.state == RecordState::pending && r.message.priority > above_priority) {
                    out.push_back(ref(r));
                }
            }
        }
        count_rows(out.size());
        return out;
    }
    std::int64_t last_id() override {
        enter(Op::last_id);
        std::lock_guard lock(mutex_);
        return next_id_ - 1;
    }
    std::int64_t requeue_count() override {
        enter(Op::requeue_count);
        std::lock_guard lock(mutex_);
        return requeues_;
    }
    LoadedRecords load_pending(const std::vector<std::int64_t>& ids) override {
        enter(Op::load_pending);
        std::lock_guard lock(mutex_);
        LoadedRecords out;
        for (std::int64_t id : ids) {
            auto it = records_.find(id);
            if (it == records_.end() || it->second.state != RecordState::pending) {
                continue;
            }
            auto bad = unreadable_.find(id);
            if (bad != unreadable_.end()) {
                out.unreadable.push_back({id, bad->second});
            } else {
                out.records.push_back(it->second);
            }
        }
        return out;
    }
    void apply(const std::vector<Outcome>& outcomes, bool keep_delivered) override {
        enter(Op::apply);
        if (outcomes.empty()) {
            return;  // SqliteStore writes nothing then, not even on a full disk
        }
        std::lock_guard lock(mutex_);
        refuse_write_locked();
        for (const Outcome& o : outcomes) {
            auto it = records_.find(o.id);
            if (it == records_.end()) {
                continue;
            }
            Record& r = it->second;
            switch (o.kind) {
                case Outcome::Kind::delivered:
                    // Like SqliteStore: whatever the state (the broker has it).
                    if (keep_delivered) {
                        set_state(r, RecordState::delivered);
                        r.done_at = o.at;
                    } else {
                        erase(it);
                    }
                    break;
                case Outcome::Kind::retry:
                    if (r.state == RecordState::pending) {
                        r.attempts = o.attempts;
                        r.next_attempt_at = o.next_attempt_at;
                        r.last_error = o.error;
                    }
                    break;
                case Outcome::Kind::dead:
                    if (r.state == RecordState::pending) {
                        set_state(r, RecordState::dead);
                        r.attempts = o.attempts;
                        r.last_error = o.error;
                        r.done_at = o.at;
                    }
                    break;
                case Outcome::Kind::expired:
                    if (r.state == RecordState::pending) {
                        set_state(r, RecordState::expired);
                        r.last_error = o.error;
                        r.done_at = o.at;
                    }
                    break;
            }
        }
    }
    bool has_pending() override {
        enter(Op::has_pending);
        std::lock_guard lock(mutex_);
        return !pending_.empty();
    }
    std::optional<std::int64_t> next_expiry() override {
        enter(Op::next_expiry);
        std::lock_guard lock(mutex_);
        std::optional<std::int64_t> first;
        for (const Position& p : pending_) {
            const Record& r = records_.at(p.id);
            if (r.expires_at && (!first || *r.expires_at < *first)) {
                first = r.expires_at;
            }
        }
        return first;
    }
    std::vector<std::int64_t> expire_due(std::int64_t now_ms,
                                         const std::vector<std::int64_t>& in_flight) override {
        enter(Op::expire_due);
        std::lock_guard lock(mutex_);
        refuse_write_locked();
        const std::set<std::int64_t> skip(in_flight.begin(), in_flight.end());
        std::vector<std::int64_t> out;
        for (auto& [id, r] : records_) {
            if (r.state == RecordState::pending && r.expires_at && *r.expires_at <= now_ms &&
                skip.count(id) == 0) {
                set_state(r, RecordState::expired);
                r.done_at = now_ms;
                r.last_error = kExpiredError;
                out.push_back(id);
            }
        }
        return out;
    }
    std::size_t clamp_retry_times(std::int64_t now_ms, std::int64_t horizon_ms) override {
        enter(Op::clamp_retry_times);
        std::lock_guard lock(mutex_);
        refuse_write_locked();
        std::size_t n = 0;
        for (const Position& p : pending_) {
            Record& r = records_.at(p.id);
            if (r.next_attempt_at > now_ms + horizon_ms) {
                r.next_attempt_at = now_ms;
                ++n;
            }
        }
        return n;
    }
    std::size_t purge_delivered(std::int64_t before_ms) override {
        enter(Op::purge_delivered);
        std::lock_guard lock(mutex_);
        refuse_write_locked();
        std::size_t n = 0;
        for (auto it = records_.begin(); it != records_.end();) {
            const Record& r = it->second;
            if (r.state == RecordState::delivered && r.done_at && *r.done_at < before_ms) {
                it = erase(it);
                ++n;
            } else {
                ++it;
            }
        }
        return n;
    }
    std::int64_t data_version() override {
        enter(Op::data_version);
        std::lock_guard lock(mutex_);
        return data_version_;
    }
    void acquire_lease(const LeaseInfo& mine) override {
        enter(Op::acquire_lease);
        std::lock_guard lock(mutex_);
        refuse_write_locked();
        if (lease_) {
            const LeaseInfo& held = *lease_;
            const bool ours = held.owner == mine.owner;
            const bool lapsed = held.expires_at <= mine.heartbeat_at;
            // SqliteStore's rule (src/sqlite/liveness.cpp) without the kernel: a holder on this
            // host with another pid that the test ended.
            const bool crashed = !ours && held.host == mine.host && held.pid != mine.pid &&
                                 ended_.count({held.host, held.pid}) != 0;
            if (!ours && !lapsed && !crashed) {
                throw LeaseHeld("another dispatcher holds the fake store: pid " +
                                std::to_string(held.pid) + " on " + held.host + ", lapses at " +
                                std::to_string(held.expires_at));
            }
        }
        lease_ = mine;
    }
    bool renew_lease(const std::string& owner, std::int64_t heartbeat_at,
                     std::int64_t expires_at) override {
        enter(Op::renew_lease);
        std::lock_guard lock(mutex_);
        refuse_write_locked();
        if (!lease_ || lease_->owner != owner) {
            return false;
        }
        lease_->heartbeat_at = heartbeat_at;
        lease_->expires_at = expires_at;
        return true;
    }
    void release_lease(const std::string& owner) noexcept override {
        std::lock_guard lock(mutex_);
        if (lease_ && lease_->owner == owner) {
            lease_.reset();
        }
    }
    void set_wake_handler(std::function<void(bool rescan)> wake) override {
        std::lock_guard lock(wake_mutex_);
        wake_ = std::move(wake);
    }

    // What expire_due() writes as last_error (SqliteStore's text, src/sqlite/queries.hpp).
    static constexpr const char* kExpiredError = "ttl passed before delivery";

  private:
    // A pending record's place in dispatch order.
    struct Position {
        int priority = 0;
        std::int64_t id = 0;
    };
    struct DispatchOrder {
        bool operator()(const Position& a, const Position& b) const {
            return a.priority != b.priority ? a.priority > b.priority : a.id < b.id;
        }
    };
    using Positions = std::set<Position, DispatchOrder>;
    using Records = std::map<std::int64_t, Record>;

    static std::string uid_for(std::int64_t id) {
        // UUID-shaped and unique per store; deterministic, unlike the Outbox's UUIDv7.
        char buf[37];
        std::snprintf(buf, sizeof buf, "00000000-0000-7000-8000-%012llx",
                      static_cast<unsigned long long>(id));
        return buf;
    }
    static PendingRef ref(const Record& r) {
        return PendingRef{r.id,         r.message.priority, r.message.key, r.next_attempt_at,
                          r.expires_at, r.attempts};
    }

    void refuse_write_locked() const {
        if (disk_full_) {
            throw disk_full_error();
        }
    }
    void insert_pending(Record r) {
        const std::int64_t id = r.id;
        records_.emplace(id, std::move(r));
        index(records_.at(id));
    }
    void index(const Record& r) {
        const Position p{r.message.priority, r.id};
        pending_.insert(p);
        if (r.message.key) {
            by_key_[*r.message.key].insert(p);
        }
    }
    void unindex(const Record& r) {
        const Position p{r.message.priority, r.id};
        pending_.erase(p);
        if (r.message.key) {
            auto it = by_key_.find(*r.message.key);
            if (it != by_key_.end()) {
                it->second.erase(p);
                if (it->second.empty()) {
                    by_key_.erase(it);
                }
            }
        }
    }
    // Every state change goes through here, so the indexes hold exactly the pending records.
    void set_state(Record& r, RecordState state) {
        if (r.state == state) {
            return;
        }
        if (r.state == RecordState::pending) {
            unindex(r);
        }
        if (state == RecordState::pending) {
            index(r);
            ++requeues_;  // like SqliteStore's trigger: any record back to pending
        }
        r.state = state;
    }
    Records::iterator erase(Records::iterator it) {
        if (it->second.state == RecordState::pending) {
            unindex(it->second);
        }
        unreadable_.erase(it->first);
        return records_.erase(it);
    }
    void requeue_locked(Record& r) {
        set_state(r, RecordState::pending);
        r.attempts = 0;
        r.next_attempt_at = 0;
        r.done_at.reset();
    }
    void wake(bool rescan) {
        std::lock_guard lock(wake_mutex_);
        if (wake_) {
            wake_(rescan);
        }
    }

    mutable std::mutex mutex_;  // everything below but the wake handler
    Records records_;
    Positions pending_;
    std::map<std::string, Positions> by_key_;
    std::map<std::int64_t, std::string> unreadable_;
    std::int64_t next_id_ = 1;
    std::int64_t requeues_ = 0;
    std::int64_t data_version_ = 1;
    bool disk_full_ = false;
    std::optional<LeaseInfo> lease_;
    std::set<std::pair<std::string, std::int64_t>> ended_;

    mutable std::mutex wake_mutex_;  // held while the handler runs
    std::function<void(bool rescan)> wake_;
};

}  // namespace outpost::testing
