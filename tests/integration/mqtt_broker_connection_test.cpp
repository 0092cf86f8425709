// MqttBroker against a real mosquitto, the connection life cycle: connect timeouts, failover,
// publishing while down, connection loss and reconnect, session takeover, the last will, and
// disconnect() waiting out acknowledgements and callbacks.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "completions.hpp"
#include "connection_log.hpp"
#include "mqtt_broker_helpers.hpp"
#include "outpost/error.hpp"
#include "outpost/mqtt_broker.hpp"
#include "subscriber.hpp"
#include "testkit/mosquitto.hpp"

namespace outpost {
namespace {

using namespace std::chrono_literals;
using testing::ConnectionLog;
using Results = testing::Completions;
using testing::eventually;
using testing::make_record;
using testing::Mosquitto;
using testing::options_for;
using testing::Subscriber;
using steady = std::chrono::steady_clock;

TEST(MqttBroker, ConnectToDeadPortFailsTransientlyWithinTimeout) {
    const int port = testing::free_loopback_port();  // nothing listens there
    MqttBroker broker(options_for("tcp://127.0.0.1:" + std::to_string(port)));
    const auto start = steady::now();
    try {
        broker.connect(2s);
        FAIL() << "connected to a dead port";
    } catch (const BrokerError& e) {
        EXPECT_TRUE(e.transient()) << e.what();
        EXPECT_NE(std::string(e.what()).find(std::to_string(port)), std::string::npos) << e.what();
    }
    EXPECT_LT(steady::now() - start, 2500ms);
    EXPECT_FALSE(broker.connected());
}

// A TCP listener that never answers: the handshake completes in the kernel, CONNACK never comes.
class SilentServer {
  public:
    SilentServer() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            ::listen(fd_, 16) != 0) {
            throw std::runtime_error("silent server: bind/listen failed");
        }
        socklen_t len = sizeof addr;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
    }
    ~SilentServer() { ::close(fd_); }
    std::string uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

  private:
    int fd_ = -1;
    int port_ = 0;
};

TEST(MqttBroker, ConnectToSilentServerGivesUpAtTheTimeout) {
    SilentServer silent;
    MqttBroker broker(options_for(silent.uri()));
    const auto start = steady::now();
    try {
        broker.connect(700ms);
        FAIL() << "connected to a server that never answers";
    } catch (const BrokerError& e) {
        EXPECT_TRUE(e.transient()) << e.what();
    }
    const auto took = steady::now() - start;
    EXPECT_GE(took, 650ms);
    EXPECT_LT(took, 1000ms);  // blocks at most the timeout (plus scheduling)
    EXPECT_FALSE(broker.connected());
}

TEST(MqttBroker, FailoverTakesTheNextServer) {
    Mosquitto mosq;
    const int dead = testing::free_loopback_port();
    MqttOptions o = options_for("tcp://127.0.0.1:" + std::to_string(dead));
    o.servers.push_back(mosq.uri());
    MqttBroker broker(o);
    broker.connect(5s);
    EXPECT_TRUE(broker.connected());
    EXPECT_EQ(broker.server(), mosq.uri());
}

// The reconnect after a loss reuses the paho client; paho then reported the first server of the
// list as reached, whichever it was (found by the RabbitMQ cluster failover test).
TEST(MqttBroker, AReconnectAfterALossNamesTheServerItReached) {
    Mosquitto first;
    Mosquitto second;
    MqttOptions o = options_for(first.uri());
    o.servers.push_back(second.uri());
    ConnectionLog log;  // before the broker: its destructor still tells the handler
    MqttBroker broker(o);
    broker.set_connection_handler(log.handler());
    broker.connect(5s);
    EXPECT_EQ(broker.server(), first.uri());
    const std::size_t before = log.size();
    first.kill();
    ASSERT_TRUE(log.wait_for(false, 10s, before).has_value());
    broker.connect(10s);
    ASSERT_TRUE(broker.connected());
    EXPECT_EQ(broker.server(), second.uri());
    const auto up = log.wait_for(true, 2s, before);
    ASSERT_TRUE(up.has_value());
    EXPECT_EQ(*up, "connected to " + second.uri());
}

