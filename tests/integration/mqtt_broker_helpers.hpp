// Test support for the MqttBroker integration tests (mqtt_broker_test.cpp,
// mqtt_broker_connection_test.cpp, mqtt_broker_tls_test.cpp): records to publish, options for a
// fresh client, polling, parameter names. Called from the test's own thread.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <utility>

#include "outpost/message.hpp"
#include "outpost/mqtt_broker.hpp"
#include "subscriber.hpp"

namespace outpost::testing {

// The messages `sub` received, the last one of each topic.
inline std::map<std::string, Received> last_by_topic(const Subscriber& sub) {
    std::map<std::string, Received> out;
    for (const auto& m : sub.messages()) {
        out[m.topic] = m;
    }
    return out;
}

inline Record make_record(std::int64_t id, std::string topic, std::string payload, int qos = 1) {
    Record r;
    r.id = id;
    r.uid = "uid-" + std::to_string(id);
    r.message = Message::text(std::move(topic), payload);
    r.message.qos = qos;
    return r;
}

// Options for `uri` with a client id of its own (unique in the process and among processes).
inline MqttOptions options_for(const std::string& uri, MqttVersion version = MqttVersion::v5) {
    static std::atomic<int> n{0};
    MqttOptions o;
    o.servers = {uri};
    o.client_id = "outpost-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
    o.version = version;
    return o;
}

// Polls `pred` until it holds or `timeout` passes (for state that has no notification).
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

// Test names per protocol version: mqtt311, mqtt5.
inline std::string version_name(const ::testing::TestParamInfo<MqttVersion>& info) {
    return info.param == MqttVersion::v5 ? "mqtt5" : "mqtt311";
}

}  // namespace outpost::testing
