// Message and options validation: what add() refuses before anything touches the database.
#include <array>
#include <string>
#include <string_view>

#include "mqtt_text.hpp"
#include "outpost/error.hpp"
#include "outpost/outbox.hpp"

namespace outpost {

namespace {

constexpr std::size_t kMaxMqttString = 65535;       // MQTT's two-byte length prefix
constexpr std::size_t kMaxMqttPayload = 268435455;  // MQTT's remaining-length limit

std::string hex(unsigned value, int digits) {
    static constexpr char kDigits[] = "0123456789ABCDEF";
    std::string out(static_cast<std::size_t>(digits), '0');
    for (int i = digits - 1; i >= 0 && value != 0; --i, value >>= 4) {
        out[static_cast<std::size_t>(i)] = kDigits[value & 0xF];
    }
    return out;
}

std::string code_point_name(char32_t cp) {
    return "U+" + hex(static_cast<unsigned>(cp), cp > 0xFFFF ? 6 : 4);
}

// A string that is stored (rules utf8) or also sent over MQTT (rules mqtt): at most 65,535
// bytes, and nothing detail::find_text_fault() objects to. `what()` names it, called only for
// the error: add() checks every message, so a good one must not pay for building names.
template <class Name>
void check_mqtt_string(std::string_view s, const Name& what,
                       detail::TextRules rules = detail::TextRules::mqtt) {
    if (s.size() > kMaxMqttString) {
        throw InvalidMessage(std::string(what()) + " is " + std::to_string(s.size()) +
                             " bytes long; MQTT allows at most 65535");
    }
    if (const auto fault = detail::find_text_fault(s, rules)) {
        throw InvalidMessage(std::string(what()) + " " + detail::describe(fault));
    }
}

}  // namespace

namespace detail {

namespace {

// Per byte, the rule sets under which it needs a closer look; a byte with none of the caller's
// bits set is plain ASCII the rules allow, and the scan moves on after one table load.
constexpr unsigned char kLookUtf8 = 1;   // NUL, and every byte >= 0x80 (a sequence to decode)
constexpr unsigned char kLookMqtt = 2;   // ... and the ASCII controls 0x01..0x1F, 0x7F
constexpr unsigned char kLookTopic = 4;  // ... and the wildcards '+', '#'

constexpr std::array<unsigned char, 256> make_byte_classes() {
    std::array<unsigned char, 256> t{};
    for (unsigned b = 0; b < 256; ++b) {
        unsigned char look = 0;
        if (b == 0 || b >= 0x80) {
            look = kLookUtf8 | kLookMqtt | kLookTopic;
        } else if (b < 0x20 || b == 0x7F) {
            look = kLookMqtt | kLookTopic;
        } else if (b == '+' || b == '#') {
            look = kLookTopic;
        }
        t[b] = look;
    }
    return t;
}
constexpr std::array<unsigned char, 256> kByteClasses = make_byte_classes();

}  // namespace

TextFault find_text_fault(std::string_view s, TextRules rules) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    const unsigned char look = rules == TextRules::utf8   ? kLookUtf8
                               : rules == TextRules::mqtt ? kLookUtf8 | kLookMqtt
                                                          : kLookUtf8 | kLookMqtt | kLookTopic;
    const bool mqtt = rules != TextRules::utf8;
    std::size_t i = 0;
    while (i < n) {
        const unsigned c = p[i];
        if ((kByteClasses[c] & look) == 0) {
            ++i;  // the hot path: printable ASCII is all a topic usually holds
            continue;
        }
        if (c < 0x80) {
            if (c == 0) {
                return {TextFault::Kind::nul, i, 0};
            }
            if (c == '+' || c == '#') {
                return {TextFault::Kind::wildcard, i, c};
            }
            return {TextFault::Kind::control, i, c};
        }
        std::size_t len = 0;
        char32_t cp = 0;
        unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
            if (c == 0xE0) {
                lo = 0xA0;  // overlong
            }
            // 0xED 0xA0..0xBF would be a surrogate: decoded, so the error can name it.
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
            if (c == 0xF0) {
                lo = 0x90;  // overlong
            }
            if (c == 0xF4) {
                hi = 0x8F;  // above U+10FFFF
            }
        } else {
            return {TextFault::Kind::invalid_utf8, i, c};  // stray continuation, C0/C1, F5..FF
        }
        if (n - i < len) {
            return {TextFault::Kind::invalid_utf8, i, c};
        }
        const unsigned c1 = p[i + 1];
        if (c1 < lo || c1 > hi) {
            return {TextFault::Kind::invalid_utf8, i, c};
        }
        cp = (cp << 6) | (c1 & 0x3F);
        for (std::size_t k = 2; k < len; ++k) {
            const unsigned ck = p[i + k];
            if (ck < 0x80 || ck > 0xBF) {
                return {TextFault::Kind::invalid_utf8, i, c};
            }
            cp = (cp << 6) | (ck & 0x3F);
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            return {TextFault::Kind::surrogate, i, cp};
        }
        if (mqtt) {
            if (cp <= 0x9F) {
                return {TextFault::Kind::control, i, cp};  // U+0080..U+009F (C1 controls)
            }
            if ((cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE) {
                return {TextFault::Kind::noncharacter, i, cp};
            }
        }
        i += len;
    }
    return {};
}

std::string describe(const TextFault& f) {
    const std::string at = " at byte offset " + std::to_string(f.offset);
    switch (f.kind) {
        case TextFault::Kind::invalid_utf8:
            return "is not valid UTF-8 (byte 0x" + hex(static_cast<unsigned>(f.code_point), 2) +
                   " at offset " + std::to_string(f.offset) + " starts no valid sequence)";
        case TextFault::Kind::surrogate:
            return "is not valid UTF-8: it encodes the surrogate " + code_point_name(f.code_point) +
                   at;
        case TextFault::Kind::nul:
            return "contains a NUL character (U+0000" + at + ")";
        case TextFault::Kind::control:
            return "contains the control character " + code_point_name(f.code_point) + at +
                   ", which MQTT does not allow";
        case TextFault::Kind::noncharacter:
            return "contains the noncharacter " + code_point_name(f.code_point) + at +
                   ", which MQTT does not allow";
        case TextFault::Kind::wildcard:
            return std::string("contains the wildcard '") + static_cast<char>(f.code_point) + "'" +
                   at + ", which a published topic must not have";
        case TextFault::Kind::none:
            break;
    }
    return "is fine";
}

}  // namespace detail

