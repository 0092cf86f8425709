// MqttBroker against a real mosquitto, publishing: QoS 0-2 and retain on MQTT 3.1.1 and 5, the
// MQTT 5 mapping (user properties, the id property, content type, expiry), local refusals of
// what the server would answer by closing the connection, ACL rejections, many publishes in
// order. The connection life cycle is in mqtt_broker_connection_test.cpp, TLS and passwords in
// mqtt_broker_tls_test.cpp.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <numeric>
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
using testing::last_by_topic;
using testing::make_record;
using testing::Mosquitto;
using testing::MosquittoOptions;
using testing::options_for;
using testing::Subscriber;
using testing::version_name;

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

INSTANTIATE_TEST_SUITE_P(Versions, MqttBrokerVersions,
                         ::testing::Values(MqttVersion::v3_1_1, MqttVersion::v5), version_name);

// mosquitto 2.0 acknowledges an MQTT 5 publish no subscription matches with PUBACK 0x10 (its log
// says "Sending PUBACK ... rc16"), as EMQX does. That is a success: delivered. paho-mqtt-cpp
// 1.2.0 with paho-c 1.3.12 (Debian 12) reports every successful acknowledgement with reason 0,
// so the notice (and DispatcherStats::unrouted) needs a paho that hands the code over; both
// cases are checked for what they must give.
TEST(MqttBroker, APubackWithNoMatchingSubscribersIsDelivered) {
    MosquittoOptions verbose;
    verbose.extra_config = "log_type all\n";
    Mosquitto mosq(verbose);
    MqttBroker broker(options_for(mosq.uri()));
    broker.connect(5s);
    Results results;
    broker.publish(make_record(1, "nobody/listens", "lost in space"), results.callback_for(1));
    ASSERT_TRUE(results.wait_for(1, 10s));
    const PublishResult alone = results.get(1);
    EXPECT_EQ(alone.status, PublishResult::Status::delivered) << alone.reason;
    ASSERT_TRUE(testing::eventually([&] { return mosq.log_contains("rc16)"); }, 5s))
        << "mosquitto did not answer 0x10: " << mosq.log();
    if (alone.reason_code == 0) {
        EXPECT_EQ(alone.reason, "");
        std::cout << "paho reported the PUBACK 0x10 as reason 0 (not passed up)\n";
    } else {
        EXPECT_EQ(alone.reason_code, kNoMatchingSubscribers);
        EXPECT_EQ(alone.reason, "PUBACK reason 0x10 no matching subscribers");
    }
}

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
