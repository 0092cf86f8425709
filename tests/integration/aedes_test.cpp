// The aedes testkit broker (tools/testkit/aedes.hpp) does what the tests rely on: it starts on a
// free loopback port and accepts MQTT 3.1.1 at once, kill() and stop() end it (MqttBroker sees
// the connection go), start() brings it back on the same port, its deny list refuses a publish
// by closing the connection, and log() tells what happened. Checked with a real MqttBroker and
// a mosquitto_sub subscriber; built only when meson found node and aedes.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "completions.hpp"
#include "connection_log.hpp"
#include "outpost/error.hpp"
#include "outpost/mqtt_broker.hpp"
#include "subscriber.hpp"
#include "testkit/aedes.hpp"
#include "testkit/mosquitto.hpp"

namespace outpost {
namespace {

using namespace std::chrono_literals;

MqttOptions options(const std::string& uri) {
    MqttOptions o;
    o.servers = {uri};
    o.client_id = "outpost-aedes-test";
    o.version = MqttVersion::v3_1_1;
    o.connect_timeout = 5s;
    return o;
}

Record record(std::int64_t id, const std::string& topic) {
    Record r;
    r.id = id;
    r.uid = "aedes-" + std::to_string(id);
    r.message = Message::text(topic, "payload " + std::to_string(id));
    return r;
}

TEST(Aedes, StartsOnALoopbackPortAndComesBackOnTheSamePort) {
    ASSERT_TRUE(testing::Aedes::available());
    testing::Aedes aedes;
    EXPECT_TRUE(aedes.running());
    EXPECT_EQ(aedes.uri(), "tcp://127.0.0.1:" + std::to_string(aedes.port()));
    EXPECT_TRUE(aedes.log_contains("aedes " + testing::Aedes::version() +
                                   " ready on 127.0.0.1:" + std::to_string(aedes.port())))
        << aedes.log();

    testing::Completions done;
    testing::ConnectionLog changes;
    MqttBroker broker(options(aedes.uri()));
    broker.set_connection_handler(changes.handler());
    broker.connect(5s);
    const int port = aedes.port();

    // kill: no goodbye; the client notices the connection go.
    std::size_t before = changes.size();
    aedes.kill();
    EXPECT_FALSE(aedes.running());
    EXPECT_FALSE(testing::loopback_accepts(port));
    EXPECT_TRUE(changes.wait_for(false, 10s, before).has_value());

    // start again: same port, a new connect works and delivers.
    aedes.start();
    EXPECT_EQ(aedes.port(), port);
    testing::Subscriber sub(aedes.uri(), "aedes/#", 1, 4);
    broker.connect(5s);
    broker.publish(record(1, "aedes/a"), done.callback_for(1));
    ASSERT_TRUE(done.wait_for(1, 10s));
    EXPECT_EQ(done.get(1).status, PublishResult::Status::delivered);
    EXPECT_TRUE(sub.wait_for_count(1, 10s));

    // stop: SIGTERM, aedes closes its clients before it exits.
    before = changes.size();
    aedes.stop();
    EXPECT_FALSE(aedes.running());
    EXPECT_TRUE(changes.wait_for(false, 10s, before).has_value());
    EXPECT_THROW(broker.connect(2s), BrokerError);
}

TEST(Aedes, ADeniedPublishClosesTheConnectionAndIsLogged) {
    testing::Aedes aedes({.deny_publish = {"aedes/+/secret"}});
    testing::Completions done;
    testing::ConnectionLog changes;
    MqttBroker broker(options(aedes.uri()));
    broker.set_connection_handler(changes.handler());
    broker.connect(5s);
    broker.publish(record(1, "aedes/x/public"), done.callback_for(1));
    ASSERT_TRUE(done.wait_for(1, 10s));
    EXPECT_EQ(done.get(1).status, PublishResult::Status::delivered);

    const std::size_t before = changes.size();
    broker.publish(record(2, "aedes/x/secret"), done.callback_for(2));
    ASSERT_TRUE(done.wait_for(2, 10s));
    EXPECT_EQ(done.get(2).status, PublishResult::Status::connection_lost);
    EXPECT_TRUE(changes.wait_for(false, 10s, before).has_value());
    // node writes the line after it closed the connection: wait for it.
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (!aedes.log_contains("denied publish to aedes/x/secret") &&
           std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_TRUE(aedes.log_contains("denied publish to aedes/x/secret")) << aedes.log();
}

}  // namespace
}  // namespace outpost
