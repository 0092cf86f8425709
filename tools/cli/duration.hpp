// Durations on the command line: "30s", "5m", "2h", "7d", "500ms", "1h30m".
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace outpost::cli {

// Parses one or more <digits><unit> groups, units ms, s, m, h, d, w, summed ("1h30m" = 90 min).
// Throws std::invalid_argument with a message naming the problem for anything else: an empty
// text, a number without unit, an unknown unit, a sign, a fraction, a value that overflows.
std::chrono::milliseconds parse_duration(std::string_view text);

// A short human form: the two largest non-zero units, "2h 5m", "45s", "350ms", "0s".
// Negative durations get a leading '-'.
std::string format_duration(std::chrono::milliseconds d);

}  // namespace outpost::cli
