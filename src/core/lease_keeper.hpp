// The lease keeper: the dispatcher's claim to be the only one sending from this file. It takes
// the lease, renews it every lease_ttl / 3, takes it again when it was lost and is free once
// more, and says when it was lost (another dispatcher took it over after ours lapsed: the
// process stalled longer than lease_ttl). It never touches flights or the queue: keep() returns
// what changed and the loop acts on it.
//
// Threads: the dispatching thread only; no lock. start() and run_once() take the first lease on
// the caller's thread before the loop runs, and stop() releases it on the caller's thread after
// the loop's thread is joined.
#pragma once

#include <chrono>

#include "outpost/clock.hpp"
#include "outpost/store.hpp"

namespace outpost::detail {

class LeaseKeeper {
  public:
    // `retry_pause`: how soon to ask a store that threw again (never a spin).
    LeaseKeeper(Store& store, const Clock& clock, std::chrono::milliseconds ttl,
                Clock::duration retry_pause);

    bool held() const { return held_; }
    // Held at least once: run_once() takes it on its first call only.
    bool ever() const { return ever_; }
    Clock::time_point next_heartbeat() const { return next_heartbeat_; }

    // Takes the lease; throws LeaseHeld naming the holder, or a storage error.
    void take();

    enum class Change {
        none,   // held as before, or still not held
        taken,  // taken again after it was lost: the dispatcher may send again
        lost,   // taken over by another dispatcher: stop sending
    };
    // Renews the lease when its heartbeat is due, or tries to take it again when it was lost.
    // Throws storage errors (asked again after `retry_pause`).
    Change keep();
    // Gives the lease up if held. Never throws.
    void release() noexcept;

  private:
    Store& store_;
    const Clock& clock_;
    const std::chrono::milliseconds ttl_;
    const Clock::duration retry_pause_;

    LeaseInfo lease_;  // this process: random owner token, host, pid; times of the last take
    bool held_ = false;
    bool ever_ = false;
    Clock::time_point next_heartbeat_{};
};

}  // namespace outpost::detail
