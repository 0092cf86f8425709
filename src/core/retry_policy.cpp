#include "outpost/retry_policy.hpp"

#include <algorithm>
#include <cmath>

#include "outpost/error.hpp"

namespace outpost {

void RetryPolicy::validate() const {
    if (initial_backoff.count() < 0) {
        throw InvalidConfig("RetryPolicy::initial_backoff must not be negative", "initial_backoff");
    }
    if (max_backoff < initial_backoff) {
        throw InvalidConfig("RetryPolicy::max_backoff must be at least initial_backoff",
                            "max_backoff");
    }
    if (!(multiplier >= 1.0) || !std::isfinite(multiplier)) {
        throw InvalidConfig("RetryPolicy::multiplier must be a finite number >= 1", "multiplier");
    }
    if (!(jitter >= 0.0 && jitter <= 1.0)) {
        throw InvalidConfig("RetryPolicy::jitter must be within [0, 1]", "jitter");
    }
}

std::chrono::milliseconds RetryPolicy::backoff(std::uint32_t attempts,
                                               double jitter_sample) const noexcept {
    const double cap = static_cast<double>(max_backoff.count());
    // initial * multiplier^(attempts-1), computed in floating point and capped before it can
    // overflow anything.
    const double exponent = attempts == 0 ? 0.0 : static_cast<double>(attempts - 1);
    double delay = static_cast<double>(initial_backoff.count()) * std::pow(multiplier, exponent);
    if (!(delay <= cap)) {  // also catches inf/nan
        delay = cap;
    }
    const double sample = std::clamp(jitter_sample, 0.0, 1.0);
    delay *= 1.0 - jitter * sample;
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(delay)));
}

}  // namespace outpost
