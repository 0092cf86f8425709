// Message and options validation: what add() refuses before anything touches the database.
#include <string>
#include <string_view>

#include "outpost/error.hpp"
#include "outpost/outbox.hpp"

namespace outpost {

namespace {

constexpr std::size_t kMaxMqttString = 65535;       // MQTT's two-byte length prefix
constexpr std::size_t kMaxMqttPayload = 268435455;  // MQTT's remaining-length limit

// Returns the byte offset of the first invalid UTF-8 sequence, or npos. Rejects overlong forms,
// surrogates and code points above U+10FFFF, as MQTT requires.
std::size_t invalid_utf8_at(std::string_view s) noexcept {
    std::size_t i = 0;
    const std::size_t n = s.size();
    while (i < n) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t len = 0;
        unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0)
                lo = 0xA0;  // overlong
            if (c == 0xED)
                hi = 0x9F;  // surrogates
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0)
                lo = 0x90;  // overlong
            if (c == 0xF4)
                hi = 0x8F;  // above U+10FFFF
        } else {
            return i;
        }
        if (i + len > n) {
            return i;
        }
        const auto c1 = static_cast<unsigned char>(s[i + 1]);
        if (c1 < lo || c1 > hi) {
            return i;
        }
        for (std::size_t k = 2; k < len; ++k) {
            const auto ck = static_cast<unsigned char>(s[i + k]);
            if (ck < 0x80 || ck > 0xBF) {
                return i;
            }
        }
        i += len;
    }
    return std::string_view::npos;
}

// A string MQTT will carry: valid UTF-8, no NUL, at most 65,535 bytes.
void check_mqtt_string(std::string_view s, const std::string& what) {
    if (s.size() > kMaxMqttString) {
        throw InvalidMessage(what + " is " + std::to_string(s.size()) +
                             " bytes long; MQTT allows at most 65535");
    }
    if (const auto at = invalid_utf8_at(s); at != std::string_view::npos) {
        throw InvalidMessage(what + " is not valid UTF-8 (bad byte at offset " +
                             std::to_string(at) + ")");
    }
    if (const auto at = s.find('\0'); at != std::string_view::npos) {
        throw InvalidMessage(what + " contains a NUL character (at offset " + std::to_string(at) +
                             ")");
    }
}

}  // namespace

void OutboxOptions::validate() const {
    if (max_payload_bytes > kMaxMqttPayload) {
        throw InvalidConfig("OutboxOptions::max_payload_bytes is " +
                            std::to_string(max_payload_bytes) +
                            "; MQTT carries at most 268435455 bytes");
    }
    if (busy_timeout.count() < 0) {
        throw InvalidConfig("OutboxOptions::busy_timeout must not be negative");
    }
    if (quota_refresh.count() < 0) {
        throw InvalidConfig("OutboxOptions::quota_refresh must not be negative");
    }
    if (when_full != WhenFull::refuse && when_full != WhenFull::drop_oldest) {
        throw InvalidConfig("OutboxOptions::when_full must be WhenFull::refuse or drop_oldest");
    }
    if (when_full == WhenFull::drop_oldest && max_pending == 0 && max_pending_bytes == 0) {
        throw InvalidConfig(
            "OutboxOptions::when_full is drop_oldest but there is no quota (max_pending and "
            "max_pending_bytes are 0)");
    }
}

void validate(const Message& m, const OutboxOptions& options) {
    if (m.topic.empty()) {
        throw InvalidMessage("the topic is empty");
    }
    check_mqtt_string(m.topic, "the topic");
    if (const auto at = m.topic.find_first_of("+#"); at != std::string::npos) {
        throw InvalidMessage("the topic '" + m.topic + "' contains the wildcard '" + m.topic[at] +
                             "', which a published topic must not have");
    }
    if (m.key) {
        check_mqtt_string(*m.key, "the key");
    }
    if (m.qos < 0 || m.qos > 2) {
        throw InvalidMessage("qos is " + std::to_string(m.qos) + "; it must be 0, 1 or 2");
    }
    if (m.payload.size() > options.max_payload_bytes) {
        throw InvalidMessage("the payload is " + std::to_string(m.payload.size()) +
                             " bytes; the limit is " + std::to_string(options.max_payload_bytes));
    }
    if (m.ttl && m.ttl->count() < 0) {
        throw InvalidMessage("the ttl is negative (" + std::to_string(m.ttl->count()) + " ms)");
    }
    for (std::size_t i = 0; i < m.headers.size(); ++i) {
        const std::string where = "header " + std::to_string(i + 1);
        if (m.headers[i].name.empty()) {
            throw InvalidMessage(where + " has an empty name");
        }
        check_mqtt_string(m.headers[i].name, where + " name");
        check_mqtt_string(m.headers[i].value, where + " ('" + m.headers[i].name + "') value");
    }
    if (m.content_type) {
        check_mqtt_string(*m.content_type, "the content type");
    }
}

}  // namespace outpost
