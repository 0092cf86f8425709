// MqttOptions::validate() and the reason-code mapping: no broker needed.
#include <gtest/gtest.h>

#include <string>

#include "outpost/error.hpp"
#include "outpost/mqtt_broker.hpp"
#include "reason_codes.hpp"

namespace outpost {
namespace {

MqttOptions valid() {
    MqttOptions o;
    o.servers = {"tcp://127.0.0.1:1883"};
    o.client_id = "device-1";
    return o;
}

// Expects validate() to throw InvalidConfig whose text names `field`.
void expect_invalid(const MqttOptions& o, const std::string& field) {
    try {
        o.validate();
        ADD_FAILURE() << "no InvalidConfig for " << field;
    } catch (const InvalidConfig& e) {
        EXPECT_NE(std::string(e.what()).find("MqttOptions." + field), std::string::npos)
            << e.what();
        EXPECT_FALSE(e.transient());
    }
}

TEST(MqttOptions, DefaultsWithServerAndClientIdAreValid) {
    MqttOptions o = valid();
    EXPECT_NO_THROW(o.validate());
    EXPECT_EQ(o.version, MqttVersion::v5_or_3_1_1);
    EXPECT_TRUE(o.clean_start);
    EXPECT_FALSE(o.tls.insecure);
    EXPECT_EQ(o.keepalive, std::chrono::seconds(30));
    EXPECT_EQ(o.connect_timeout, std::chrono::seconds(10));
    EXPECT_FALSE(o.will.has_value());
    EXPECT_EQ(o.id_property, "outpost-id");
}

TEST(MqttOptions, EachRuleNamesItsField) {
    {
        MqttOptions o = valid();
        o.servers.clear();
        expect_invalid(o, "servers");
    }
    {
        MqttOptions o = valid();
        o.servers.push_back("http://example.com");
        expect_invalid(o, "servers[1]");
    }
    {
        MqttOptions o = valid();
        o.servers = {"tcp://:1883"};
        expect_invalid(o, "servers[0]");
    }
    {
        MqttOptions o = valid();
        o.client_id.clear();
        expect_invalid(o, "client_id");
    }
    {
        MqttOptions o = valid();
        o.client_id = std::string("a\0b", 3);
        expect_invalid(o, "client_id");
    }
    {
        MqttOptions o = valid();
        o.keepalive = std::chrono::seconds(70000);
        expect_invalid(o, "keepalive");
    }
    {
        MqttOptions o = valid();
        o.version = MqttVersion::v3_1_1;
        o.password = "secret";
        expect_invalid(o, "password");
    }
    {
        // MQTT 5 allows it; a fallback to 3.1.1 would not (connect() says so then).
        MqttOptions o = valid();
        o.version = MqttVersion::v5_or_3_1_1;
        o.password = "secret";
        EXPECT_NO_THROW(o.validate());
    }
    {
        MqttOptions o = valid();
        o.version = static_cast<MqttVersion>(3);  // MQTT 3.1: not supported
        expect_invalid(o, "version");
    }
    {
        MqttOptions o = valid();
        o.tls.key_file = "/tmp/key.pem";
        expect_invalid(o, "tls.key_file");
    }
    {
        MqttOptions o = valid();
        o.connect_timeout = std::chrono::milliseconds(200);
        expect_invalid(o, "connect_timeout");
    }
    {
        MqttOptions o = valid();
        o.id_property = std::string("id\0x", 4);
        expect_invalid(o, "id_property");
    }
    {
        // Sent in every PUBLISH: a name MQTT forbids would cost every publish.
        MqttOptions o = valid();
        o.id_property = "id\n";
        expect_invalid(o, "id_property: contains the control character U+000A at byte offset 2");
    }
    {
        MqttOptions o = valid();
        o.client_id = "device\x7f";
        expect_invalid(o, "client_id: contains the control character U+007F");
    }
    {
        MqttOptions o = valid();
        o.username = "alice\xef\xbf\xbe";
        expect_invalid(o, "username: contains the noncharacter U+FFFE");
    }
    {
        MqttOptions o = valid();
        o.will = MqttWill{"", "bye", 1, false};
        expect_invalid(o, "will.topic");
    }
    {
        MqttOptions o = valid();
        o.will = MqttWill{"devices/1/\tstatus", "bye", 1, false};
        expect_invalid(o, "will.topic: contains the control character U+0009");
    }
    {
        MqttOptions o = valid();
        o.will = MqttWill{"devices/+/status", "bye", 1, false};
        expect_invalid(o, "will.topic");
    }
    {
        MqttOptions o = valid();
        o.will = MqttWill{"devices/1/status", "bye", 3, false};
        expect_invalid(o, "will.qos");
    }
}

TEST(MqttOptions, PasswordWithoutUserIsFineOnMqtt5) {
    MqttOptions o = valid();
    o.password = "token";
    EXPECT_NO_THROW(o.validate());
}

TEST(MqttOptions, BrokerConstructorValidates) {
    MqttOptions o = valid();
    o.client_id.clear();
    EXPECT_THROW(MqttBroker broker(o), InvalidConfig);
}

TEST(MqttReasonCodes, RejectionsArePermanentOnlyWhereRetryCannotHelp) {
    using mqtt_detail::rejection;
    for (int code : {0x87, 0x90, 0x95, 0x99}) {
        const auto r = rejection(code, "PUBACK");
        EXPECT_EQ(r.status, PublishResult::Status::rejected);
        EXPECT_TRUE(r.permanent) << std::hex << code;
        EXPECT_EQ(r.reason_code, code);
    }
    for (int code : {0x80, 0x83, 0x89, 0x91, 0x97}) {
        const auto r = rejection(code, "PUBACK");
        EXPECT_FALSE(r.permanent) << std::hex << code;
    }
    EXPECT_EQ(rejection(0x87, "PUBACK").reason, "PUBACK reason 0x87 not authorized");
    EXPECT_EQ(rejection(0x97, "PUBREC").reason, "PUBREC reason 0x97 quota exceeded");
}

TEST(MqttReasonCodes, ConnackClassification) {
    using mqtt_detail::classify_connack;
    EXPECT_FALSE(classify_connack(4, false).transient);
    EXPECT_FALSE(classify_connack(5, false).transient);
    EXPECT_TRUE(classify_connack(3, false).transient);
    EXPECT_FALSE(classify_connack(0x86, true).transient);
    EXPECT_FALSE(classify_connack(0x87, true).transient);
    EXPECT_FALSE(classify_connack(0x8A, true).transient);
    EXPECT_TRUE(classify_connack(0x89, true).transient);
    EXPECT_TRUE(classify_connack(0x9F, true).transient);
    EXPECT_NE(classify_connack(0x87, true).reason.find("0x87 not authorized"), std::string::npos);
}

TEST(MqttReasonCodes, PahoPublishFailuresSplitIntoLostAndRejected) {
    using mqtt_detail::publish_failure;
    for (int rc : {-1, -3, -11}) {
        EXPECT_EQ(publish_failure(rc, "", "tcp://h:1").status,
                  PublishResult::Status::connection_lost)
            << rc;
    }
    const auto bad = publish_failure(-5, "bad UTF-8", "tcp://h:1");
    EXPECT_EQ(bad.status, PublishResult::Status::rejected);
    EXPECT_TRUE(bad.permanent);
}

TEST(MqttReasonCodes, TlsVerificationFailureIsNotTransient) {
    using mqtt_detail::classify_connect_error;
    const auto verify = classify_connect_error(
        -1, "TCP/TLS connect failure",
        "error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify "
        "failed");
    EXPECT_FALSE(verify.transient);
    EXPECT_NE(verify.reason.find("certificate verify failed"), std::string::npos);
    EXPECT_TRUE(classify_connect_error(-1, "TCP/TLS connect failure", "").transient);
    EXPECT_FALSE(classify_connect_error(-14, "bad protocol", "").transient);
}

TEST(MqttReasonCodes, LocalRefusalFollowsTheConnackAndTheStringRules) {
    using mqtt_detail::local_refusal;
    using mqtt_detail::ServerLimits;
    Record r;
    r.uid = "0190c0de-0000-7000-8000-000000000001";
    r.message = Message::text("t/ok", "x");
    r.message.qos = 2;
    r.message.retain = true;
    r.message.headers = {{"unit", "°C"}};
    const ServerLimits any;  // what a 3.1.1 CONNACK, or an MQTT 5 one that says nothing, leaves
    EXPECT_FALSE(local_refusal(r, any, true, "outpost-id"));
    EXPECT_FALSE(local_refusal(r, any, false, "outpost-id"));

    ServerLimits qos1;
    qos1.maximum_qos = 1;
    const auto qos = local_refusal(r, qos1, true, "outpost-id");
    ASSERT_TRUE(qos);
    EXPECT_EQ(qos->status, PublishResult::Status::rejected);
    EXPECT_TRUE(qos->permanent);
    EXPECT_EQ(qos->reason_code, 0x9B);
    r.message.qos = 1;
    EXPECT_FALSE(local_refusal(r, qos1, true, "outpost-id"));
    ServerLimits qos0;
    qos0.maximum_qos = 0;
    EXPECT_EQ(local_refusal(r, qos0, true, "outpost-id")->reason_code, 0x9B);

    ServerLimits no_retain;
    no_retain.retain_available = false;
    EXPECT_EQ(local_refusal(r, no_retain, true, "outpost-id")->reason_code, 0x9A);
    r.message.retain = false;
    EXPECT_FALSE(local_refusal(r, no_retain, true, "outpost-id"));

    Record topic = r;
    topic.message.topic = "t/\xc2\x9f";  // U+009F, the last C1 control
    EXPECT_EQ(local_refusal(topic, any, false, "")->reason_code, 0x90);
    topic.message.topic = "t/\xc2\xa0";  // U+00A0, allowed
    EXPECT_FALSE(local_refusal(topic, any, false, ""));
    topic.message.topic.assign(65536, 'a');
    EXPECT_EQ(local_refusal(topic, any, false, "")->reason_code, 0x90);

    // Properties exist on MQTT 5 only; with no id property the uid is not sent either.
    Record props = r;
    props.message.headers = {{"unit", "\xef\xb7\x90"}};  // U+FDD0
    EXPECT_EQ(local_refusal(props, any, true, "outpost-id")->reason_code, 0x81);
    EXPECT_FALSE(local_refusal(props, any, false, "outpost-id"));
    props.message.headers.clear();
    props.uid = "bad\x01";
    EXPECT_EQ(local_refusal(props, any, true, "outpost-id")->reason_code, 0x81);
    EXPECT_FALSE(local_refusal(props, any, true, ""));

    ServerLimits small;
    small.maximum_packet_size = 20;
    r.message.payload.resize(100);
    const auto big = local_refusal(r, small, true, "outpost-id");
    ASSERT_TRUE(big);
    EXPECT_EQ(big->reason_code, 0x95);
    EXPECT_EQ(big->reason, "packet too large: the server accepts at most 20 bytes");
}

// field() is the path validate() names after "MqttOptions.", without the text around it.
TEST(MqttOptions, InvalidConfigFieldIsThePathOfTheOption) {
    auto field_of = [](const MqttOptions& o) {
        try {
            o.validate();
        } catch (const InvalidConfig& e) {
            EXPECT_EQ(std::string(e.what()).rfind("MqttOptions." + e.field() + ": ", 0), 0u)
                << e.what();
            return e.field();
        }
        ADD_FAILURE() << "validate() accepted the options";
        return std::string();
    };
    MqttOptions o = valid();
    o.servers.push_back("127.0.0.1:1883");
    EXPECT_EQ(field_of(o), "servers[1]");
    o = valid();
    o.client_id.clear();
    EXPECT_EQ(field_of(o), "client_id");
    o = valid();
    o.tls.key_file = "k.pem";
    EXPECT_EQ(field_of(o), "tls.key_file");
}

TEST(MqttReasonCodes, Names) {
    EXPECT_STREQ(mqtt_reason_name(0x87), "not authorized");
    EXPECT_STREQ(mqtt_reason_name(0x97), "quota exceeded");
    EXPECT_STREQ(mqtt_reason_name(0x42), "unknown");
}

}  // namespace
}  // namespace outpost
