#include "outpost/retry_policy.hpp"

#include <cmath>

#include "backoff.hpp"
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
    return detail::Backoff{initial_backoff, max_backoff, multiplier, jitter}.delay(attempts,
                                                                                   jitter_sample);
}

}  // namespace outpost