TEST(MqttBroker, PublishWhileDisconnectedCompletesAtOnceWithConnectionLost) {
    Mosquitto mosq;
    Results results;
    MqttBroker broker(options_for(mosq.uri()));
    broker.publish(make_record(1, "t/a", "x"), results.callback_for(1));
    ASSERT_EQ(results.size(), 1u);  // before publish() returned
    EXPECT_EQ(results.get(1).status, PublishResult::Status::connection_lost);

    broker.connect(5s);
    broker.disconnect(1s);
    EXPECT_FALSE(broker.connected());
    broker.publish(make_record(2, "t/a", "x"), results.callback_for(2));
    ASSERT_EQ(results.size(), 2u);
    EXPECT_EQ(results.get(2).status, PublishResult::Status::connection_lost);
}

TEST(MqttBroker, BrokerKilledCompletesOutstandingWithConnectionLost) {
    Mosquitto mosq;
    Results results;
    ConnectionLog log;
    MqttBroker broker(options_for(mosq.uri()));
    broker.set_connection_handler(log.handler());
    broker.connect(5s);
    ASSERT_TRUE(log.wait_for(true, 1s));

    constexpr int kTotal = 3000;
    for (int i = 1; i <= kTotal; ++i) {
        if (i == 1000) {
            mosq.kill();
        }
        broker.publish(make_record(i, "load/" + std::to_string(i % 7), std::string(200, 'x')),
                       results.callback_for(i));
    }
    ASSERT_TRUE(results.wait_for(kTotal, 10s)) << results.size() << " of " << kTotal;
    EXPECT_EQ(results.duplicates(), 0);
    EXPECT_EQ(results.count(PublishResult::Status::rejected), 0u);
    // No PUBACK can come from a dead broker: the 2,001 publishes made after the kill are lost.
    EXPECT_GE(results.count(PublishResult::Status::connection_lost), 2001u);
    EXPECT_TRUE(eventually([&] { return !broker.connected(); }, 5s));
    ASSERT_TRUE(log.wait_for(false, 5s));
    bool named = false;
    for (const auto& [up, reason] : log.events()) {
        if (!up) {
            named = reason.find(mosq.uri()) != std::string::npos;
        }
    }
    EXPECT_TRUE(named) << "the loss reason names the server";
}

TEST(MqttBroker, ReconnectsAfterRestart) {
    Mosquitto mosq;
    Results results;
    ConnectionLog log;
    MqttBroker broker(options_for(mosq.uri()));
    broker.set_connection_handler(log.handler());
    broker.connect(5s);
    mosq.kill();
    ASSERT_TRUE(log.wait_for(false, 5s));
    EXPECT_FALSE(broker.connected());
    EXPECT_THROW(broker.connect(1s), BrokerError);

    mosq.start();
    Subscriber sub(mosq.uri(), "after/#", 1, 5);
    broker.connect(5s);
    EXPECT_TRUE(broker.connected());
    broker.publish(make_record(1, "after/restart", "back"), results.callback_for(1));
    ASSERT_TRUE(results.wait_for(1, 5s));
    EXPECT_EQ(results.get(1).status, PublishResult::Status::delivered);
    ASSERT_TRUE(sub.wait_for_count(1, 5s));
    const auto events = log.events();
    ASSERT_GE(events.size(), 3u);
    EXPECT_TRUE(events.back().first);
}

TEST(MqttBroker, SessionTakeoverIsAConnectionLoss) {
    Mosquitto mosq;
    MqttOptions o = options_for(mosq.uri());
    ConnectionLog log;
    MqttBroker broker(o);
    broker.set_connection_handler(log.handler());
    broker.connect(5s);
    // A second client with the same id takes the session over; mosquitto 2.0.11 closes the
    // first connection (without an MQTT 5 DISCONNECT).
    MqttBroker usurper(o);
    usurper.connect(5s);
    ASSERT_TRUE(log.wait_for(false, 5s));
    EXPECT_FALSE(broker.connected());
    EXPECT_TRUE(usurper.connected());
    const auto events = log.events();
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].second, "connected to " + mosq.uri());
    EXPECT_EQ(events[1].second.rfind("connection to " + mosq.uri() + " lost", 0), 0u)
        << events[1].second;
}

