#include "reason_codes.hpp"

#include <cstdio>
#include <string_view>

#include "../core/mqtt_text.hpp"
#include "message_mapping.hpp"
#include "outpost/mqtt_broker.hpp"

namespace outpost {

const char* mqtt_reason_name(int reason_code) noexcept {
    switch (reason_code) {
        case 0x00:
            return "success";
        case 0x01:
            return "granted qos 1";
        case 0x02:
            return "granted qos 2";
        case 0x04:
            return "disconnect with will message";
        case 0x10:
            return "no matching subscribers";
        case 0x11:
            return "no subscription existed";
        case 0x18:
            return "continue authentication";
        case 0x19:
            return "re-authenticate";
        case 0x80:
            return "unspecified error";
        case 0x81:
            return "malformed packet";
        case 0x82:
            return "protocol error";
        case 0x83:
            return "implementation specific error";
        case 0x84:
            return "unsupported protocol version";
        case 0x85:
            return "client identifier not valid";
        case 0x86:
            return "bad user name or password";
        case 0x87:
            return "not authorized";
        case 0x88:
            return "server unavailable";
        case 0x89:
            return "server busy";
        case 0x8A:
            return "banned";
        case 0x8B:
            return "server shutting down";
        case 0x8C:
            return "bad authentication method";
        case 0x8D:
            return "keep alive timeout";
        case 0x8E:
            return "session taken over";
        case 0x8F:
            return "topic filter invalid";
        case 0x90:
            return "topic name invalid";
        case 0x91:
            return "packet identifier in use";
        case 0x92:
            return "packet identifier not found";
        case 0x93:
            return "receive maximum exceeded";
        case 0x94:
            return "topic alias invalid";
        case 0x95:
            return "packet too large";
        case 0x96:
            return "message rate too high";
        case 0x97:
            return "quota exceeded";
        case 0x98:
            return "administrative action";
        case 0x99:
            return "payload format invalid";
        case 0x9A:
            return "retain not supported";
        case 0x9B:
            return "qos not supported";
        case 0x9C:
            return "use another server";
        case 0x9D:
            return "server moved";
        case 0x9E:
            return "shared subscriptions not supported";
        case 0x9F:
            return "connection rate exceeded";
        case 0xA0:
            return "maximum connect time";
        case 0xA1:
            return "subscription identifiers not supported";
        case 0xA2:
            return "wildcard subscriptions not supported";
        default:
            return "unknown";
    }
}

namespace mqtt_detail {

namespace {

// paho-c return codes (MQTTAsync.h), repeated here so this file needs no paho header.
constexpr int kFailure = -1;
constexpr int kPersistenceError = -2;
constexpr int kDisconnected = -3;
constexpr int kMaxMessagesInflight = -4;
constexpr int kBadUtf8String = -5;
constexpr int kNullParameter = -6;
constexpr int kTopicNameTruncated = -7;
constexpr int kBadStructure = -8;
constexpr int kBadQos = -9;
constexpr int kNoMoreMsgIds = -10;
constexpr int kOperationIncomplete = -11;
constexpr int kMaxBufferedMessages = -12;
constexpr int kSslNotSupported = -13;
constexpr int kBadProtocol = -14;
constexpr int kBadMqttOption = -15;
constexpr int kWrongMqttVersion = -16;
constexpr int kZeroLengthWillTopic = -17;
constexpr int kCommandIgnored = -18;
constexpr int kMaxBuffered = -19;

bool contains(const std::string& haystack, const char* needle) {
    return haystack.find(needle) != std::string::npos;
}

}  // namespace

std::string hex_code(int code) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%02X", static_cast<unsigned>(code) & 0xFFFFu);
    return buf;
}

ConnectFailure classify_connack(int code, bool mqtt5) {
    if (!mqtt5) {
        // MQTT 3.1.1 section 3.2.2.3. Only "server unavailable" can pass by itself.
        switch (code) {
            case 1:
                return {false, "CONNACK 1 unacceptable protocol version"};
            case 2:
                return {false, "CONNACK 2 identifier rejected"};
            case 3:
                return {true, "CONNACK 3 server unavailable"};
            case 4:
                return {false, "CONNACK 4 bad user name or password"};
            case 5:
                return {false, "CONNACK 5 not authorized (check user name, password, ACL)"};
            default:
                return {true, "CONNACK " + std::to_string(code) + " (unknown return code)"};
        }
    }
    if (code == 0x01 || code == 0x84) {
        // 0x01 is no MQTT 5 CONNACK reason: it is a 3.1.1 server's return code 1, its answer to
        // a protocol level it does not know. 0x84 says the same in MQTT 5 terms.
        return {false,
                std::string(code == 0x01 ? "CONNACK return code 1 (unacceptable protocol version, "
                                           "an MQTT 3.1.1 answer)"
                                         : "CONNACK reason 0x84 unsupported protocol version") +
                    ": the server does not speak MQTT 5; connect with MQTT 3.1.1, or "
                    "leave the version open (v5_or_3_1_1) to fall back to it"};
    }
    std::string reason = "CONNACK reason " + hex_code(code) + " " + mqtt_reason_name(code);
    switch (code) {
        // The server's state, load or location: another attempt (later, or at the next server
        // of the list) may pass.
        case 0x80:  // unspecified error
        case 0x83:  // implementation specific error
        case 0x88:  // server unavailable
        case 0x89:  // server busy
        case 0x8B:  // server shutting down
        case 0x97:  // quota exceeded
        case 0x9C:  // use another server
        case 0x9D:  // server moved
        case 0x9F:  // connection rate exceeded
            return {true, reason};
        case 0x86:
        case 0x87:
            return {false, reason + " (check user name, password, ACL)"};
        default:
            // Credentials, client id, protocol version, ban, will topic or size: this client's
            // configuration, which the same attempt will not change.
            return {false, reason};
    }
}

ConnectFailure classify_connect_error(int paho_rc, const std::string& paho_message,
                                      const std::string& tls_error) {
    std::string reason = paho_message.empty()
                             ? "paho error " + std::to_string(paho_rc)
                             : paho_message + " (paho " + std::to_string(paho_rc) + ")";
    if (!tls_error.empty()) {
        // OpenSSL's text says what TLS disliked. A certificate that does not verify (unknown CA,
        // wrong host name, expired) or a TLS handshake against a plain listener is
        // configuration; a handshake cut short by a dying server is not.
        const bool config =
            contains(tls_error, "certificate") || contains(tls_error, "wrong version number") ||
            contains(tls_error, "unknown ca") || contains(tls_error, "key values mismatch") ||
            contains(tls_error, "no such file") || contains(tls_error, "PEM routines");
        if (config) {
            return {false, "TLS failed: " + tls_error};
        }
        return {true, reason + ", TLS: " + tls_error};
    }
    switch (paho_rc) {
        case kSslNotSupported:
        case kBadProtocol:
        case kBadMqttOption:
        case kWrongMqttVersion:
        case kZeroLengthWillTopic:
        case kBadStructure:
        case kNullParameter:
        case kBadUtf8String:
            return {false, reason};
        default:
            return {true, reason};
    }
}

PublishResult rejection(int reason_code, const char* packet) {
    std::string why = std::string(packet) + " reason " + hex_code(reason_code) + " " +
                      mqtt_reason_name(reason_code);
    bool permanent = false;
    switch (reason_code) {
        case 0x87:  // not authorized: the ACL will not change by itself
        case 0x90:  // topic name invalid
        case 0x95:  // packet too large
        case 0x99:  // payload format invalid
            permanent = true;
            break;
        default:  // quota exceeded, server busy, unspecified, implementation specific, ...
            permanent = false;
            break;
    }
    return PublishResult::rejected_with(reason_code, std::move(why), permanent);
}

PublishResult publish_failure(int paho_rc, const std::string& paho_message,
                              const std::string& server) {
    std::string detail = paho_message.empty()
                             ? "paho error " + std::to_string(paho_rc)
                             : paho_message + " (paho " + std::to_string(paho_rc) + ")";
    switch (paho_rc) {
        // The connection, not the message: paho fails everything in flight with these when the
        // socket goes away, and refuses new work while it is down or saturated. Never an attempt.
        case kFailure:
        case kPersistenceError:
        case kDisconnected:
        case kMaxMessagesInflight:
        case kNoMoreMsgIds:
        case kOperationIncomplete:
        case kMaxBufferedMessages:
        case kCommandIgnored:
        case kMaxBuffered:
            return PublishResult::lost("publish to " + server + " not completed: " + detail);
        // The message itself: sending it again cannot help.
        case kBadUtf8String:
        case kTopicNameTruncated:
        case kBadQos:
        case kNullParameter:
            return PublishResult::rejected_with(0, "refused by the MQTT client: " + detail, true);
        default:
            return PublishResult::rejected_with(0, "refused by the MQTT client: " + detail, false);
    }
}

namespace {

// Empty when `s` is a string MQTT carries under `rules`, else the end of a sentence saying why.
std::string string_fault(std::string_view s, detail::TextRules rules) {
    if (s.size() > 65535) {
        return "is " + std::to_string(s.size()) + " bytes long; MQTT allows at most 65535";
    }
    if (const auto fault = detail::find_text_fault(s, rules)) {
        return detail::describe(fault);
    }
    return {};
}

PublishResult refused(int code, const std::string& why) {
    return PublishResult::rejected_with(code,
                                        std::string(mqtt_reason_name(code)) + ": " + why +
                                            "; not sent (the server would close the connection)",
                                        true);
}

}  // namespace

std::optional<PublishResult> local_refusal(const Record& record, const ServerLimits& limits,
                                           bool mqtt5, const std::string& id_property) {
    const Message& m = record.message;
    if (m.qos > limits.maximum_qos) {
        return refused(0x9B, "QoS " + std::to_string(m.qos) + ", the server allows at most QoS " +
                                 std::to_string(limits.maximum_qos) + " (CONNACK Maximum QoS)");
    }
    if (m.retain && !limits.retain_available) {
        return refused(0x9A,
                       "a retained message, the server has none (CONNACK Retain Available 0)");
    }
    if (m.topic.empty()) {
        return refused(0x90, "the topic is empty");
    }
    if (auto why = string_fault(m.topic, detail::TextRules::mqtt_topic); !why.empty()) {
        return refused(0x90, "the topic " + why);
    }
    if (mqtt5) {
        for (std::size_t i = 0; i < m.headers.size(); ++i) {
            const Header& h = m.headers[i];
            const auto where = [&] { return "header " + std::to_string(i + 1); };
            if (auto why = string_fault(h.name, detail::TextRules::mqtt); !why.empty()) {
                return refused(0x81, where() + " name (a user property) " + why);
            }
            if (auto why = string_fault(h.value, detail::TextRules::mqtt); !why.empty()) {
                return refused(0x81,
                               where() + " ('" + h.name + "') value (a user property) " + why);
            }
        }
        if (!id_property.empty()) {
            if (auto why = string_fault(record.uid, detail::TextRules::mqtt); !why.empty()) {
                return refused(0x81, "the uid (user property " + id_property + ") " + why);
            }
        }
        if (m.content_type) {
            if (auto why = string_fault(*m.content_type, detail::TextRules::mqtt); !why.empty()) {
                return refused(0x81, "the content type " + why);
            }
        }
    }
    if (limits.maximum_packet_size != 0) {
        if (publish_packet_size(record, mqtt5, id_property) > limits.maximum_packet_size) {
            return PublishResult::rejected_with(0x95,
                                                "packet too large: the server accepts at most " +
                                                    std::to_string(limits.maximum_packet_size) +
                                                    " bytes",
                                                true);
        }
    }
    return std::nullopt;
}

}  // namespace mqtt_detail
}  // namespace outpost
