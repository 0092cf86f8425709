// outpost: the only place that says "now".
//
// Backoff, leases and timeouts run on the monotonic clock; wall time is only stored as data
// (created_at, next_attempt_at, ...). Tests inject a ManualClock to make time exact.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

namespace outpost {

class Clock {
  public:
    using duration = std::chrono::steady_clock::duration;
    using time_point = std::chrono::steady_clock::time_point;

    virtual ~Clock() = default;
    // Monotonic time: never goes backwards.
    virtual time_point now() const = 0;
    // Wall-clock milliseconds since the Unix epoch. May jump (NTP, a device without RTC).
    virtual std::int64_t wall_ms() const = 0;
};

// The real clocks. Thread-safe, stateless.
class SystemClock final : public Clock {
  public:
    time_point now() const override { return std::chrono::steady_clock::now(); }
    std::int64_t wall_ms() const override;
    // A process-wide instance.
    static SystemClock& instance();
};

// A clock that only moves when told. Thread-safe.
class ManualClock final : public Clock {
  public:
    explicit ManualClock(std::int64_t wall_start_ms = 1'700'000'000'000) : wall_(wall_start_ms) {}
    time_point now() const override {
        std::lock_guard lock(mutex_);
        return mono_;
    }
    std::int64_t wall_ms() const override {
        std::lock_guard lock(mutex_);
        return wall_;
    }
    // Moves both clocks forward.
    void advance(std::chrono::milliseconds d) {
        std::lock_guard lock(mutex_);
        mono_ += d;
        wall_ += d.count();
    }
    // Moves the wall clock alone (an NTP step); the monotonic clock is untouched.
    void set_wall(std::int64_t wall_ms) {
        std::lock_guard lock(mutex_);
        wall_ = wall_ms;
    }

  private:
    mutable std::mutex mutex_;
    time_point mono_{std::chrono::hours(1)};
    std::int64_t wall_;
};

}  // namespace outpost
