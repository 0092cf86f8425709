#include "duration.hpp"

#include <cstdint>
#include <limits>
#include <stdexcept>

namespace outpost::cli {

namespace {

struct Unit {
    std::string_view name;
    std::int64_t ms;
};

// Longest names first, so "ms" is not read as "m" followed by junk.
constexpr Unit kUnits[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}, {"w", 604'800'000},
};

std::invalid_argument bad(std::string_view text, const std::string& why) {
    return std::invalid_argument("invalid duration '" + std::string(text) + "': " + why +
                                 " (use e.g. 30s, 5m, 2h, 7d, 1h30m)");
}

}  // namespace

std::chrono::milliseconds parse_duration(std::string_view text) {
    if (text.empty()) {
        throw bad(text, "empty");
    }
    constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    std::int64_t total = 0;
    std::size_t i = 0;
    while (i < text.size()) {
        if (text[i] < '0' || text[i] > '9') {
            throw bad(text, "expected a number at '" + std::string(text.substr(i)) + "'");
        }
        std::int64_t n = 0;
        while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
            const int digit = text[i] - '0';
            if (n > (kMax - digit) / 10) {
                throw bad(text, "too large");
            }
            n = n * 10 + digit;
            ++i;
        }
        std::size_t end = i;
        while (end < text.size() && (text[end] < '0' || text[end] > '9')) {
            ++end;
        }
        const std::string_view unit = text.substr(i, end - i);
        if (unit.empty()) {
            throw bad(text, "missing unit after " + std::to_string(n));
        }
        const Unit* found = nullptr;
        for (const Unit& u : kUnits) {
            if (unit == u.name) {
                found = &u;
            }
        }
        if (found == nullptr) {
            throw bad(text, "unknown unit '" + std::string(unit) + "'");
        }
        if (n > kMax / found->ms || total > kMax - n * found->ms) {
            throw bad(text, "too large");
        }
        total += n * found->ms;
        i = end;
    }
    return std::chrono::milliseconds(total);
}

std::string format_duration(std::chrono::milliseconds d) {
    std::int64_t ms = d.count();
    std::string sign;
    if (ms < 0) {
        sign = "-";
        ms = ms == std::numeric_limits<std::int64_t>::min()
                 ? std::numeric_limits<std::int64_t>::max()
                 : -ms;
    }
    if (ms < 1000) {
        return sign + std::to_string(ms) + (ms == 0 ? "s" : "ms");
    }
    static constexpr Unit kDescending[] = {
        {"d", 86'400'000}, {"h", 3'600'000}, {"m", 60'000}, {"s", 1000}};
    std::string out;
    int parts = 0;
    for (const Unit& u : kDescending) {
        const std::int64_t n = ms / u.ms;
        if (n == 0 && parts == 0) {
            continue;
        }
        if (n != 0) {
            out += (out.empty() ? "" : " ") + std::to_string(n) + std::string(u.name);
        }
        ms -= n * u.ms;
        if (++parts == 2) {
            break;
        }
    }
    return sign + out;
}

}  // namespace outpost::cli
