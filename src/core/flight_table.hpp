// The flight table: the records the dispatcher took out of the dispatch queue and has not yet
// written back. A flight is either a publish handed to the broker and waiting for its answer,
// or an outcome already decided (by the answer, by the ack timeout, or without any publish:
// expired, unreadable, a proven poison suspect) and waiting to be written by Store::apply.
// While a record is here the dispatch queue never picks it again.
//
// Threads: FlightTable belongs to the dispatching thread and has no lock. Answers come back on
// the broker's threads; they go into a CompletionInbox, which the Dispatcher's mutex guards
// (every member function of CompletionInbox is called with that mutex held), and the loop hands
// them to collect(). Neither type calls the store, the broker or the queue: they return what
// happened (the flights lost, the outcomes decided) and the loop acts on it.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "outpost/broker.hpp"
#include "outpost/clock.hpp"
#include "outpost/retry_policy.hpp"
#include "outpost/store.hpp"

namespace outpost::detail {

struct Flight {
    std::uint64_t seq = 0;  // matches the answer to this publish; 0: no publish (or given up)
    PendingRef ref;         // the record as scanned (key, priority, attempts before this one)
    Clock::time_point sent_at{};
    Clock::time_point deadline{};    // ack timeout
    std::optional<Outcome> outcome;  // decided, waiting to be written
    bool alone = false;      // sent as the only publish in flight (a suspect, see PoisonSuspect)
    bool after_ack = false;  // ... after something was acknowledged on its connection
};

// One answer from the broker, as its callback delivered it.
struct Completion {
    std::int64_t id = 0;
    std::uint64_t seq = 0;
    PublishResult result;
};

// Answers queued by broker threads for the loop. Guarded by the Dispatcher's mutex.
class CompletionInbox {
  public:
    // A publish was handed to the broker: one more answer is owed.
    void expect_one() { ++outstanding_; }
    // Queues an answer (broker thread). True when the loop should wake for it: once a quarter
    // of what is out has come back, or the last of it, so the loop refills a quarter of the
    // window at once instead of ping-ponging one message at a time (one message in flight, the
    // latency case, wakes it at once).
    bool push(Completion c);
    // Enough answers are queued to be worth a step.
    bool due() const { return due_; }
    bool empty() const { return completions_.empty(); }
    // The queued answers, not taken.
    const std::vector<Completion>& queued() const { return completions_; }
    // Takes every queued answer.
    std::vector<Completion> take();
    // Drops the queued answers (given up with the lease: nothing to do with them).
    void discard();
    // No answer is owed any more (every publish was given up); late ones are still queued.
    void forget_outstanding() { outstanding_ = 0; }

  private:
    std::vector<Completion> completions_;
    std::size_t outstanding_ = 0;  // handed to the broker, no answer queued yet
    bool due_ = false;
};

class FlightTable {
  public:
    FlightTable(const RetryPolicy& retry, std::chrono::milliseconds ack_timeout,
                const Clock& clock);

    bool contains(std::int64_t id) const { return flights_.count(id) != 0; }
    const Flight* find(std::int64_t id) const;
    bool empty() const { return flights_.empty(); }
    // Publishes out whose outcome is not decided yet: what counts against the window.
    std::size_t sent() const { return sent_; }
    // The highest seq acknowledged on this connection (0: nothing yet).
    std::uint64_t acked_seq() const { return acked_seq_; }
    // Ids of every flight, decided or not (Store::expire_due must leave them alone).
    std::vector<std::int64_t> ids() const;

    // A connection was made: nothing is acknowledged on it yet.
    void new_connection() { acked_seq_ = 0; }

    // Records a publish of `ref` (with the stored attempt count) about to be handed to the
    // broker; returns the seq its answer must carry. `alone`: it is the poison suspect.
    std::uint64_t launch(PendingRef ref, std::uint32_t attempts, bool alone);
    // Records an outcome decided without a publish.
    void decide(PendingRef ref, Outcome outcome);
    // The outcome of a failed attempt of `ref`: a retry at the policy's time, or dead at its cap.
    Outcome failure(std::int64_t id, const PendingRef& ref, const std::string& why);

    struct Collected {
        std::size_t decided = 0;
        // Publishes whose answer was connection_lost: removed (they are pending in the database
        // and are sent again; never an attempt).
        std::vector<std::pair<std::int64_t, Flight>> lost;
    };
    // Turns answers into decided outcomes and, when `connected`, publishes past their ack
    // timeout into failed attempts (their answer is ignored if it ever comes). Answers to a
    // publish given up on (unknown id, old seq, already decided) are ignored.
    Collected collect(const std::vector<Completion>& answers, bool connected);

    // The seqs of queued answers to current publishes that are not connection_lost: the broker
    // answered them before the loss was noticed. Counts them as acknowledged on the connection.
    std::unordered_set<std::uint64_t> answered(const std::vector<Completion>& queued);
    // Forgets every undecided publish (the connection or the lease is gone) and returns them.
    std::vector<std::pair<std::int64_t, Flight>> drop_undecided();

    // Every decided outcome, to be written.
    std::vector<Outcome> decided() const;
    // Removes the flight of an outcome that is now in the database; returns its ref (nullopt
    // when there is no such flight).
    std::optional<PendingRef> settle(std::int64_t id);
    // The earliest moment the table needs the loop: an ack deadline, or soon (`retry_pause`
    // from `now`) when a decided outcome waits to be written after a storage error.
    std::optional<Clock::time_point> next_deadline(Clock::time_point now,
                                                   Clock::duration retry_pause) const;
    // Forgets everything (stopping: what is undecided is pending in the database).
    void clear();

  private:
    const RetryPolicy& retry_;
    const std::chrono::milliseconds ack_timeout_;
    const Clock& clock_;

    std::unordered_map<std::int64_t, Flight> flights_;
    std::size_t sent_ = 0;         // flights whose outcome is not decided yet
    std::uint64_t seq_ = 0;        // the last seq given out
    std::uint64_t acked_seq_ = 0;  // highest seq acknowledged on this connection
    std::mt19937_64 rng_{std::random_device{}()};
    std::uniform_real_distribution<double> unit_{0.0, 1.0};
};

}  // namespace outpost::detail
