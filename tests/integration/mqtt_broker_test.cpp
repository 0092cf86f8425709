// MqttBroker against a real mosquitto: the broker.hpp contract, MQTT 3.1.1 and 5, ACL
// rejections, TLS, passwords, failover, connection loss and reconnect.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "connection_log.hpp"
#include "outpost/error.hpp"
#include "outpost/mqtt_broker.hpp"
#include "subscriber.hpp"
#include "testkit/mosquitto.hpp"

namespace outpost {
namespace {

using namespace std::chrono_literals;
using testing::ConnectionLog;
using testing::Mosquitto;
using testing::MosquittoOptions;
using testing::Subscriber;
using steady = std::chrono::steady_clock;

// The messages `sub` received, the last one of each topic.
std::map<std::string, testing::Received> last_by_topic(const Subscriber& sub) {
    std::map<std::string, testing::Received> out;
    for (const auto& m : sub.messages()) {
        out[m.topic] = m;
    }
    return out;
}

Record make_record(std::int64_t id, std::string topic, std::string payload, int qos = 1) {
    Record r;
    r.id = id;
    r.uid = "uid-" + std::to_string(id);
    r.message = Message::text(std::move(topic), payload);
    r.message.qos = qos;
    return r;
}

MqttOptions options_for(const std::string& uri, MqttVersion version = MqttVersion::v5) {
    static std::atomic<int> n{0};
    MqttOptions o;
    o.servers = {uri};
    o.client_id = "outpost-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
    o.version = version;
    return o;
}

// Collects publish results by record id and fails the test on a second completion of one id.
class Results {
  public:
    PublishCallback callback_for(std::int64_t id) {
        return [this, id](const PublishResult& r) {
            std::lock_guard lock(mutex_);
            if (!results_.emplace(id, r).second) {
                ++duplicates_;
            }
            cv_.notify_all();
        };
    }
    bool wait_for(std::size_t n, std::chrono::milliseconds timeout) {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, timeout, [&] { return results_.size() >= n; });
    }
    PublishResult get(std::int64_t id) {
        std::lock_guard lock(mutex_);
        auto it = results_.find(id);
        if (it == results_.end()) {
            ADD_FAILURE() << "no result for " << id;
            return PublishResult::lost("missing");
        }
        return it->second;
    }
    std::size_t count(PublishResult::Status status) {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (const auto& [id, r] : results_) {
            n += r.status == status ? 1 : 0;
        }
        return n;
    }
    std::size_t size() {
        std::lock_guard lock(mutex_);
        return results_.size();
    }
    int duplicates() {
        std::lock_guard lock(mutex_);
        return duplicates_;
    }

