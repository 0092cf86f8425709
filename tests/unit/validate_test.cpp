// What add() refuses, checked on the core alone (no database). OutboxOptions, the SQLite side's
// settings, are checked in outbox_options_test.cpp.
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "outpost/dispatcher.hpp"
#include "outpost/error.hpp"
#include "outpost/message.hpp"
#include "outpost/retry_policy.hpp"
#include "validation_support.hpp"

using namespace std::chrono_literals;
using outpost::InvalidMessage;
using outpost::Message;

using outpost::testing::error_of;
using outpost::testing::FieldAndText;
using outpost::testing::invalid_config_of;

namespace {

Message ok() {
    return Message::text("site/1/temp", "21.5");
}

// `cp` encoded the way UTF-8 would encode it, surrogates included (as a CESU-8 encoder would).
std::string utf8(char32_t cp) {
    std::string out;
    const auto put = [&](unsigned v) { out.push_back(static_cast<char>(v)); };
    if (cp < 0x80) {
        put(cp);
    } else if (cp < 0x800) {
        put(0xC0 | (cp >> 6));
        put(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        put(0xE0 | (cp >> 12));
        put(0x80 | ((cp >> 6) & 0x3F));
        put(0x80 | (cp & 0x3F));
    } else {
        put(0xF0 | (cp >> 18));
        put(0x80 | ((cp >> 12) & 0x3F));
        put(0x80 | ((cp >> 6) & 0x3F));
        put(0x80 | (cp & 0x3F));
    }
    return out;
}

// A string with `cp` at byte offset 2.
std::string with_at_2(char32_t cp) {
    return "a/" + utf8(cp) + "/b";
}

}  // namespace

TEST(Validate, AcceptsAGoodMessage) {
    Message m = ok();
    m.key = "sensor-1";
    m.qos = 2;
    m.ttl = 1ms;
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
        {"plus", with([](Message& m) { m.topic = "a/+/b"; }),
         "the topic contains the wildcard '+' at byte offset 2, which a published topic must not "
         "have"},
        {"hash", with([](Message& m) { m.topic = "a/#"; }), "wildcard '#'"},
        {"nul", with([](Message& m) { m.topic = std::string("a\0b", 3); }),
         "the topic contains a NUL character (U+0000 at byte offset 1)"},
        {"long topic", with([](Message& m) { m.topic.assign(65536, 'a'); }), "65535"},
        {"utf8 topic", with([](Message& m) { m.topic = "a/\xff"; }), "topic is not valid UTF-8"},
        {"overlong", with([](Message& m) { m.topic = "a/\xc0\xaf"; }), "not valid UTF-8"},
        {"surrogate", with([](Message& m) { m.topic = "a/\xed\xa0\x80"; }),
         "not valid UTF-8: it encodes the surrogate U+D800 at byte offset 2"},
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
        {"negative ttl", with([](Message& m) { m.ttl = -5ms; }),
         "the ttl is -5 ms; it must be more than 0 and at most 100 years"},
        {"zero ttl", with([](Message& m) { m.ttl = 0ms; }), "leave ttl unset for never"},
        {"ttl a ms over the cap", with([](Message& m) { m.ttl = outpost::kMaxTtl + 1ms; }),
         "the ttl is 3155695200001 ms; it must be more than 0 and at most 100 years "
         "(3155695200000 ms): leave ttl unset for never"},
        {"ttl max", with([](Message& m) { m.ttl = std::chrono::milliseconds::max(); }),
         "leave ttl unset for never"},
        {"ttl in hours", with([](Message& m) { m.ttl = std::chrono::hours(1'000'000); }),
         "leave ttl unset for never"},
        {"payload", with([](Message& m) { m.payload.resize((1 << 20) + 1); }),
         "payload is 1048577 bytes; the limit is 1048576"},
    };
    for (const Case& c : cases) {
        const std::string err = error_of(c.m);
        EXPECT_NE(err.find(c.expected), std::string::npos)
            << c.name << ": got '" << err << "', expected it to contain '" << c.expected << "'";
    }
}