TEST(MqttBroker, LastWillIsPublishedOnUncleanLoss) {
    Mosquitto mosq;
    Subscriber sub(mosq.uri(), "status/#", 1, 5);
    MqttOptions o = options_for(mosq.uri());
    o.will = MqttWill{"status/device-1", "offline", 1, false};
    MqttBroker broker(o);
    broker.connect(5s);
    // Session takeover closes the first connection without a DISCONNECT from its client.
    MqttOptions again = o;
    again.will.reset();
    MqttBroker usurper(again);
    usurper.connect(5s);
    ASSERT_TRUE(sub.wait_for_count(1, 5s));
    EXPECT_EQ(sub.messages()[0].payload, "offline");
}

TEST(MqttBroker, CleanDisconnectSendsNoWill) {
    Mosquitto mosq;
    Subscriber sub(mosq.uri(), "#", 1, 5);
    MqttOptions o = options_for(mosq.uri());
    o.will = MqttWill{"status/device-2", "offline", 1, false};
    {
        MqttBroker broker(o);
        broker.connect(5s);
        Results results;
        broker.publish(make_record(1, "data/x", "last"), results.callback_for(1));
        ASSERT_TRUE(results.wait_for(1, 5s));
        broker.disconnect(1s);
    }
    ASSERT_TRUE(sub.wait_for_count(1, 5s));
    // The probe: one more message from another client; the will would have come before it.
    Results results;
    MqttBroker probe(options_for(mosq.uri()));
    probe.connect(5s);
    probe.publish(make_record(2, "data/probe", "p"), results.callback_for(2));
    ASSERT_TRUE(sub.wait_for_count(2, 5s));
    for (const auto& m : sub.messages()) {
        EXPECT_NE(m.topic, "status/device-2");
    }
}

TEST(MqttBroker, DisconnectWaitsForAcknowledgementsThenReportsTheRest) {
    Mosquitto mosq;
    Results results;
    ConnectionLog log;
    MqttBroker broker(options_for(mosq.uri()));
    broker.set_connection_handler(log.handler());
    broker.connect(5s);
    constexpr int kTotal = 500;
    for (int i = 1; i <= kTotal; ++i) {
        broker.publish(make_record(i, "d/x", std::string(100, 'y')), results.callback_for(i));
    }
    broker.disconnect(5s);
    // Every publish is answered by the time disconnect() returns.
    EXPECT_EQ(results.size(), static_cast<std::size_t>(kTotal));
    EXPECT_EQ(results.count(PublishResult::Status::delivered), static_cast<std::size_t>(kTotal));
    EXPECT_FALSE(broker.connected());
    ASSERT_TRUE(log.wait_for(false, 1s));
    broker.disconnect(1s);  // twice is fine
}

// After a lost connection, paho's thread completes the outstanding publishes and tells the
// connection handler, after it marked the connection down. disconnect() must not return while
// that still runs: the Dispatcher's stop() calls disconnect() and then frees what the callbacks
// point to (issue 10, "a paho thread may still be inside the dispatcher during teardown").
TEST(MqttBroker, DisconnectWaitsOutCallbacksStillRunningAfterALoss) {
    Mosquitto mosq;
    std::atomic<bool> in_handler{false};
    std::atomic<bool> handler_finished{false};
    MqttBroker broker(options_for(mosq.uri()));
    broker.set_connection_handler([&](bool up, const std::string&) {
        if (!up) {
            in_handler = true;
            std::this_thread::sleep_for(300ms);  // a slow handler: the window made wide
            handler_finished = true;
        }
    });
    broker.connect(5s);
    ::kill(mosq.pid(), SIGSTOP);  // no PUBACK from now on: everything stays outstanding
    Results results;
    constexpr int kTotal = 12;  // 8 handed to paho, 4 held back by MqttBroker
    for (int i = 1; i <= kTotal; ++i) {
        broker.publish(make_record(i, "t/x", "x"), results.callback_for(i));
    }
    mosq.kill();  // the socket closes under paho: its thread reports the loss
    ASSERT_TRUE(eventually([&] { return in_handler.load(); }, 5s));

    broker.disconnect(1s);
    EXPECT_TRUE(handler_finished) << "disconnect() returned while the connection handler ran";
    EXPECT_EQ(results.size(), static_cast<std::size_t>(kTotal));
    EXPECT_EQ(results.count(PublishResult::Status::connection_lost),
              static_cast<std::size_t>(kTotal));
    // Before the fix the check above failed: wait, so that nothing the handler uses goes first.
    EXPECT_TRUE(eventually([&] { return handler_finished.load(); }, 5s));
}

}  // namespace
}  // namespace outpost
