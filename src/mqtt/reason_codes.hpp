// Private: MQTT reason codes and paho error codes, mapped to outpost's vocabulary. No paho
// include here, so the mapping can be tested without a broker.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "outpost/broker.hpp"

namespace outpost::mqtt_detail {

// "0x87" style, two hex digits at least.
std::string hex_code(int code);

// How a failed connect attempt should be reported.
struct ConnectFailure {
    bool transient = true;
    std::string reason;  // e.g. "CONNACK 0x87 not authorized"
};

// A refused CONNACK. `mqtt5` selects the table: MQTT 3.1.1 return codes 1-5 or MQTT 5 reason
// codes >= 0x80. On MQTT 5, code 1 is a 3.1.1 server's "unacceptable protocol version" (the
// answer of aedes and RabbitMQ to an MQTT 5 CONNECT), not reason 0x01 "granted QoS 1".
ConnectFailure classify_connack(int code, bool mqtt5);

// A negative paho-c error code from a connect attempt. `tls_error` is what OpenSSL reported
// during the attempt (empty when nothing).
ConnectFailure classify_connect_error(int paho_rc, const std::string& paho_message,
                                      const std::string& tls_error);

// An MQTT 5 PUBACK/PUBREC/PUBCOMP reason code >= 0x80. `packet` names the acknowledgement.
PublishResult rejection(int reason_code, const char* packet);

// A negative paho-c error code from a publish (thrown at once or reported later).
PublishResult publish_failure(int paho_rc, const std::string& paho_message,
                              const std::string& server);

// What a server's CONNACK announced. MQTT 3.1.1 announces none of it: the defaults stand.
struct ServerLimits {
    std::size_t receive_maximum = 65535;  // MQTT 5 Receive Maximum (absent: 65,535)
    std::size_t maximum_packet_size = 0;  // MQTT 5 Maximum Packet Size; 0 = none announced
    int maximum_qos = 2;                  // MQTT 5 Maximum QoS (absent: 2)
    bool retain_available = true;         // MQTT 5 Retain Available (absent: 1)
};

// Why `record` must not be sent to a server with `limits`, or nullopt when it may go. Each of
// these is a PUBLISH the server answers by closing the connection (MQTT 5 sections 3.3.1.2,
// 3.3.1.3, 3.3.2.1, 1.5.4; mosquitto 2.0 does so), which the dispatcher would see as a lost
// connection, never an attempt, and send again after every reconnect. The result is a permanent
// rejection with the reason code the server would have given:
// - QoS above Maximum QoS: 0x9B qos not supported;
// - retain while Retain Available is 0: 0x9A retain not supported;
// - a topic that is empty, longer than 65,535 bytes, has a wildcard, is not well-formed UTF-8
//   or holds a code point MQTT forbids (detail::TextRules::mqtt_topic): 0x90 topic name invalid;
// - MQTT 5 only (3.1.1 sends no properties): a user property (a header, or the id property
//   `id_property` = record.uid) or the content type breaking the same string rules:
//   0x81 malformed packet, what the server's DISCONNECT would say;
// - a packet larger than the Maximum Packet Size (publish_packet_size(), message_mapping.hpp):
//   0x95 packet too large.
std::optional<PublishResult> local_refusal(const Record& record, const ServerLimits& limits,
                                           bool mqtt5, const std::string& id_property);

}  // namespace outpost::mqtt_detail
