// Private: what OpenSSL says about a TLS server that paho failed to connect to, and whether a
// server closes an MQTT 5 CONNECT without an answer (paho words that like other failures).
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "outpost/mqtt_broker.hpp"

namespace outpost::mqtt_detail {

// Repeats a TLS handshake with `uri` (ssl://, mqtts://, wss://) using `tls`'s trust settings and
// returns OpenSSL's complaint ("...certificate verify failed..."), or "" when the server cannot
// be reached over TCP (not a TLS problem) or the handshake succeeds. Blocks at most about
// 2 x `timeout`.
std::string probe_tls_failure(const std::string& uri, const MqttTls& tls,
                              std::chrono::milliseconds timeout);

// Whether the server of a tcp:// or mqtt:// `uri` (default port 1883) closes the connection on
// an MQTT 5 CONNECT (empty client id, clean start) without sending a byte, within `timeout`: the
// answer of a server that does not speak MQTT 5 and does not say so (RabbitMQ 3). false for a
// CONNACK of any kind, no answer in time, an unreachable server or another scheme.
bool closes_mqtt5_connect(const std::string& uri, std::chrono::milliseconds timeout);

}  // namespace outpost::mqtt_detail
