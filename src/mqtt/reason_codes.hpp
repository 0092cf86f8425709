// Private: MQTT reason codes and paho error codes, mapped to outpost's vocabulary. No paho
// include here, so the mapping can be tested without a broker.
#pragma once

#include <cstddef>
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
// codes >= 0x80.
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

// The size in bytes of the PUBLISH packet MqttBroker sends for `record` (MQTT 5 adds the
// properties), to compare with the server's maximum packet size.
std::size_t publish_packet_size(const Record& record, bool mqtt5, const std::string& id_property);

}  // namespace outpost::mqtt_detail
