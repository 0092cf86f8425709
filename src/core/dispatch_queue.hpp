// The dispatch queue: which pending record goes next, and which must wait. It owns promise 3
// (within a key, first deliveries in commit order): a key with a record taken out (in flight,
// decided and not yet written, or held) is busy, and a key whose head waits for its retry time
// is waiting; neither gives out another record until the loop frees it.
//
// Sources, in the order pick() takes them: keys whose head's retry is due and keys that became
// free (their head, by one seek on the key index), records whose retry is due, records that
// arrived before the scan position (a higher priority), then the forward pass over the dispatch
// order from `cursor`. The pass skips records of blocked keys without remembering them: each
// blocked key is asked for its head when it is free again, so a key's backlog costs nothing
// while it waits and other keys flow on. Every record the pass skips has a way back: busy key ->
// free(), waiting key or record -> the due list.
//
// Threads: the dispatching thread only; no lock. The queue reads the Store (scans, key heads)
// and never writes it; it knows nothing of flights, the broker or the lease: the loop tells it
// what is in flight (a predicate), which record is the poison suspect, and frees keys.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "outpost/store.hpp"

namespace outpost::detail {

class DispatchQueue {
  public:
    // `window`: the most publishes in flight; the due list and the scan budget scale with it.
    explicit DispatchQueue(std::size_t window);

    // What one pick() found. Every record in it has its key (if any) marked busy.
    struct Picked {
        std::vector<PendingRef> send;     // to publish now, in this order
        std::vector<PendingRef> expired;  // its ttl passed: to be written as expired
        std::optional<PendingRef> held;   // the poison suspect, to be sent alone later
    };
    // Picks at most `room` records to send now (expired and held ones do not count against
    // `room`), as of wall time `now`. `in_flight(id)`: the record is taken already (a keyless
    // one is not known here otherwise). `suspect_id`: the record to hold instead of sending (0:
    // none). Fills `out` as it goes: when the store throws, what was picked until then is in
    // `out` (keys busy), and the caller decides what to do with it.
    void pick(Store& store, std::int64_t now, std::size_t room,
              const std::function<bool(std::int64_t)>& in_flight, std::int64_t suspect_id,
              Picked& out);

    // Starts the forward pass again from the first pending record, forgetting what the last
    // pass learnt (waiting keys, due retries). Busy keys stay: their records are taken.
    void reset();
    // Records may have been committed since the last look: arrivals, or ahead of the pass.
    void note_arrivals() {
        arrivals_due_ = true;
        at_end_ = false;
    }
    // Remembers that `r` (or its key's head) waits until wall time `at`.
    void wait_for(const PendingRef& r, std::int64_t at);

    // A record of `key` was taken out by someone else than pick() (a proven suspect, a send).
    void mark_busy(const std::string& key) { busy_keys_.insert(key); }
    // The key's record is back in the database undecided: the key is no longer busy, and the
    // next pass (or reset) finds its head.
    void release(const std::string& key) { busy_keys_.erase(key); }
    // The key's record is done: its next record may go, asked for by one key-head seek.
    void free(const std::string& key) {
        busy_keys_.erase(key);
        freed_.insert(key);
    }
    // Forgets every busy key (stopping: nothing is taken any more).
    void clear_busy() { busy_keys_.clear(); }

    // The earliest wall time something waits for.
    std::optional<std::int64_t> next_due() const;
    // True when the queue has more to look at than the last pick looked at.
    bool has_more(std::int64_t now) const;

  private:
    struct Due {
        std::int64_t at;  // wall ms
        PendingRef ref;   // keyless: the record; keyed: the head when it was rescheduled
        bool operator>(const Due& o) const { return at > o.at; }
    };

    const std::size_t due_capacity_;  // most entries in `dues_`; beyond, forgotten_due_
    const std::size_t scan_budget_;   // most rows the forward pass examines per pick

    DispatchCursor cursor_;
    bool at_end_ = false;       // the pass reached the end of the pending records
    std::int64_t seen_id_ = 0;  // the last id an arrivals check saw: records up to it lie ahead
                                // of the cursor or were considered; newer ones are arrivals
    bool arrivals_due_ = true;  // records may have been committed since seen_id_
    std::unordered_set<std::string> busy_keys_;                   // a record of the key is taken
    std::unordered_map<std::string, std::int64_t> waiting_keys_;  // key -> when its head is due
    std::unordered_set<std::int64_t> waiting_ids_;  // keyless records waiting (in dues_ or not)
    std::unordered_set<std::string> freed_;         // keys freed since they were last asked
    std::priority_queue<Due, std::vector<Due>, std::greater<>> dues_;
    std::optional<std::int64_t> forgotten_due_;  // earliest retry `dues_` had no room for
};

}  // namespace outpost::detail
