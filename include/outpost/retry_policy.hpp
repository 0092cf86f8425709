// outpost: the retry cap and the backoff between attempts, as a value type.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace outpost {

// An exponential backoff with jitter and a cap on attempts.
//
// Pure: the same inputs give the same answer; the randomness comes in as `jitter_sample`
// (uniform in [0, 1)), so tests can pin it.
struct RetryPolicy {
    // Attempts (message-specific failures) after which a record becomes dead. 0 = unlimited.
    std::uint32_t max_attempts = 10;
    // Delay after the first failure. Default 1 s.
    std::chrono::milliseconds initial_backoff{1000};
    // Upper bound of any delay. Default 5 min.
    std::chrono::milliseconds max_backoff{std::chrono::minutes(5)};
    // Growth per further failure. Default 2.0; must be >= 1.
    double multiplier = 2.0;
    // Fraction of the delay that is randomised: the delay is scaled by a factor drawn from
    // [1 - jitter, 1]. Default 0.2; must be in [0, 1].
    double jitter = 0.2;

    // Throws InvalidConfig naming the field when a value is out of range.
    void validate() const;

    // True when a record that has failed `attempts` times must not be tried again.
    bool exhausted(std::uint32_t attempts) const noexcept {
        return max_attempts != 0 && attempts >= max_attempts;
    }

    // The delay before the next try of a record that has failed `attempts` (>= 1) times.
    std::chrono::milliseconds backoff(std::uint32_t attempts, double jitter_sample) const noexcept;

    // The wall time of the next try, or std::nullopt when the record is exhausted (dead).
    std::optional<std::int64_t> next_attempt_at(std::uint32_t attempts, std::int64_t now_ms,
                                                double jitter_sample) const noexcept {
        if (exhausted(attempts)) {
            return std::nullopt;
        }
        return now_ms + backoff(attempts, jitter_sample).count();
    }
};

}  // namespace outpost