void OutboxOptions::validate() const {
    if (max_payload_bytes > kMaxMqttPayload) {
        throw InvalidConfig("OutboxOptions::max_payload_bytes is " +
                                std::to_string(max_payload_bytes) +
                                "; MQTT carries at most 268435455 bytes",
                            "max_payload_bytes");
    }
    if (busy_timeout.count() < 0) {
        throw InvalidConfig("OutboxOptions::busy_timeout must not be negative", "busy_timeout");
    }
    if (quota_refresh.count() < 0) {
        throw InvalidConfig("OutboxOptions::quota_refresh must not be negative", "quota_refresh");
    }
    if (when_full != WhenFull::refuse && when_full != WhenFull::drop_oldest) {
        throw InvalidConfig("OutboxOptions::when_full must be WhenFull::refuse or drop_oldest",
                            "when_full");
    }
    if (when_full == WhenFull::drop_oldest && max_pending == 0 && max_pending_bytes == 0) {
        throw InvalidConfig(
            "OutboxOptions::when_full is drop_oldest but there is no quota (max_pending and "
            "max_pending_bytes are 0)",
            "when_full");
    }
}

void validate(const Message& m, const OutboxOptions& options) {
    if (m.topic.empty()) {
        throw InvalidMessage("the topic is empty");
    }
    check_mqtt_string(
        m.topic, [] { return "the topic"; }, detail::TextRules::mqtt_topic);
    if (m.key) {
        // Never sent (it orders records, in the table only): MQTT's code point rules do not
        // apply, well-formed UTF-8 without NUL does (the CLI prints it, SQLite stores it as TEXT).
        check_mqtt_string(
            *m.key, [] { return "the key"; }, detail::TextRules::utf8);
    }
    if (m.qos < 0 || m.qos > 2) {
        throw InvalidMessage("qos is " + std::to_string(m.qos) + "; it must be 0, 1 or 2");
    }
    if (m.payload.size() > options.max_payload_bytes) {
        throw InvalidMessage("the payload is " + std::to_string(m.payload.size()) +
                             " bytes; the limit is " + std::to_string(options.max_payload_bytes));
    }
    if (m.ttl && (m.ttl->count() <= 0 || *m.ttl > kMaxTtl)) {
        // add() computes expires_at = now + ttl in int64 milliseconds: milliseconds::max() would
        // overflow (and expire the record at once); the cap keeps it far from that.
        throw InvalidMessage("the ttl is " + std::to_string(m.ttl->count()) +
                             " ms; it must be more than 0 and at most 100 years (" +
                             std::to_string(kMaxTtl.count()) + " ms): leave ttl unset for never");
    }
    for (std::size_t i = 0; i < m.headers.size(); ++i) {
        const Header& h = m.headers[i];
        if (h.name.empty()) {
            throw InvalidMessage("header " + std::to_string(i + 1) + " has an empty name");
        }
        check_mqtt_string(h.name, [&] { return "header " + std::to_string(i + 1) + " name"; });
        check_mqtt_string(h.value, [&] {
            return "header " + std::to_string(i + 1) + " ('" + h.name + "') value";
        });
    }
    if (m.content_type) {
        check_mqtt_string(*m.content_type, [] { return "the content type"; });
    }
}

}  // namespace outpost
