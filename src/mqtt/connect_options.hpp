// Private: MqttOptions mapped to what paho-mqtt-cpp takes for a client and a connect attempt
// (create options, connect options with TLS), what a CONNACK announces mapped back to
// ServerLimits, and the checks and wording around a connect: TLS files, the server list named in
// errors, the URI of the server reached, OpenSSL's words for a failed TLS handshake.
//
// Pure functions of their arguments, no lock and no state of their own, so safe on any thread
// (tls_failure() and check_tls_files() touch the network and the file system). MqttBroker calls
// them from connect(), on the caller's thread (the dispatcher's); server_list() also names the
// servers in a failed publish, on whichever thread sends it (the caller's or paho's receive
// thread). MqttOptions validation stays in mqtt_options.cpp: these assume validated options.
// paho types are only forward-declared here; callers include <mqtt/async_client.h> themselves.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "outpost/mqtt_broker.hpp"
#include "reason_codes.hpp"

namespace mqtt {
class connect_options;
class create_options;
class properties;
}  // namespace mqtt

namespace outpost::mqtt_detail {

// An ssl://, mqtts:// or wss:// URI.
bool is_tls_uri(const std::string& uri);

// At least one of options.servers is a TLS URI.
bool any_tls(const MqttOptions& options);

// How errors name the servers: the URI itself for one, "any of URI, URI" for several.
std::string server_list(const std::vector<std::string>& servers);

// Create options for a paho client speaking `version` (v5 or v3_1_1: MqttOptions::version may
// leave the choice open, see MqttVersion), no offline buffer, no cap on buffered publishes below
// the dispatcher's window.
mqtt::create_options create_options_for(MqttVersion version);

// Connect options for one connect() that may take `timeout` over all of options.servers
// (each gets min(connect_timeout, timeout / servers), in whole seconds, at least 1): version,
// clean start or session, keepalive, no automatic reconnect, credentials, will, and TLS
// (trust store, client certificate, verification) when a server is a TLS URI. `version` as for
// create_options_for().
mqtt::connect_options connect_options_for(const MqttOptions& options, MqttVersion version,
                                          std::chrono::milliseconds timeout);

// The version the first connect attempt uses: options.version, or v5 when it is left open.
MqttVersion first_version(const MqttOptions& options);

// Whether a failed CONNECT in MQTT 5 (`connack_code`: the server's CONNACK code) says that the
// server does not speak MQTT 5: the MQTT 3.1.1 return code 1 "unacceptable protocol version",
// which a 3.1.1 server sends (aedes, RabbitMQ), or the MQTT 5 reason 0x84 "unsupported
// protocol version".
bool refuses_mqtt5(int connack_code);

// Throws BrokerError (not transient), naming the field and the servers, when a TLS file of
// options.tls cannot be read and some server is a TLS URI.
void check_tls_files(const MqttOptions& options);

// The URI in options.servers of the server paho reports as reached ("host:port", or empty for
// the first), or `reached` itself when none matches.
std::string configured_uri(const MqttOptions& options, const std::string& reached);

// What an MQTT 5 CONNACK's properties announce; the defaults on MQTT 3.1.1 (`mqtt5` false).
ServerLimits limits_from(const mqtt::properties& props, bool mqtt5);

// OpenSSL's words for a failed TLS connect (paho says only "TCP/TLS connect failure", rc -1):
// the first TLS server of options.servers that accepts TCP but not the handshake, probed
// before `deadline`. "" when none, or when `paho_rc` is not -1 or no server is a TLS URI.
std::string tls_failure(const MqttOptions& options, int paho_rc,
                        std::chrono::steady_clock::time_point deadline);

}  // namespace outpost::mqtt_detail
