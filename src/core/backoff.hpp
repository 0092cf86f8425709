// One jittered exponential backoff, for both things the dispatcher backs off: a record's next
// attempt (RetryPolicy) and a reconnect to the broker (DispatcherOptions::reconnect_*). Plain
// arithmetic, no state, no clock: callers draw the jitter sample from their own generator.
#pragma once

#include <chrono>
#include <cstdint>

namespace outpost::detail {

struct Backoff {
    std::chrono::milliseconds initial{0};
    std::chrono::milliseconds max{0};
    double multiplier = 2.0;  // >= 1
    double jitter = 0.0;      // [0, 1]: how much of the delay a sample may take away

    // The delay before try number `n` + 1 after `n` failures (n = 0 counts as 1):
    // initial x multiplier^(n-1), capped at `max` (computed in floating point and capped before
    // it can overflow), then scaled by (1 - jitter x sample) with `sample` clamped to [0, 1].
    // A jitter of 0.5 spreads a fleet that lost the same broker over the upper half of the delay.
    std::chrono::milliseconds delay(std::uint32_t n, double sample) const noexcept;
};

}  // namespace outpost::detail