  private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::map<std::int64_t, PublishResult> results_;
    int duplicates_ = 0;
};

// Polls `pred` until it holds or `timeout` passes (for state that has no notification).
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout) {
    const auto deadline = steady::now() + timeout;
    while (!pred()) {
        if (steady::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

class MqttBrokerVersions : public ::testing::TestWithParam<MqttVersion> {};

TEST_P(MqttBrokerVersions, PublishQos012Arrives) {
    Mosquitto mosq;
    const int v = static_cast<int>(GetParam());
    Subscriber sub(mosq.uri(), "t/#", 2, v);
    Results results;
    MqttBroker broker(options_for(mosq.uri(), GetParam()));
    broker.connect(5s);
    ASSERT_TRUE(broker.connected());
    EXPECT_EQ(broker.server(), mosq.uri());

    for (int qos = 0; qos <= 2; ++qos) {
        broker.publish(
            make_record(qos + 1, "t/q" + std::to_string(qos), "hello " + std::to_string(qos), qos),
            results.callback_for(qos + 1));
    }
    ASSERT_TRUE(results.wait_for(3, 5s));
    for (int id = 1; id <= 3; ++id) {
        EXPECT_EQ(results.get(id).status, PublishResult::Status::delivered)
            << results.get(id).reason;
    }
    ASSERT_TRUE(sub.wait_for_count(3, 5s));
    const auto by_topic = last_by_topic(sub);
    for (int qos = 0; qos <= 2; ++qos) {
        const auto& m = by_topic.at("t/q" + std::to_string(qos));
        EXPECT_EQ(m.payload, "hello " + std::to_string(qos));
        EXPECT_EQ(m.qos, qos);
    }
    EXPECT_EQ(results.duplicates(), 0);
}

TEST_P(MqttBrokerVersions, RetainFlagIsKept) {
    Mosquitto mosq;
    Results results;
    MqttBroker broker(options_for(mosq.uri(), GetParam()));
    broker.connect(5s);
    Record r = make_record(1, "state/door", "open");
    r.message.retain = true;
    broker.publish(r, results.callback_for(1));
    ASSERT_TRUE(results.wait_for(1, 5s));
    ASSERT_EQ(results.get(1).status, PublishResult::Status::delivered);
    // Subscribing after the publish: only a retained message can arrive.
    Subscriber late(mosq.uri(), "state/#", 1, static_cast<int>(GetParam()));
    ASSERT_TRUE(late.wait_for_count(1, 5s));
    EXPECT_EQ(late.messages()[0].payload, "open");
    EXPECT_TRUE(late.messages()[0].retained);
}

// Test names per protocol version: mqtt311, mqtt5.
std::string version_name(const ::testing::TestParamInfo<MqttVersion>& info) {
    return info.param == MqttVersion::v5 ? "mqtt5" : "mqtt311";
}

INSTANTIATE_TEST_SUITE_P(Versions, MqttBrokerVersions,
                         ::testing::Values(MqttVersion::v3_1_1, MqttVersion::v5), version_name);

TEST(MqttBroker, Mqtt5PropertiesArrive) {
    Mosquitto mosq;
    Subscriber sub(mosq.uri(), "props/#", 1, 5);
    ManualClock clock(1'700'000'000'000);
    Results results;
    MqttBroker broker(options_for(mosq.uri()), clock);
    broker.connect(5s);

    Record r = make_record(7, "props/a", "{\"t\":21.5}");
    r.uid = "3b0c6a3e-8d4f-4a51-9f0e-0c1d2e3f4a5b";
    r.message.headers = {{"sensor", "kitchen"}, {"unit", "°C"}};
    r.message.content_type = "application/json";
    r.expires_at = clock.wall_ms() + 90'500;  // 90.5 s left: rounded up to 91
    Record expired = make_record(8, "props/b", "late");
    expired.expires_at = clock.wall_ms() - 5'000;  // already expired: still sent, 1 s

    broker.publish(r, results.callback_for(7));
    broker.publish(expired, results.callback_for(8));
    ASSERT_TRUE(results.wait_for(2, 5s));
    ASSERT_TRUE(sub.wait_for_count(2, 5s));
    const auto by_topic = last_by_topic(sub);
    const auto& a = by_topic.at("props/a");
    ASSERT_EQ(a.user_properties.size(), 3u);
    EXPECT_EQ(a.user_properties[0], (std::pair<std::string, std::string>{"sensor", "kitchen"}));
    EXPECT_EQ(a.user_properties[1], (std::pair<std::string, std::string>{"unit", "°C"}));
    EXPECT_EQ(a.property("outpost-id"), r.uid);
    EXPECT_EQ(a.content_type, "application/json");
    ASSERT_TRUE(a.expiry_interval.has_value());
    // mosquitto forwards the time left: 91 s minus the moment it held the message.
    EXPECT_LE(*a.expiry_interval, 91);
    EXPECT_GE(*a.expiry_interval, 89);

    const auto& b = by_topic.at("props/b");
    EXPECT_EQ(b.property("outpost-id"), "uid-8");
    EXPECT_FALSE(b.content_type.has_value());
    ASSERT_TRUE(b.expiry_interval.has_value());
    EXPECT_LE(*b.expiry_interval, 1);
}

TEST(MqttBroker, IdPropertyIsRenamedOrLeftOut) {
    Mosquitto mosq;
    Subscriber sub(mosq.uri(), "ids/#", 1, 5);
    Results results;
    MqttOptions named = options_for(mosq.uri());
    named.id_property = "msg-id";
    MqttOptions none = options_for(mosq.uri());
    none.client_id += "-none";
    none.id_property.clear();
    MqttBroker a(named);
    MqttBroker b(none);
    a.connect(5s);
    b.connect(5s);
    Record ra = make_record(1, "ids/a", "x");
    ra.message.headers = {{"sensor", "kitchen"}};
    Record rb = make_record(2, "ids/b", "y");
    a.publish(ra, results.callback_for(1));
    b.publish(rb, results.callback_for(2));
    ASSERT_TRUE(results.wait_for(2, 5s));
    ASSERT_TRUE(sub.wait_for_count(2, 5s));
    const auto by_topic = last_by_topic(sub);
    const auto& got_a = by_topic.at("ids/a");
    ASSERT_EQ(got_a.user_properties.size(), 2u);
    EXPECT_EQ(got_a.property("msg-id"), ra.uid);
    EXPECT_FALSE(got_a.property("outpost-id").has_value());
    EXPECT_TRUE(by_topic.at("ids/b").user_properties.empty());
}

TEST(MqttBroker, Mqtt311SendsNoProperties) {
    Mosquitto mosq;
    Subscriber sub(mosq.uri(), "props/#", 1, 5);  // an MQTT 5 subscriber would see any
    Results results;
    MqttBroker broker(options_for(mosq.uri(), MqttVersion::v3_1_1));
    broker.connect(5s);
    Record r = make_record(1, "props/a", "x");
    r.message.headers = {{"sensor", "kitchen"}};
    r.message.content_type = "text/plain";
    r.expires_at = SystemClock::instance().wall_ms() + 60'000;
    broker.publish(r, results.callback_for(1));
    ASSERT_TRUE(results.wait_for(1, 5s));
    EXPECT_EQ(results.get(1).status, PublishResult::Status::delivered);
    ASSERT_TRUE(sub.wait_for_count(1, 5s));
    const auto m = sub.messages()[0];
    EXPECT_EQ(m.payload, "x");
    EXPECT_TRUE(m.user_properties.empty());
    EXPECT_FALSE(m.content_type.has_value());
    EXPECT_FALSE(m.expiry_interval.has_value());
}

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

TEST(MqttBroker, PacketLargerThanTheServerAcceptsIsRejectedLocally) {
    MosquittoOptions mo;
    mo.extra_config = "max_packet_size 1000\n";
    Mosquitto mosq(mo);
    Results results;
    MqttBroker broker(options_for(mosq.uri()));
    broker.connect(5s);
    broker.publish(make_record(1, "big/x", std::string(2000, 'b')), results.callback_for(1));
    broker.publish(make_record(2, "big/y", std::string(500, 's')), results.callback_for(2));
    ASSERT_TRUE(results.wait_for(2, 5s));
    const auto big = results.get(1);
    EXPECT_EQ(big.status, PublishResult::Status::rejected);
    EXPECT_TRUE(big.permanent);
    EXPECT_EQ(big.reason_code, 0x95);
    EXPECT_EQ(results.get(2).status, PublishResult::Status::delivered);
    EXPECT_TRUE(broker.connected()) << "sending it would have cost the connection";
}

// 20 good QoS 1 records after the bad ones, ids from `first`: they all arrive, on the same
// connection.
void publish_good(MqttBroker& broker, Results& results, std::int64_t first) {
    for (std::int64_t id = first; id < first + 20; ++id) {
        broker.publish(make_record(id, "good/" + std::to_string(id), "ok"),
                       results.callback_for(id));
    }
}

// mosquitto 2.0 closes the connection of a client that publishes above the listener's max_qos
// or with retain while retain_available is false. Its MQTT 5 CONNACK says so (Maximum QoS 1,
// Retain Available 0): MqttBroker refuses such a record itself, permanently, and the connection
// (and every publish behind the record) lives on.
TEST(MqttBroker, QosAndRetainTheConnackRulesOutAreRejectedLocally) {
    MosquittoOptions mo;
    mo.extra_config = "max_qos 1\nretain_available false\n";
    Mosquitto mosq(mo);
    Subscriber sub(mosq.uri(), "good/#", 1, 5);
    Results results;
    ConnectionLog log;
    MqttBroker broker(options_for(mosq.uri()));
    broker.set_connection_handler(log.handler());
    broker.connect(5s);
    ASSERT_TRUE(log.wait_for(true, 1s));

    broker.publish(make_record(1, "bad/qos2", "q", 2), results.callback_for(1));
    Record retained = make_record(2, "bad/retained", "r", 1);
    retained.message.retain = true;
    broker.publish(retained, results.callback_for(2));
    publish_good(broker, results, 3);
    ASSERT_TRUE(results.wait_for(22, 10s)) << results.size() << "\n" << mosq.log();

    const auto qos = results.get(1);
    EXPECT_EQ(qos.status, PublishResult::Status::rejected);
    EXPECT_TRUE(qos.permanent);
    EXPECT_EQ(qos.reason_code, 0x9B);
    EXPECT_EQ(qos.reason,
              "qos not supported: QoS 2, the server allows at most QoS 1 (CONNACK Maximum QoS); "
              "not sent (the server would close the connection)");
    const auto retain = results.get(2);
    EXPECT_EQ(retain.status, PublishResult::Status::rejected);
    EXPECT_TRUE(retain.permanent);
    EXPECT_EQ(retain.reason_code, 0x9A);
    EXPECT_NE(retain.reason.find("retain not supported"), std::string::npos) << retain.reason;
    EXPECT_NE(retain.reason.find("Retain Available 0"), std::string::npos) << retain.reason;
    EXPECT_EQ(results.count(PublishResult::Status::delivered), 20u);
    ASSERT_TRUE(sub.wait_for_count(20, 5s)) << sub.count();

    EXPECT_TRUE(broker.connected());
    EXPECT_EQ(log.size(), 1u) << "the connection was lost (and the subscriber saw no will)";
    EXPECT_FALSE(mosq.log_contains("disconnected due to")) << mosq.log();

    // QoS 1 and 0, and the same record without retain, still go.
    broker.publish(make_record(30, "good/q1", "x", 1), results.callback_for(30));
    broker.publish(make_record(31, "good/q0", "x", 0), results.callback_for(31));
    ASSERT_TRUE(results.wait_for(24, 5s));
    EXPECT_EQ(results.get(30).status, PublishResult::Status::delivered);
    EXPECT_EQ(results.get(31).status, PublishResult::Status::delivered);
}

// Records that never went through add() (written by an older version, or into the file by
// hand) can carry what MQTT forbids; mosquitto 2.0 drops the connection over each of these.
TEST(MqttBroker, StringsMqttForbidsAreRejectedLocally) {
    Mosquitto mosq;
    Subscriber sub(mosq.uri(), "#", 1, 5);
    Results results;
    ConnectionLog log;
    MqttBroker broker(options_for(mosq.uri()));
    broker.set_connection_handler(log.handler());
    broker.connect(5s);
    ASSERT_TRUE(log.wait_for(true, 1s));

    struct Bad {
        Record record;
        int code;
        const char* reason;  // contained in the rejection's reason
    };
    std::vector<Bad> bad;
    bad.push_back({make_record(1, "t/bad\tx", "tab"), 0x90,
                   "topic name invalid: the topic contains the control character U+0009 at byte "
                   "offset 5, which MQTT does not allow; not sent (the server would close the "
                   "connection)"});
    bad.push_back({make_record(2, "t/\xef\xbf\xbf", "U+FFFF"), 0x90,
                   "the topic contains the noncharacter U+FFFF at byte offset 2"});
    bad.push_back({make_record(3, "t/#", "wildcard"), 0x90, "contains the wildcard '#'"});
    bad.push_back({make_record(4, "t/\xc3", "truncated"), 0x90, "the topic is not valid UTF-8"});
    bad.push_back({make_record(5, "", "empty"), 0x90, "the topic is empty"});
    Record newline = make_record(6, "t/ok", "newline in a header");
    newline.message.headers = {{"note", "two\nlines"}};
    bad.push_back({newline, 0x81,
                   "malformed packet: header 1 ('note') value (a user property) contains the "
                   "control character U+000A at byte offset 3"});
    Record c1 = make_record(7, "t/ok", "C1 in a header name");
    c1.message.headers = {{"a\xc2\x85", "v"}};
    bad.push_back({c1, 0x81,
                   "header 1 name (a user property) contains the control character "
                   "U+0085 at byte offset 1"});
    Record type = make_record(8, "t/ok", "DEL in the content type");
    type.message.content_type = "text/plain\x7f";
    bad.push_back({type, 0x81, "the content type contains the control character U+007F"});
    Record uid = make_record(9, "t/ok", "newline in the uid");
    uid.uid = "uid\r\n";
    bad.push_back({uid, 0x81,
                   "the uid (user property outpost-id) contains the control character "
                   "U+000D at byte offset 3"});
    for (const Bad& b : bad) {
        broker.publish(b.record, results.callback_for(b.record.id));
    }
    publish_good(broker, results, 100);
    ASSERT_TRUE(results.wait_for(bad.size() + 20, 10s)) << results.size() << "\n" << mosq.log();

    for (const Bad& b : bad) {
        const auto r = results.get(b.record.id);
        EXPECT_EQ(r.status, PublishResult::Status::rejected) << b.record.id << ": " << r.reason;
        EXPECT_TRUE(r.permanent) << b.record.id;
        EXPECT_EQ(r.reason_code, b.code) << b.record.id << ": " << r.reason;
        EXPECT_NE(r.reason.find(b.reason), std::string::npos)
            << b.record.id << ": got '" << r.reason << "', expected it to contain '" << b.reason
            << "'";
    }
    EXPECT_EQ(results.count(PublishResult::Status::delivered), 20u);
    ASSERT_TRUE(sub.wait_for_count(20, 5s)) << sub.count();
    EXPECT_EQ(sub.count(), 20u);
    EXPECT_TRUE(broker.connected());
    EXPECT_EQ(log.size(), 1u) << "the connection was lost";
    EXPECT_FALSE(mosq.log_contains("disconnected due to")) << mosq.log();
}

// MQTT 3.1.1 sends no properties, so only the topic can cost the connection there; a header
// MQTT 5 would refuse is simply not sent.
TEST(MqttBroker, Mqtt311RefusesBadTopicsAndIgnoresHeaders) {
    Mosquitto mosq;
    Subscriber sub(mosq.uri(), "t/#", 1, 4);
    Results results;
    ConnectionLog log;
    MqttBroker broker(options_for(mosq.uri(), MqttVersion::v3_1_1));
    broker.set_connection_handler(log.handler());
    broker.connect(5s);
    ASSERT_TRUE(log.wait_for(true, 1s));
    broker.publish(make_record(1, "t/bad\nx", "newline"), results.callback_for(1));
    Record header = make_record(2, "t/header", "h");
    header.message.headers = {{"note", "two\nlines"}};
    broker.publish(header, results.callback_for(2));
    ASSERT_TRUE(results.wait_for(2, 5s));
    EXPECT_EQ(results.get(1).reason_code, 0x90) << results.get(1).reason;
    EXPECT_TRUE(results.get(1).permanent);
    EXPECT_EQ(results.get(2).status, PublishResult::Status::delivered) << results.get(2).reason;
    ASSERT_TRUE(sub.wait_for_count(1, 5s));
    EXPECT_EQ(sub.messages()[0].topic, "t/header");
    EXPECT_TRUE(broker.connected());
    EXPECT_EQ(log.size(), 1u);
}

// What the header says of MQTT 3.1.1: its CONNACK has no Maximum QoS, so MqttBroker cannot know
// and the server drops the connection. Pinned here so nobody relies on the refusal without
// MQTT 5.
TEST(MqttBroker, Mqtt311CannotKnowTheServersMaximumQos) {
    MosquittoOptions mo;
    mo.extra_config = "max_qos 1\n";
    Mosquitto mosq(mo);
    Results results;
    ConnectionLog log;
    MqttBroker broker(options_for(mosq.uri(), MqttVersion::v3_1_1));
    broker.set_connection_handler(log.handler());
    broker.connect(5s);
    broker.publish(make_record(1, "t/q2", "x", 2), results.callback_for(1));
    ASSERT_TRUE(results.wait_for(1, 5s));
    EXPECT_EQ(results.get(1).status, PublishResult::Status::connection_lost)
        << results.get(1).reason;
    ASSERT_TRUE(log.wait_for(false, 5s));
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

TEST(MqttBroker, AclDeniedPublishIsRejectedPermanentlyWithReason0x87) {
    MosquittoOptions mo;
    mo.acl = "topic readwrite allowed/#\ntopic read denied/#\n";
    Mosquitto mosq(mo);
    Results results;
    MqttBroker broker(options_for(mosq.uri()));
    broker.connect(5s);
    broker.publish(make_record(1, "denied/x", "no", 1), results.callback_for(1));
    broker.publish(make_record(2, "denied/y", "no", 2), results.callback_for(2));
    broker.publish(make_record(3, "allowed/z", "yes", 1), results.callback_for(3));
    ASSERT_TRUE(results.wait_for(3, 5s));

    const auto r1 = results.get(1);
    EXPECT_EQ(r1.status, PublishResult::Status::rejected);
    EXPECT_TRUE(r1.permanent);
    EXPECT_EQ(r1.reason_code, 0x87);
    EXPECT_EQ(r1.reason, "PUBACK reason 0x87 not authorized");
    const auto r2 = results.get(2);
    EXPECT_EQ(r2.status, PublishResult::Status::rejected);
    EXPECT_TRUE(r2.permanent);
    EXPECT_EQ(r2.reason, "PUBREC reason 0x87 not authorized");
    EXPECT_EQ(results.get(3).status, PublishResult::Status::delivered);
    EXPECT_TRUE(broker.connected()) << "a rejection is not a connection loss\n" << mosq.log();
}

TEST(MqttBroker, AclDeniedOnMqtt311IsSilentlyAcknowledged) {
    // MQTT 3.1.1 has no negative PUBACK: mosquitto acknowledges and drops. Documented here so
    // nobody relies on rejections without MQTT 5.
    MosquittoOptions mo;
    mo.acl = "topic readwrite allowed/#\n";
    Mosquitto mosq(mo);
    Results results;
    MqttBroker broker(options_for(mosq.uri(), MqttVersion::v3_1_1));
    broker.connect(5s);
    broker.publish(make_record(1, "denied/x", "no", 1), results.callback_for(1));
    ASSERT_TRUE(results.wait_for(1, 5s));
    EXPECT_EQ(results.get(1).status, PublishResult::Status::delivered);
}

class MqttBrokerTls : public ::testing::Test {
  protected:
    void SetUp() override {
        pki_ = testing::make_test_pki(pki_dir_.path());
        MosquittoOptions mo;
        mo.tls_ca_file = pki_.ca_file;
        mo.tls_cert_file = pki_.server_cert;
        mo.tls_key_file = pki_.server_key;
        mosq_ = std::make_unique<Mosquitto>(mo);
    }
    testing::TempDir pki_dir_;
    testing::TestPki pki_;
    std::unique_ptr<Mosquitto> mosq_;
};

TEST_F(MqttBrokerTls, TrustedCaConnectsAndPublishes) {
    Subscriber sub(mosq_->uri(), "secure/#", 1, 5, pki_.ca_file);
    MqttOptions o = options_for(mosq_->uri());
    o.tls.ca_file = pki_.ca_file;
    Results results;
    MqttBroker broker(o);
    broker.connect(5s);
    ASSERT_TRUE(broker.connected());
    broker.publish(make_record(1, "secure/a", "sealed"), results.callback_for(1));
    ASSERT_TRUE(results.wait_for(1, 5s));
    EXPECT_EQ(results.get(1).status, PublishResult::Status::delivered);
    ASSERT_TRUE(sub.wait_for_count(1, 5s));
    EXPECT_EQ(sub.messages()[0].payload, "sealed");
}

TEST_F(MqttBrokerTls, WrongCaIsRefusedAndNotTransient) {
    MqttOptions o = options_for(mosq_->uri());
    o.tls.ca_file = pki_.other_ca_file;
    MqttBroker broker(o);
    try {
        broker.connect(5s);
        FAIL() << "connected although the server certificate is not trusted";
    } catch (const BrokerError& e) {
        EXPECT_FALSE(e.transient()) << e.what();
        const std::string what = e.what();
        EXPECT_NE(what.find("certificate verify failed"), std::string::npos) << what;
        EXPECT_NE(what.find(mosq_->uri()), std::string::npos) << what;
    }
    EXPECT_FALSE(broker.connected());
}

TEST_F(MqttBrokerTls, SystemTrustStoreDoesNotTrustATestCa) {
    MqttBroker broker(options_for(mosq_->uri()));  // verification on by default, no CA given
    try {
        broker.connect(5s);
        FAIL() << "verification is not on by default";
    } catch (const BrokerError& e) {
        EXPECT_FALSE(e.transient()) << e.what();
    }
}

TEST_F(MqttBrokerTls, InsecureSkipsVerification) {
    MqttOptions o = options_for(mosq_->uri());
    o.tls.ca_file = pki_.other_ca_file;
    o.tls.insecure = true;
    MqttBroker broker(o);
    broker.connect(5s);
    EXPECT_TRUE(broker.connected());
}

TEST_F(MqttBrokerTls, UnreadableCaFileIsAConfigurationError) {
    MqttOptions o = options_for(mosq_->uri());
    o.tls.ca_file = pki_dir_.file("missing.crt");
    MqttBroker broker(o);
    try {
        broker.connect(5s);
        FAIL() << "connected without its CA file";
    } catch (const BrokerError& e) {
        EXPECT_FALSE(e.transient());
        EXPECT_NE(std::string(e.what()).find("tls.ca_file"), std::string::npos) << e.what();
    }
}

class MqttBrokerPasswords : public ::testing::TestWithParam<MqttVersion> {};

TEST_P(MqttBrokerPasswords, RightPasswordIsAcceptedWrongOneRefusedForGood) {
    MosquittoOptions mo;
    mo.users = {{"alice", "s3cret"}};
    Mosquitto mosq(mo);

    MqttOptions good = options_for(mosq.uri(), GetParam());
    good.username = "alice";
    good.password = "s3cret";
    {
        // One paho client at a time: a second one in the process connects 1-2 s slower.
        MqttBroker ok(good);
        ok.connect(5s);
        EXPECT_TRUE(ok.connected());
    }

    MqttOptions bad = good;
    bad.client_id += "-bad";
    bad.password = "guess";
    MqttBroker refused(bad);
    try {
        refused.connect(5s);
        FAIL() << "a wrong password was accepted";
    } catch (const BrokerError& e) {
        EXPECT_FALSE(e.transient()) << e.what();
        const std::string what = e.what();
        EXPECT_NE(what.find(mosq.uri()), std::string::npos) << what;
        // mosquitto 2.0 answers "not authorized" (5 / 0x87) for a wrong password.
        EXPECT_NE(what.find("not authorized"), std::string::npos) << what;
        EXPECT_NE(what.find("password"), std::string::npos) << what;
        EXPECT_GT(e.code(), 0);
    }
    EXPECT_FALSE(refused.connected());
    refused.disconnect(0ms);

    MqttOptions anonymous = options_for(mosq.uri(), GetParam());
    MqttBroker nobody(anonymous);
    try {
        nobody.connect(5s);
        FAIL() << "an anonymous client was accepted";
    } catch (const BrokerError& e) {
        EXPECT_FALSE(e.transient()) << e.what();
    }
}

INSTANTIATE_TEST_SUITE_P(Versions, MqttBrokerPasswords,
                         ::testing::Values(MqttVersion::v3_1_1, MqttVersion::v5), version_name);

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

TEST(MqttBroker, ManyPublishesFlowWithoutPahoBufferLimit) {
    // paho 1.2 throws -12 after 100 queued publishes unless max_buffered_messages is raised.
    Mosquitto mosq;
    Subscriber sub(mosq.uri(), "bulk/#", 1, 5);
    Results results;
    MqttBroker broker(options_for(mosq.uri()));
    broker.connect(5s);
    constexpr int kTotal = 2000;
    for (int i = 1; i <= kTotal; ++i) {
        broker.publish(make_record(i, "bulk/x", std::to_string(i)), results.callback_for(i));
    }
    ASSERT_TRUE(results.wait_for(kTotal, 20s));
    EXPECT_EQ(results.count(PublishResult::Status::delivered), static_cast<std::size_t>(kTotal));
    ASSERT_TRUE(sub.wait_for_distinct("outpost-id", kTotal, 20s));
    // Most of these were queued and sent by paho's receive thread (8+ in flight): in the order
    // they were published all the same.
    std::vector<int> arrived;
    for (const auto& m : sub.messages()) {
        arrived.push_back(std::stoi(m.payload));
    }
    std::vector<int> published(kTotal);
    std::iota(published.begin(), published.end(), 1);
    EXPECT_EQ(arrived, published);
}

}  // namespace
}  // namespace outpost