TEST(Validate, TtlUpToTheCapIsAccepted) {
    Message m = ok();
    const std::chrono::milliseconds ttls[] = {1ms, 90s, std::chrono::hours(24 * 365 * 99),
                                              outpost::kMaxTtl};
    for (auto ttl : ttls) {
        m.ttl = ttl;
        EXPECT_EQ(error_of(m), "") << ttl.count() << " ms";
    }
    EXPECT_EQ(outpost::kMaxTtl.count(), 3'155'695'200'000);  // 100 x 365.2425 days
}

// MQTT 5 section 1.5.4 (3.1.1 section 1.5.3): the code points a string must not carry, at the
// edges of each range, in every string that goes on the wire. mosquitto 2.0 drops the
// connection over any of them, so add() refuses them. Each row: the code point, and how the
// error names it.
struct Forbidden {
    char32_t cp;
    const char* text;
};
constexpr Forbidden kForbidden[] = {
    {0x0001, "the control character U+0001"},  // first C0 control after NUL
    {0x0009, "the control character U+0009"},  // TAB
    {0x000A, "the control character U+000A"},  // newline
    {0x001F, "the control character U+001F"},  // last C0 control
    {0x007F, "the control character U+007F"},  // DEL, first of the second range
    {0x0080, "the control character U+0080"},  // first C1 control (two bytes)
    {0x009F, "the control character U+009F"},  // last C1 control
    {0xD800, "the surrogate U+D800"},          // first surrogate
    {0xDFFF, "the surrogate U+DFFF"},          // last surrogate
    {0xFDD0, "the noncharacter U+FDD0"},       // first of the noncharacter block
    {0xFDEF, "the noncharacter U+FDEF"},       // last of it
    {0xFFFE, "the noncharacter U+FFFE"},       // plane 0
    {0xFFFF, "the noncharacter U+FFFF"},
    {0x1FFFE, "the noncharacter U+01FFFE"},  // plane 1 (four bytes)
    {0x1FFFF, "the noncharacter U+01FFFF"},
    {0x10FFFE, "the noncharacter U+10FFFE"},  // plane 16, the last
    {0x10FFFF, "the noncharacter U+10FFFF"},
};
// Their neighbours, which MQTT allows.
constexpr char32_t kAllowed[] = {
    0x0020,    // space, after the C0 controls
    0x007E,    // '~', before DEL
    0x00A0,    // no-break space, after the C1 controls
    0xD7FF,    // before the surrogates
    0xE000,    // after them (private use)
    0xFDCF,    // before U+FDD0
    0xFDF0,    // after U+FDEF
    0xFFFD,    // replacement character, before U+FFFE
    0x10000,   // first of plane 1
    0x1FFFD,   // before U+1FFFE
    0x20000,   // after U+1FFFF
    0x10FFFD,  // the last code point allowed
};

TEST(Validate, CodePointsMqttForbidsAreRefusedInEveryStringItSends) {
    struct Field {
        const char* name;
        void (*put)(Message&, const std::string&);
        const char* subject;  // how the error names the field
    };
    const Field fields[] = {
        {"topic", [](Message& m, const std::string& s) { m.topic = s; }, "the topic"},
        {"header name",
         [](Message& m, const std::string& s) {
             m.headers = {{"ok", "fine"}, {s, "v"}};
         },
         "header 2 name"},
        {"header value",
         [](Message& m, const std::string& s) {
             m.headers = {{"unit", s}};
         },
         "header 1 ('unit') value"},
        {"content type", [](Message& m, const std::string& s) { m.content_type = s; },
         "the content type"},
    };
    for (const Field& f : fields) {
        for (const Forbidden& row : kForbidden) {
            Message m = ok();
            f.put(m, with_at_2(row.cp));
            const std::string err = error_of(m);
            const bool surrogate = row.cp >= 0xD800 && row.cp <= 0xDFFF;
            const std::string expected =
                std::string(f.subject) +
                (surrogate ? " is not valid UTF-8: it encodes " : " contains ") + row.text +
                " at byte offset 2";
            EXPECT_NE(err.find(expected), std::string::npos)
                << f.name << ", U+" << std::hex << static_cast<unsigned>(row.cp) << ": got '" << err
                << "', expected it to contain '" << expected << "'";
        }
        for (char32_t cp : kAllowed) {
            Message m = ok();
            f.put(m, with_at_2(cp));
            EXPECT_EQ(error_of(m), "") << f.name << ", U+" << std::hex << static_cast<unsigned>(cp);
        }
    }
}

