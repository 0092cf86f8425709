#include "connect_options.hpp"

#include <mqtt/connect_options.h>
#include <mqtt/create_options.h>
#include <mqtt/properties.h>
#include <mqtt/ssl_options.h>
#include <mqtt/string_collection.h>
#include <mqtt/will_options.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <memory>
#include <utility>

#include "outpost/error.hpp"
#include "tls_probe.hpp"

namespace outpost::mqtt_detail {

namespace {

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

// paho-mqtt-cpp 1.2 caps its command queue at 100 publishes as soon as create options are given,
// even while connected (NOTES.md: publish throws -12). The dispatcher's window is the real bound
// (at most 65,535), so this only has to stay out of the way.
constexpr int kMaxBufferedMessages = 1 << 20;
// paho's own in-flight cap; the dispatcher's window is the throttle (NOTES.md).
constexpr int kMaxInflight = 65535;

// Empty when `path` can be opened for reading, else a sentence saying why not.
std::string unreadable(const std::string& what, const std::string& path) {
    std::ifstream in(path);
    if (in) {
        return {};
    }
    return what + " \"" + path + "\" cannot be read";
}

mqtt::ssl_options ssl_options_for(const MqttTls& t) {
    mqtt::ssl_options ssl;
    if (!t.ca_file.empty()) {
        ssl.set_trust_store(t.ca_file);
    }
    if (!t.ca_path.empty()) {
        ssl.ca_path(t.ca_path);
    }
    if (!t.cert_file.empty()) {
        ssl.set_key_store(t.cert_file);
    }
    if (!t.key_file.empty()) {
        ssl.set_private_key(t.key_file);
    }
    if (!t.key_password.empty()) {
        ssl.set_private_key_password(t.key_password);
    }
    // Both switches: the chain (enableServerCertAuth) and the host name (verify).
    ssl.set_enable_server_cert_auth(!t.insecure);
    ssl.set_verify(!t.insecure);
    // No ssl.set_error_handler(): paho-mqtt-cpp 1.2 hands OpenSSL a pointer to a dead copy
    // as its context. A failed TLS connect is diagnosed by probe_tls_failure() instead.
    return ssl;
}

}  // namespace

bool is_tls_uri(const std::string& uri) {
    return uri.starts_with("ssl://") || uri.starts_with("mqtts://") || uri.starts_with("wss://");
}

bool any_tls(const MqttOptions& options) {
    return std::any_of(options.servers.begin(), options.servers.end(), is_tls_uri);
}

std::string server_list(const std::vector<std::string>& servers) {
    if (servers.size() == 1) {
        return servers.front();
    }
    std::string out = "any of ";
    for (std::size_t i = 0; i < servers.size(); ++i) {
        out += (i ? ", " : "") + servers[i];
    }
    return out;
}

MqttVersion first_version(const MqttOptions& options) {
    return options.version == MqttVersion::v3_1_1 ? MqttVersion::v3_1_1 : MqttVersion::v5;
}

bool refuses_mqtt5(int connack_code) {
    return connack_code == 0x01 || connack_code == 0x84;
}

mqtt::create_options create_options_for(MqttVersion version) {
    mqtt::create_options create(static_cast<int>(version));
    create.set_max_buffered_messages(kMaxBufferedMessages);
    // No offline buffer: a publish while disconnected must fail at once (-3), because the
    // outbox table is the only store.
    create.set_send_while_disconnected(false);
    return create;
}

mqtt::connect_options connect_options_for(const MqttOptions& options, MqttVersion version,
                                          const std::string& server, milliseconds share) {
    mqtt::connect_options c;
    c.set_mqtt_version(static_cast<int>(version));
    // paho rejects the flag of the other version (-16), so each version gets its own.
    if (version == MqttVersion::v5) {
        c.set_clean_start(options.clean_start);
    } else {
        c.set_clean_session(options.clean_start);
    }
    c.set_keep_alive_interval(static_cast<int>(options.keepalive.count()));
    c.set_automatic_reconnect(false);
    c.set_max_inflight(kMaxInflight);

    // paho's timeout is in whole seconds, and paho-c 1.3.12 looks at it at most every 3 s
    // (MQTTAsync_checkTimeouts), so it fires 0-3 s late. Rounding down lets paho give up on its
    // own near our deadline in the common case; when it cannot, our deadline wins (and the
    // client, poisoned, is not tried on the next server of this connect()).
    c.set_connect_timeout(static_cast<int>(std::max<milliseconds::rep>(1, share.count() / 1000)));

    c.set_servers(std::make_shared<mqtt::string_collection>(std::vector<std::string>{server}));
    if (options.username) {
        c.set_user_name(*options.username);
    }
    if (options.password) {
        c.set_password(*options.password);
    }
    if (options.will) {
        mqtt::will_options will(options.will->topic, options.will->payload, options.will->qos,
                                options.will->retain);
        c.set_will(std::move(will));
    }
    if (any_tls(options)) {
        c.set_ssl(ssl_options_for(options.tls));
    }
    return c;
}

void check_tls_files(const MqttOptions& options) {
    if (!any_tls(options)) {
        return;
    }
    const MqttTls& t = options.tls;
    std::string problem;
    if (!t.ca_file.empty()) {
        problem = unreadable("tls.ca_file", t.ca_file);
    }
    if (problem.empty() && !t.cert_file.empty()) {
        problem = unreadable("tls.cert_file", t.cert_file);
    }
    if (problem.empty() && !t.key_file.empty()) {
        problem = unreadable("tls.key_file", t.key_file);
    }
    if (!problem.empty()) {
        throw BrokerError("cannot connect to " + server_list(options.servers) + ": " + problem,
                          false);
    }
}

// paho answers "host:port" for the server it reached; the caller knows it by its URI.
// What an MQTT 5 CONNACK announces. paho-c 1.3.12 stops sending once the server's receive
// maximum is reached and only looks again on its 1 s timer (measured: 20 messages a second
// against a default mosquitto, whose receive maximum is 20), so MqttBroker keeps the count
// itself and hands the next publish over as soon as an acknowledgement frees a slot. paho
// does not act on Maximum QoS, Retain Available or Maximum Packet Size either: publish()
// does (mqtt_detail::local_refusal).
ServerLimits limits_from(const mqtt::properties& props, bool mqtt5) {
    ServerLimits l;
    if (!mqtt5) {
        return l;
    }
    if (props.contains(mqtt::property::RECEIVE_MAXIMUM)) {
        const auto v = mqtt::get<std::uint16_t>(props, mqtt::property::RECEIVE_MAXIMUM);
        l.receive_maximum = std::max<std::size_t>(1, v);
    }
    if (props.contains(mqtt::property::MAXIMUM_PACKET_SIZE)) {
        l.maximum_packet_size =
            mqtt::get<std::uint32_t>(props, mqtt::property::MAXIMUM_PACKET_SIZE);
    }
    if (props.contains(mqtt::property::MAXIMUM_QOS)) {
        l.maximum_qos = mqtt::get<std::uint8_t>(props, mqtt::property::MAXIMUM_QOS);
    }
    if (props.contains(mqtt::property::RETAIN_AVAILABLE)) {
        l.retain_available = mqtt::get<std::uint8_t>(props, mqtt::property::RETAIN_AVAILABLE) != 0;
    }
    return l;
}

}  // namespace outpost::mqtt_detail
