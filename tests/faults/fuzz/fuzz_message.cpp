// Fuzz target: message validation (outpost::validate), the check Outbox::add() makes before
// anything touches the database.
//
// The bytes become a Message (topic, key, content type, headers, qos, ttl, payload) and limits.
// Besides not crashing, validate() must agree with a reference written here from the rules
// message.hpp documents, by a different method (decode each code point, then judge it): a
// message it accepts must satisfy every rule, one it refuses must break one, and the refusal
// must be an InvalidMessage with a message.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "outpost/error.hpp"
#include "outpost/message.hpp"

namespace {

using outpost::fuzz::require;

enum class Rules { utf8, mqtt, topic };

// Decodes one code point at s[i] the textbook way; std::nullopt when it is not well-formed
// UTF-8 (truncated, a bad continuation, overlong, a surrogate, above U+10FFFF).
std::optional<char32_t> decode(std::string_view s, std::size_t& i) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int extra = 0;
    char32_t cp = 0;
    char32_t min = 0;
    if (b0 < 0x80) {
        ++i;
        return b0;
    } else if ((b0 & 0xE0) == 0xC0) {
        extra = 1, cp = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
        extra = 2, cp = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
        extra = 3, cp = b0 & 0x07, min = 0x10000;
    } else {
        return std::nullopt;
    }
    if (s.size() - i <= static_cast<std::size_t>(extra)) {
        return std::nullopt;
    }
    for (int k = 1; k <= extra; ++k) {
        const auto b = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
        if ((b & 0xC0) != 0x80) {
            return std::nullopt;
        }
        cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return std::nullopt;
    }
    i += static_cast<std::size_t>(extra) + 1;
    return cp;
}

bool text_ok(std::string_view s, Rules rules) {
    if (s.size() > 65535) {
        return false;
    }
    for (std::size_t i = 0; i < s.size();) {
        const auto cp = decode(s, i);
        if (!cp || *cp == 0) {
            return false;
        }
        if (rules == Rules::utf8) {
            continue;
        }
        const bool control = *cp < 0x20 || (*cp >= 0x7F && *cp <= 0x9F);
        const bool nonchar = (*cp >= 0xFDD0 && *cp <= 0xFDEF) || (*cp & 0xFFFF) == 0xFFFE ||
                             (*cp & 0xFFFF) == 0xFFFF;
        if (control || nonchar) {
            return false;
        }
        if (rules == Rules::topic && (*cp == '+' || *cp == '#')) {
            return false;
        }
    }
    return true;
}

bool reference_accepts(const outpost::Message& m, const outpost::MessageLimits& limits) {
    if (m.topic.empty() || !text_ok(m.topic, Rules::topic)) {
        return false;
    }
    if (m.key && !text_ok(*m.key, Rules::utf8)) {
        return false;
    }
    if (m.qos != 0 && m.qos != 1 && m.qos != 2) {
        return false;
    }
    if (m.payload.size() > limits.max_payload_bytes) {
        return false;
    }
    if (m.ttl && (m.ttl->count() < 1 || m.ttl->count() > 3'155'695'200'000)) {  // 100 x 365.2425 d
        return false;
    }
    for (const outpost::Header& h : m.headers) {
        if (h.name.empty() || !text_ok(h.name, Rules::mqtt) || !text_ok(h.value, Rules::mqtt)) {
            return false;
        }
    }
    return !m.content_type || text_ok(*m.content_type, Rules::mqtt);
}

// Mostly short, mostly valid: a string field is often a run of one character repeated, so long
// topics (the 65,535-byte limit) are reachable in a small input.
std::string text(outpost::fuzz::Bytes& in) {
    std::string s = in.str();
    if (!s.empty() && static_cast<unsigned char>(s[0]) == 0xFF) {
        const std::size_t n = 65530 + (s.size() > 1 ? static_cast<unsigned char>(s[1]) % 12 : 0);
        const std::string unit = s.size() > 2 ? s.substr(2) : std::string("a");
        std::string long_one;
        while (long_one.size() < n) {
            long_one += unit;
        }
        return long_one;
    }
    return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    outpost::fuzz::Bytes in(data, size);
    outpost::Message m;
    outpost::MessageLimits limits;
    const std::uint8_t flags = in.byte();
    const std::uint8_t q = in.byte();
    m.qos = (q & 0x80) ? static_cast<std::int8_t>(q) : q % 3;
    m.retain = (flags & 1) != 0;
    m.priority = in.i32();
    if (flags & 2) {
        m.ttl = std::chrono::milliseconds(in.i64());
    }
    limits.max_payload_bytes = static_cast<std::size_t>(in.u64(2));
    m.topic = text(in);
    if (flags & 4) {
        m.key = text(in);
    }
    if (flags & 8) {
        m.content_type = text(in);
    }
    const int headers = (flags >> 4) % 8;
    for (int i = 0; i < headers; ++i) {
        outpost::Header h;
        h.name = text(in);
        h.value = text(in);
        m.headers.push_back(std::move(h));
    }
    const std::string payload = in.rest();
    const auto* p = reinterpret_cast<const std::byte*>(payload.data());
    m.payload.assign(p, p + payload.size());

    bool accepted = false;
    try {
        outpost::validate(m, limits);
        accepted = true;
    } catch (const outpost::InvalidMessage& e) {
        require(e.kind() == outpost::ErrorKind::invalid_message && *e.what() != '\0',
                "a refusal is an InvalidMessage that says why");
    }
    const bool expected = reference_accepts(m, limits);
    require(accepted == expected, accepted ? "validate() accepted a message breaking a rule"
                                           : "validate() refused a message breaking no rule");
    return 0;
}
