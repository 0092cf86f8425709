// Private: what OpenSSL says about a TLS server that paho failed to connect to, and whether a
// server accepts TCP at all (paho words both failures alike).
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

// Whether the host and port of `uri` (any scheme; tcp/mqtt default 1883, ssl/mqtts 8883, ws 80,
// wss 443) accept a TCP connection within `timeout`. Closes it at once.
bool accepts_tcp(const std::string& uri, std::chrono::milliseconds timeout);

}  // namespace outpost::mqtt_detail
