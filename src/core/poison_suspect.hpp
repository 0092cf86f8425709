// The poison suspect: a message the broker answers by dropping the connection instead of
// rejecting it (mosquitto does so for some topics and properties). Without this rule such a
// message would be sent again on every connection, never counted as an attempt (a lost
// connection is not one), and its key would stall for ever.
//
// The rule: a record right after whose publish the connection died (within kSuspectWindow,
// nothing sent after it acknowledged) becomes the suspect. It is held back and, on the next
// connections, sent alone once something else was acknowledged there. When the connection then
// dies right after it again, that is evidence: the loss counts as an attempt for it (then on
// every such loss), so the retry cap ends it and the records behind it go. A flaky link or a
// broker restart can make an innocent record the suspect, but cannot give the evidence: that
// needs the connection to work for others and die on this one alone.
//
// Threads: the dispatching thread only; no lock. It decides, the loop acts: judge() returns the
// record to release and the record proven, and the loop frees keys and writes the attempt.
#pragma once

#include <cstdint>
#include <optional>

#include "flight_table.hpp"
#include "outpost/clock.hpp"
#include "outpost/store.hpp"

namespace outpost::detail {

class PoisonSuspect {
  public:
    // The suspect's record id, 0 when there is none.
    std::int64_t id() const { return id_; }

    // Remembers the earliest publish lost with the current connection.
    void note_lost(std::int64_t id, const Flight& f);
    // A connection was made: no publish lost on it yet.
    void new_connection() { first_loss_.reset(); }

    struct Verdict {
        std::optional<PendingRef> released;  // a held record that is no longer the suspect
        std::optional<PendingRef> proven;    // the suspect, proven: its loss is an attempt
    };
    // Judges the connection that just died, from its first lost publish.
    Verdict judge(Clock::time_point now, const FlightTable& flights);

    // True while the suspect must go alone and cannot yet: it is out alone, or it is held and
    // the connection has shown it works (or it was proven) but the window is not empty.
    bool blocks(const FlightTable& flights) const;
    // Holds the suspect back (its key stays busy meanwhile).
    void hold(PendingRef r) { held_ = std::move(r); }
    // The held suspect, taken, when it may go now: the connection has shown it works (or the
    // suspect was proven) and, as blocks() said no, the window is empty.
    std::optional<PendingRef> take_ready(const FlightTable& flights);
    // The held suspect, taken, whatever the connection showed (nothing else to send).
    std::optional<PendingRef> take_held();
    // Forgets the held suspect (stopping: the next start's pass finds and holds it again).
    void forget_held() { held_.reset(); }
    // An outcome of `o.id` was written: a suspect answered, dead or expired is no longer one.
    void settled(const Outcome& o);

  private:
    struct Lost {
        std::int64_t id = 0;
        Flight flight;  // as it was when lost
    };

    std::optional<Lost> first_loss_;  // earliest publish lost with this connection
    std::int64_t id_ = 0;             // the suspect (0: none)
    bool proven_ = false;             // a loss was already counted against it
    std::optional<PendingRef> held_;  // the suspect while it is held back to be sent alone
};

}  // namespace outpost::detail
