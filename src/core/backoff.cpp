#include "backoff.hpp"

#include <algorithm>
#include <cmath>

namespace outpost::detail {

std::chrono::milliseconds Backoff::delay(std::uint32_t n, double sample) const noexcept {
    const double cap = static_cast<double>(max.count());
    const double exponent = n == 0 ? 0.0 : static_cast<double>(n - 1);
    double d = static_cast<double>(initial.count()) * std::pow(multiplier, exponent);
    if (!(d <= cap)) {  // also catches inf/nan
        d = cap;
    }
    d *= 1.0 - jitter * std::clamp(sample, 0.0, 1.0);
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(d)));
}

}  // namespace outpost::detail
