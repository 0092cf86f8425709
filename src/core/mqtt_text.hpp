// Private: what MQTT lets a client put in a UTF-8 string (topic, user property, content type).
// Shared by validate() (what add() refuses) and MqttBroker (its backstop at publish for records
// that never went through add(), e.g. written by an older version). Implemented in validate.cpp.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace outpost::detail {

enum class TextRules {
    utf8,  // well-formed UTF-8 without U+0000: for strings outpost stores but never sends (key)
    mqtt,  // also none of MQTT's disallowed code points: for every string that goes on the wire
    mqtt_topic,  // also no wildcard ('+', '#'): for a topic name in a PUBLISH
};

// The first thing in a string that the rules forbid. The MQTT 5 spec (section 1.5.4; 3.1.1
// section 1.5.3) says a string MUST be well-formed UTF-8 (no surrogates, nothing above
// U+10FFFF) without U+0000, and SHOULD NOT hold the control characters U+0001..U+001F and
// U+007F..U+009F or the Unicode noncharacters (U+FDD0..U+FDEF and every U+xFFFE, U+xFFFF);
// a receiver may treat those as a malformed packet, and mosquitto 2.0 does: it drops the
// connection, so the SHOULD NOT is a MUST NOT for us.
struct TextFault {
    enum class Kind {
        none,
        invalid_utf8,  // a byte that starts no well-formed sequence (stray, overlong, truncated,
                       // above U+10FFFF)
        surrogate,     // U+D800..U+DFFF, encoded as if it were a code point
        nul,           // U+0000
        control,       // U+0001..U+001F, U+007F..U+009F
        noncharacter,  // U+FDD0..U+FDEF, U+xFFFE, U+xFFFF
        wildcard,      // '+' or '#' (rules mqtt_topic only)
    };
    Kind kind = Kind::none;
    std::size_t offset = 0;   // byte offset of the offending sequence
    char32_t code_point = 0;  // the code point; for invalid_utf8, the byte at `offset`

    explicit operator bool() const noexcept { return kind != Kind::none; }
};

// One pass over `s`; {} when nothing is wrong. Plain ASCII costs a compare or two a byte.
TextFault find_text_fault(std::string_view s, TextRules rules) noexcept;

// The fault as the end of a sentence whose subject is the string, e.g. "contains the control
// character U+0009 at byte offset 3, which MQTT does not allow" or "is not valid UTF-8 (byte
// 0xFF at offset 2 starts no valid sequence)". `fault` must not be none.
std::string describe(const TextFault& fault);

}  // namespace outpost::detail