TEST(Validate, ErrorsNameTheFirstFaultByOffset) {
    Message m = ok();
    m.topic = "a\tb\x01c\xff";
    EXPECT_EQ(error_of(m),
              "the topic contains the control character U+0009 at byte offset 1, which MQTT does "
              "not allow");
    m.topic = "abc\xff\t";
    EXPECT_EQ(error_of(m),
              "the topic is not valid UTF-8 (byte 0xFF at offset 3 starts no valid sequence)");
    m.topic = "a/\xf4\x90\x80\x80";  // U+110000: above the last code point
    EXPECT_EQ(error_of(m),
              "the topic is not valid UTF-8 (byte 0xF4 at offset 2 starts no valid sequence)");
}

TEST(Validate, TheKeyIsNeverSentSoOnlyUtf8AndNulMatter) {
    Message m = ok();
    for (char32_t cp : {char32_t{0x09}, char32_t{0x7F}, char32_t{0x85}, char32_t{0xFFFF}}) {
        m.key = "k" + utf8(cp);
        EXPECT_EQ(error_of(m), "") << "U+" << std::hex << static_cast<unsigned>(cp);
    }
    m.key = std::string("k\0", 2);
    EXPECT_NE(error_of(m).find("the key contains a NUL character"), std::string::npos);
    m.key = "k" + utf8(0xD800);
    EXPECT_NE(error_of(m).find("the key is not valid UTF-8: it encodes the surrogate U+D800"),
              std::string::npos);
}

TEST(Validate, PayloadLimitIsTheMessageLimitAtItsEdge) {
    outpost::MessageLimits limits;
    Message m = ok();
    m.payload.resize(limits.max_payload_bytes);  // the default, 1 MiB
    EXPECT_EQ(error_of(m, limits), "");
    m.payload.push_back(std::byte{'x'});
    EXPECT_NE(error_of(m, limits).find("the payload is 1048577 bytes; the limit is 1048576"),
              std::string::npos)
        << error_of(m, limits);
    limits.max_payload_bytes = 1;
    m.payload.assign(1, std::byte{'a'});
    EXPECT_EQ(error_of(m, limits), "");
    m.payload.push_back(std::byte{'b'});
    EXPECT_NE(error_of(m, limits), "");
    limits.max_payload_bytes = 0;
    m.payload.clear();
    EXPECT_EQ(error_of(m, limits), "");
}

// The InvalidConfig of `validate()`: its field() and what(); fails the test when nothing throws.
// OutboxOptions (the SQLite side) names its fields too: outbox_options_test.cpp.
TEST(InvalidConfigField, NamesTheFieldAtFaultAndKeepsTheText) {
    outpost::RetryPolicy retry;
    retry.jitter = 2.0;
    EXPECT_EQ(invalid_config_of(retry),
              (FieldAndText{"jitter", "RetryPolicy::jitter must be within [0, 1]"}));

    outpost::DispatcherOptions dispatcher;
    dispatcher.window = 0;
    EXPECT_EQ(invalid_config_of(dispatcher).first, "window");
    dispatcher = {};
    dispatcher.ack_timeout = 0ms;
    EXPECT_EQ(invalid_config_of(dispatcher),
              (FieldAndText{"ack_timeout", "DispatcherOptions::ack_timeout must be positive"}));
    dispatcher = {};
    dispatcher.reconnect_jitter = 1.01;
    EXPECT_EQ(invalid_config_of(dispatcher),
              (FieldAndText{"reconnect_jitter",
                            "DispatcherOptions::reconnect_jitter must be within [0, 1]"}));
    dispatcher = {};
    dispatcher.retry.max_backoff = std::chrono::hours(24 * 365 * 200);
    EXPECT_EQ(invalid_config_of(dispatcher).first, "retry.max_backoff");
}

TEST(InvalidConfigField, EmptyWhenTheThrowSiteNamesNoField) {
    const outpost::InvalidConfig e("something is wrong");
    EXPECT_EQ(e.field(), "");
    EXPECT_STREQ(e.what(), "something is wrong");
    EXPECT_EQ(e.kind(), outpost::ErrorKind::invalid_config);
}
