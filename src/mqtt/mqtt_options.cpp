// MqttOptions::validate(): every rule names the field it checks, so a config error reads as one.
#include <string>
#include <string_view>

#include "../core/mqtt_text.hpp"
#include "outpost/error.hpp"
#include "outpost/mqtt_broker.hpp"

namespace outpost {

namespace {

constexpr std::size_t kMaxMqttString = 65535;

[[noreturn]] void invalid(const std::string& field, const std::string& why) {
    throw InvalidConfig("MqttOptions." + field + ": " + why, field);
}

// A string sent in CONNECT (client id, user name, will topic) or in every PUBLISH (the id
// property's name): what MQTT forbids there makes every connect, or every publish, fail, so it is
// a configuration error.
void check_mqtt_string(const std::string& field, const std::string& value) {
    if (value.size() > kMaxMqttString) {
        invalid(field, "longer than 65,535 bytes");
    }
    if (const auto fault = detail::find_text_fault(value, detail::TextRules::mqtt)) {
        invalid(field, detail::describe(fault));
    }
}

void check_server(const std::string& field, const std::string& uri) {
    static constexpr std::string_view kSchemes[] = {"tcp://",   "mqtt://", "ssl://",
                                                    "mqtts://", "ws://",   "wss://"};
    for (auto scheme : kSchemes) {
        if (uri.starts_with(scheme)) {
            std::string_view rest = std::string_view(uri).substr(scheme.size());
            if (rest.empty() || rest.front() == ':' || rest.front() == '/') {
                invalid(field, "\"" + uri + "\" has no host");
            }
            if (rest.find_first_of(" \t\r\n") != std::string_view::npos) {
                invalid(field, "\"" + uri + "\" contains white space");
            }
            return;
        }
    }
    invalid(field,
            "\"" + uri + "\" must start with tcp://, mqtt://, ssl://, mqtts://, ws:// or wss://");
}

}  // namespace

void MqttOptions::validate() const {
    if (servers.empty()) {
        invalid("servers", "at least one server URI is required");
    }
    for (std::size_t i = 0; i < servers.size(); ++i) {
        check_server("servers[" + std::to_string(i) + "]", servers[i]);
    }
    if (client_id.empty()) {
        invalid("client_id", "required (unique per device)");
    }
    check_mqtt_string("client_id", client_id);
    if (version != MqttVersion::v3_1_1 && version != MqttVersion::v5 &&
        version != MqttVersion::v5_or_3_1_1) {
        invalid("version", "must be MqttVersion::v3_1_1, v5 or v5_or_3_1_1");
    }
    if (keepalive.count() < 0 || keepalive.count() > 65535) {
        invalid("keepalive", "must be 0 (off) or 1 s .. 65,535 s");
    }
    if (username) {
        check_mqtt_string("username", *username);
    }
    if (password) {
        if (password->size() > kMaxMqttString) {
            invalid("password", "longer than 65,535 bytes");
        }
        if (!username && version == MqttVersion::v3_1_1) {
            invalid("password", "MQTT 3.1.1 forbids a password without a user name");
        }
    }
    if (!tls.key_file.empty() && tls.cert_file.empty()) {
        invalid("tls.key_file", "set without tls.cert_file");
    }
    if (!tls.key_password.empty() && tls.key_file.empty() && tls.cert_file.empty()) {
        invalid("tls.key_password", "set without a key (tls.key_file or tls.cert_file)");
    }
    if (connect_timeout < std::chrono::seconds(1)) {
        invalid("connect_timeout", "must be at least 1 s");
    }
    if (connect_timeout > std::chrono::hours(1)) {
        invalid("connect_timeout", "must be at most 1 hour");
    }
    check_mqtt_string("id_property", id_property);
    if (will) {
        if (will->topic.empty()) {
            invalid("will.topic", "required when a will is set");
        }
        check_mqtt_string("will.topic", will->topic);
        if (will->topic.find_first_of("+#") != std::string::npos) {
            invalid("will.topic", "must not contain the wildcards '+' or '#'");
        }
        if (will->qos < 0 || will->qos > 2) {
            invalid("will.qos", "must be 0, 1 or 2");
        }
    }
}

}  // namespace outpost
