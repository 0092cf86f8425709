#include "text.hpp"

#include <algorithm>
#include <array>
#include <cstdio>

namespace outpost::cli {

namespace {

// Decodes one UTF-8 sequence at `i`; returns its code point and advances `i`, or returns -1 on
// an invalid sequence (overlong forms, surrogates, above U+10FFFF).
long decode_utf8(std::span<const std::byte> s, std::size_t& i) noexcept {
    const auto at = [&](std::size_t k) { return static_cast<unsigned>(s[k]); };
    const unsigned c = at(i);
    if (c < 0x80) {
        ++i;
        return c;
    }
    std::size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;
    long cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else {
        return -1;
    }
    if (i + len > s.size()) {
        return -1;
    }
    for (std::size_t k = 1; k < len; ++k) {
        const unsigned ck = at(i + k);
        if (ck < (k == 1 ? lo : 0x80) || ck > (k == 1 ? hi : 0xBF)) {
            return -1;
        }
        cp = (cp << 6) | (ck & 0x3F);
    }
    i += len;
    return cp;
}

}  // namespace

bool is_printable_utf8(std::span<const std::byte> bytes) noexcept {
    std::size_t i = 0;
    while (i < bytes.size()) {
        const long cp = decode_utf8(bytes, i);
        if (cp < 0) {
            return false;
        }
        const bool control = cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
        if (control && cp != '\t' && cp != '\n' && cp != '\r') {
            return false;
        }
    }
    return true;
}

std::string hex(std::span<const std::byte> bytes) {
    static const char* const kHex = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (const std::byte b : bytes) {
        const auto u = static_cast<unsigned>(b);
        out += kHex[u >> 4];
        out += kHex[u & 0xF];
    }
    return out;
}

std::string hex_dump(std::span<const std::byte> bytes) {
    std::string out;
    char buf[32];
    for (std::size_t off = 0; off < bytes.size(); off += 16) {
        std::snprintf(buf, sizeof buf, "%08zx ", off);
        out += buf;
        std::string ascii;
        for (std::size_t k = 0; k < 16; ++k) {
            if (k == 8) {
                out += ' ';
            }
            if (off + k < bytes.size()) {
                const auto u = static_cast<unsigned>(bytes[off + k]);
                std::snprintf(buf, sizeof buf, " %02x", u);
                out += buf;
                ascii += (u >= 0x20 && u < 0x7F) ? static_cast<char>(u) : '.';
            } else {
                out += "   ";
            }
        }
        out += "  |" + ascii + "|\n";
    }
    return out;
}

std::string base64_encode(std::span<const std::byte> bytes) {
    static const char* const kAlphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        const auto v = (static_cast<unsigned>(bytes[i]) << 16) |
                       (static_cast<unsigned>(bytes[i + 1]) << 8) |
                       static_cast<unsigned>(bytes[i + 2]);
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += kAlphabet[(v >> 6) & 63];
        out += kAlphabet[v & 63];
    }
    const std::size_t rest = bytes.size() - i;
    if (rest > 0) {
        unsigned v = static_cast<unsigned>(bytes[i]) << 16;
        if (rest == 2) {
            v |= static_cast<unsigned>(bytes[i + 1]) << 8;
        }
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

std::string format_bytes(std::uint64_t bytes) {
    if (bytes < 1024) {
        return std::to_string(bytes) + " B";
    }
    static constexpr std::array<const char*, 5> kUnits = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = static_cast<double>(bytes) / 1024.0;
    std::size_t u = 0;
    while (v >= 1024.0 && u + 1 < kUnits.size()) {
        v /= 1024.0;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
    return buf;
}

std::string format_time(std::int64_t wall_ms) {
    // Howard Hinnant's days -> civil date, valid for the whole int64 range we can meet.
    std::int64_t ms = wall_ms % 1000;
    std::int64_t secs = wall_ms / 1000;
    if (ms < 0) {
        ms += 1000;
        --secs;
    }
    std::int64_t days = secs / 86400;
    std::int64_t sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        --days;
    }
    const std::int64_t z = days + 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const std::int64_t doe = z - era * 146097;
    const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const std::int64_t mp = (5 * doy + 2) / 153;
    const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
    const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
    const std::int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%03lldZ",
                  static_cast<long long>(y), static_cast<long long>(m), static_cast<long long>(d),
                  static_cast<long long>(sod / 3600), static_cast<long long>(sod / 60 % 60),
                  static_cast<long long>(sod % 60), static_cast<long long>(ms));
    return buf;
}

std::string one_line(std::string_view text) {
    std::string out(text);
    for (char& c : out) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7F) {
            c = '?';
        }
    }
    return out;
}

std::string redact_uri(std::string_view uri) {
    const std::size_t scheme = uri.find("://");
    const std::size_t start = scheme == std::string_view::npos ? 0 : scheme + 3;
    const std::size_t slash = uri.find('/', start);
    const std::string_view authority =
        uri.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    const std::size_t at = authority.rfind('@');
    if (at == std::string_view::npos) {
        return std::string(uri);
    }
    return std::string(uri.substr(0, start)) + std::string(uri.substr(start + at + 1));
}

std::string shell_word(std::string_view word) {
    const std::string text = one_line(word);
    const bool plain = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') ||
               std::string_view("/._-+,:=@%").find(c) != std::string_view::npos || u >= 0x80;
    });
    if (plain) {
        return text;
    }
    std::string out = "'";
    for (const char c : text) {
        out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    }
    return out + "'";
}

}  // namespace outpost::cli
