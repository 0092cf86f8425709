// What add() refuses, checked on the core alone (no database).
#include <gtest/gtest.h>

#include <string>

#include "outpost/error.hpp"
#include "outpost/outbox.hpp"

using namespace std::chrono_literals;
using outpost::InvalidMessage;
using outpost::Message;

namespace {

// The error text of validate(m), or "" when it passes.
std::string error_of(const Message& m, const outpost::OutboxOptions& o = {}) {
    try {
        outpost::validate(m, o);
        return "";
    } catch (const InvalidMessage& e) {
        return e.what();
    }
}

Message ok() {
    return Message::text("site/1/temp", "21.5");
}

}  // namespace

TEST(Validate, AcceptsAGoodMessage) {
    Message m = ok();
    m.key = "sensor-1";
    m.qos = 2;
    m.ttl = 0ms;
    m.headers = {{"unit", "°C"}};
    m.content_type = "text/plain";
    EXPECT_EQ(error_of(m), "");
}

TEST(Validate, EachBadInputNamesTheProblem) {
    struct Case {
        const char* name;
        Message m;
        const char* expected;
    };
    auto with = [](auto change) {
        Message m = ok();
        change(m);
        return m;
    };
    const Case cases[] = {
        {"empty topic", with([](Message& m) { m.topic.clear(); }), "topic is empty"},
        {"plus", with([](Message& m) { m.topic = "a/+/b"; }), "wildcard '+'"},
        {"hash", with([](Message& m) { m.topic = "a/#"; }), "wildcard '#'"},
        {"nul", with([](Message& m) { m.topic = std::string("a\0b", 3); }), "NUL"},
        {"long topic", with([](Message& m) { m.topic.assign(65536, 'a'); }), "65535"},
        {"utf8 topic", with([](Message& m) { m.topic = "a/\xff"; }), "topic is not valid UTF-8"},
        {"overlong", with([](Message& m) { m.topic = "a/\xc0\xaf"; }), "not valid UTF-8"},
        {"surrogate", with([](Message& m) { m.topic = "a/\xed\xa0\x80"; }), "not valid UTF-8"},
        {"truncated", with([](Message& m) { m.topic = "a/\xe2\x82"; }), "not valid UTF-8"},
        {"utf8 key", with([](Message& m) { m.key = "k\xfe"; }), "key is not valid UTF-8"},
        {"utf8 header", with([](Message& m) {
             m.headers = {{"n", "v\x80"}};
         }),
         "header 1 ('n') value is not valid UTF-8"},
        {"utf8 header name", with([](Message& m) {
             m.headers = {{"\xc3", "v"}};
         }),
         "header 1 name is not valid UTF-8"},
        {"empty header name", with([](Message& m) {
             m.headers = {{"", "v"}};
         }),
         "empty name"},
        {"qos 3", with([](Message& m) { m.qos = 3; }), "qos is 3"},
        {"qos -1", with([](Message& m) { m.qos = -1; }), "qos is -1"},
        {"negative ttl", with([](Message& m) { m.ttl = -5ms; }), "ttl is negative"},
        {"payload", with([](Message& m) { m.payload.resize((1 << 20) + 1); }),
         "payload is 1048577 bytes; the limit is 1048576"},
    };
    for (const Case& c : cases) {
        const std::string err = error_of(c.m);
        EXPECT_NE(err.find(c.expected), std::string::npos)
            << c.name << ": got '" << err << "', expected it to contain '" << c.expected << "'";
    }
}

TEST(Validate, PayloadLimitFollowsTheOptions) {
    outpost::OutboxOptions o;
    o.max_payload_bytes = 10;
    Message m = ok();
    m.payload.resize(10);
    EXPECT_EQ(error_of(m, o), "");
    m.payload.resize(11);
    EXPECT_NE(error_of(m, o), "");
    o.max_payload_bytes = 268435456;  // beyond MQTT's limit
    EXPECT_THROW(o.validate(), outpost::InvalidConfig);
}

TEST(Validate, DropOldestNeedsAQuota) {
    outpost::OutboxOptions o;
    o.when_full = outpost::WhenFull::drop_oldest;
    try {
        o.validate();
        FAIL() << "drop_oldest without max_pending was accepted";
    } catch (const outpost::InvalidConfig& e) {
        EXPECT_NE(std::string(e.what()).find("when_full"), std::string::npos) << e.what();
    }
    o.max_pending = 100;
    EXPECT_NO_THROW(o.validate());
    o.max_pending = 0;
    o.max_pending_bytes = 1 << 20;
    EXPECT_NO_THROW(o.validate());
}
