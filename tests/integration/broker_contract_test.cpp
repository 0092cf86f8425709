// The MessageBroker contract (include/outpost/broker.hpp), one typed suite run against every
// implementation and every broker we support: FakeBroker (which the dispatcher's unit tests
// trust), and MqttBroker on mosquitto over MQTT 5, on mosquitto over MQTT 3.1.1, on aedes and on
// a RabbitMQ node (both MQTT 3.1.1 only). When the fake drifts from the real thing, or a broker
// from what we document about it, this suite says where.
//
// Each side DECLARES what its broker can do (Capabilities: MQTT 5, QoS 2, what it does with a
// publish it refuses, the Receive Maximum it announces, how it answers an MQTT 5 CONNECT). A test
// that needs a capability checks it where it is declared and, where it is not, checks what the
// broker does instead (the behaviour the README documents): no test is skipped by hand. The
// declarations themselves are checked on the wire: each real broker sits behind a loopback MQTT
// proxy (tools/testkit/mqtt_proxy.hpp), which shows the protocol level of the CONNECT, the
// CONNACK's Receive Maximum, the packets of the QoS 2 handshake and what a PUBLISH carried. The
// same proxy breaks the world for every real broker alike (refuse connections = unreachable, hold
// packets = no acknowledgement comes, cut = the connection dies), so a broker starts once per suite
// (RabbitMQ takes 10-14 s) and the subscriber that judges arrival connects to the broker
// directly, unaffected by the breaks.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "completions.hpp"
#include "connection_log.hpp"
#include "fake_broker.hpp"
#include "outpost/error.hpp"
#include "outpost/mqtt_broker.hpp"
#include "subscriber.hpp"
#include "testkit/mosquitto.hpp"
#include "testkit/mqtt_proxy.hpp"
#if OUTPOST_CONTRACT_AEDES
#include "testkit/aedes.hpp"
#endif
#if OUTPOST_CONTRACT_RABBITMQ
#include "testkit/rabbitmq.hpp"
#endif

namespace outpost {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using testing::Completions;
using testing::Direction;
using testing::MqttProxy;
using testing::WirePacket;
namespace pkt = testing::mqtt_packet;

// What a broker does with a publish to a topic it refuses (its ACL denies it).
enum class Refusal {
    reason_code,        // MQTT 5: the PUBACK carries 0x87: the publish completes as rejected
    acked_not_routed,   // acknowledged as usual (delivered), but nobody receives it
    connection_closed,  // the broker closes the connection: connection_lost, like a drop
};

// How a broker answers an MQTT 5 CONNECT (MqttBroker's default version asks for MQTT 5 first).
enum class Mqtt5Connect {
    accepted,         // it speaks MQTT 5
    refused_version,  // CONNACK "unacceptable protocol version" (the 3.1.1 return code 1)
    // It closes the socket without a CONNACK (RabbitMQ 3.10). MqttBroker confirms it with an
    // MQTT 5 CONNECT of its own, then falls back as for refused_version.
    closed,
};

struct Capabilities {
    // MQTT 5: headers travel as user properties, content type as content type, and the CONNECT
    // says protocol level 5. false: MQTT 3.1.1 (level 4): only topic, payload, qos and retain.
    bool mqtt5 = false;
    // QoS 2: PUBREC, PUBREL, and the publish completes on PUBCOMP. false: the broker takes a
    // QoS 2 publish as QoS 1 (answers PUBACK, forwards at QoS 1).
    bool qos2 = false;
    Refusal refusal = Refusal::acked_not_routed;
    // The Receive Maximum the CONNACK announces; 0 = none (MQTT 3.1.1 has none).
    int receive_maximum = 0;
    Mqtt5Connect mqtt5_connect = Mqtt5Connect::accepted;
};

// What arrived at the far side.
struct Arrival {
    std::string topic;
    std::string payload;
    int qos = 0;
    std::vector<std::pair<std::string, std::string>> headers;
    std::optional<std::string> content_type;
};

int g_test_number = 0;  // each test gets its own topics on a broker shared by the suite

// Each side gives the suite a broker and the means to break its world.
//   caps                the broker's declared capabilities
//   set_up_suite()      starts what the tests of this side share (a broker); tear_down_suite()
//   broker()            the MessageBroker under test
//   root()              the topic prefix of this test: everything it publishes is under it
//   denied_topic()      a topic under root() that the broker refuses
//   make_unreachable()  the next connect() cannot reach anything
//   hold_acks()         publishes from now on get no answer (until the connection breaks)
//   break_connection()  the connection dies under the broker
//   restore()           reachable again, answering again
//   received()          what reached the far side so far, in arrival order
//   wire()              the proxy the broker's connection goes through; nullptr for the fake
//   broker_at_default_version()  a second broker, MqttOptions::version left at its default
//   log()               the broker's log, for failure messages

class FakeSide {
  public:
    static constexpr const char* name = "FakeBroker";
    static constexpr Capabilities caps{.mqtt5 = true,
                                       .qos2 = true,
                                       .refusal = Refusal::reason_code,
                                       .receive_maximum = 0,
                                       .mqtt5_connect = Mqtt5Connect::accepted};
    static void set_up_suite() {}
    static void tear_down_suite() {}
    static std::string start_error() { return {}; }

    FakeSide() { fake_.deny_topic(denied_topic()); }
    MessageBroker& broker() { return fake_; }
    const std::string& root() const { return root_; }
    std::string denied_topic() const { return root_ + "/denied"; }
    void make_unreachable() { fake_.set_reachable(false); }
    void hold_acks() { fake_.set_auto_ack(false); }
    void break_connection() { fake_.drop_connection("the fake's connection dropped"); }
    void restore() {
        fake_.set_reachable(true);
        fake_.set_auto_ack(true);
    }
    // The fake's far side is its log: everything it was handed while connected and did not
    // refuse.
    std::vector<Arrival> received() {
        std::vector<Arrival> out;
        auto all = fake_.log();
        const auto more = second_.log();
        all.insert(all.end(), more.begin(), more.end());
        for (const Record& r : all) {
            if (r.message.topic == denied_topic()) {
                continue;
            }
            Arrival a{r.message.topic,
                      std::string(r.message.payload_view()),
                      r.message.qos,
                      {},
                      r.message.content_type};
            for (const Header& h : r.message.headers) {
                a.headers.emplace_back(h.name, h.value);
            }
            out.push_back(std::move(a));
        }
        return out;
    }
    MqttProxy* wire() { return nullptr; }
    // The fake has no protocol versions: a second fake, whose log is part of received().
    testing::FakeBroker* broker_at_default_version() { return &second_; }
    std::string log() const { return "(the fake keeps no log)"; }

  private:
    std::string root_ = "contract/" + std::to_string(++g_test_number);
    testing::FakeBroker fake_;
    testing::FakeBroker second_;
};

// A real broker shared by the tests of one side, behind a proxy per test. Traits give the
// broker (World), its capabilities and how to start it.
template <typename Traits>
class RealSide {
  public:
    static constexpr const char* name = Traits::name;
    static constexpr Capabilities caps = Traits::caps;
    static void set_up_suite() {
        try {
            world_ = Traits::start();
        } catch (const std::exception& e) {
            error_ = e.what();
        }
    }
    static void tear_down_suite() { world_.reset(); }
    static std::string start_error() {
        return world_ ? std::string() : "the broker did not start: " + error_;
    }

    RealSide()
        : proxy_(Traits::port(*world_)),
          sub_(Traits::uri(*world_), root_ + "/#", 2, Traits::subscriber_version),
          broker_(options(proxy_.uri())) {}
    MessageBroker& broker() { return broker_; }
    const std::string& root() const { return root_; }
    std::string denied_topic() const { return root_ + "/denied"; }
    void make_unreachable() { proxy_.refuse(); }
    void hold_acks() { proxy_.hold(); }
    void break_connection() { proxy_.cut(); }
    void restore() {
        proxy_.release();
        proxy_.accept();
    }
    std::vector<Arrival> received() {
        std::vector<Arrival> out;
        for (const auto& m : sub_.messages()) {
            out.push_back({m.topic, m.payload, m.qos, {}, m.content_type});
            for (const auto& [k, v] : m.user_properties) {
                if (k != "outpost-id") {
                    out.back().headers.emplace_back(k, v);
                }
            }
        }
        return out;
    }
    MqttProxy* wire() { return &proxy_; }
    // A second MqttBroker through the same proxy with MqttOptions::version left at its default.
    std::unique_ptr<MqttBroker> broker_at_default_version() {
        MqttOptions o;
        o.servers = {proxy_.uri()};
        o.client_id = options(proxy_.uri()).client_id + "-default";
        o.connect_timeout = 5s;
        return std::make_unique<MqttBroker>(o);
    }
    std::string log() const { return Traits::log(*world_); }

  private:
    static MqttOptions options(const std::string& uri) {
        MqttOptions o;
        o.servers = {uri};
        o.client_id =
            "outpost-contract-" + std::to_string(::getpid()) + "-" + std::to_string(g_test_number);
        o.version = Traits::version;
        // Not shorter: paho-c's network thread can take a second to look at a new socket (see
        // tests/support/subscriber.hpp), so a 1 s budget failed "TCP connect timeout" on a loaded
        // or emulated machine. The unreachable test still ends in time: connect(2s) caps it.
        o.connect_timeout = 5s;
        return o;
    }

    inline static std::unique_ptr<typename Traits::World> world_;
    inline static std::string error_;
    std::string root_ = "contract/" + std::to_string(++g_test_number);
    MqttProxy proxy_;
    testing::Subscriber sub_;
    MqttBroker broker_;
};

// mosquitto's ACL: everything under contract/ except the denied topic of each test.
constexpr const char* kMosquittoAcl = "topic readwrite contract/#\ntopic deny contract/+/denied\n";

struct MosquittoMqtt5 {
    static constexpr const char* name = "MosquittoMqtt5";
    // A small max_inflight_messages, announced as the CONNACK's Receive Maximum, so the tests
    // hand over more publishes at once than the broker lets be in flight.
    static constexpr Capabilities caps{.mqtt5 = true,
                                       .qos2 = true,
                                       .refusal = Refusal::reason_code,
                                       .receive_maximum = 5,
                                       .mqtt5_connect = Mqtt5Connect::accepted};
    static constexpr MqttVersion version = MqttVersion::v5;
    static constexpr int subscriber_version = 5;
    using World = testing::Mosquitto;
    static std::unique_ptr<World> start() {
        testing::MosquittoOptions o;
        o.acl = kMosquittoAcl;
        o.extra_config = "max_inflight_messages 5\n";
        return std::make_unique<World>(o);
    }
    static int port(const World& w) { return w.port(); }
    static std::string uri(const World& w) { return w.uri(); }
    static std::string log(const World& w) { return w.log(); }
};

struct MosquittoMqtt311 {
    static constexpr const char* name = "MosquittoMqtt311";
    // The same configuration as the MQTT 5 side: on 3.1.1 there is no Receive Maximum to
    // announce and no reason code to refuse with (mosquitto acknowledges a denied publish and
    // drops it).
    static constexpr Capabilities caps{.mqtt5 = false,
                                       .qos2 = true,
                                       .refusal = Refusal::acked_not_routed,
                                       .receive_maximum = 0,
                                       .mqtt5_connect = Mqtt5Connect::accepted};
    static constexpr MqttVersion version = MqttVersion::v3_1_1;
    // An MQTT 5 subscriber: it would show user properties and a content type if any arrived.
    static constexpr int subscriber_version = 5;
    using World = testing::Mosquitto;
    static std::unique_ptr<World> start() { return MosquittoMqtt5::start(); }
    static int port(const World& w) { return w.port(); }
    static std::string uri(const World& w) { return w.uri(); }
    static std::string log(const World& w) { return w.log(); }
};

#if OUTPOST_CONTRACT_AEDES
struct AedesMqtt311 {
    static constexpr const char* name = "Aedes";
    // aedes 1.2.0 speaks MQTT 3.1/3.1.1 only; its authorizePublish refusal closes the
    // connection (it has no reason code to send).
    static constexpr Capabilities caps{.mqtt5 = false,
                                       .qos2 = true,
                                       .refusal = Refusal::connection_closed,
                                       .receive_maximum = 0,
                                       .mqtt5_connect = Mqtt5Connect::refused_version};
    static constexpr MqttVersion version = MqttVersion::v3_1_1;
    static constexpr int subscriber_version = 4;
    using World = testing::Aedes;
    static std::unique_ptr<World> start() {
        testing::AedesOptions o;
        o.deny_publish = {"contract/+/denied"};
        return std::make_unique<World>(o);
    }
    static int port(const World& w) { return w.port(); }
    static std::string uri(const World& w) { return w.uri(); }
    static std::string log(const World& w) { return w.log(); }
};
#endif

#if OUTPOST_CONTRACT_RABBITMQ
struct RabbitMqMqtt311 {
    static constexpr const char* name = "RabbitMQ";
    // RabbitMQ 3.10's MQTT plugin: MQTT 3.1.1 only, QoS 2 taken as QoS 1, a publish its topic
    // permissions refuse closes the connection.
    static constexpr Capabilities caps{.mqtt5 = false,
                                       .qos2 = false,
                                       .refusal = Refusal::connection_closed,
                                       .receive_maximum = 0,
                                       .mqtt5_connect = Mqtt5Connect::closed};
    static constexpr MqttVersion version = MqttVersion::v3_1_1;
    static constexpr int subscriber_version = 4;
    using World = testing::RabbitCluster;
    static std::unique_ptr<World> start() {
        auto w = std::make_unique<World>(1);
        // RabbitMQ's ACL for MQTT: topic permissions on the amq.topic exchange, matched against
        // the routing key (MQTT '/' becomes '.'). Everything but each test's denied topic.
        w->rabbitmqctl(0, {"set_topic_permissions", "-p", "/", "guest", "amq.topic",
                           "^(?!contract\\.[^.]+\\.denied$).*", ".*"});
        return w;
    }
    static int port(const World& w) { return w.mqtt_port(0); }
    static std::string uri(const World& w) { return w.uri(0); }
    static std::string log(const World& w) { return w.log(0); }
};
#endif

Record make_record(std::int64_t id, std::string topic, std::string payload) {
    Record r;
    r.id = id;
    r.uid = "contract-" + std::to_string(id);
    r.message = Message::text(std::move(topic), std::move(payload));
    return r;
}

bool eventually(const std::function<bool()>& check, std::chrono::milliseconds timeout) {
    const auto until = steady::now() + timeout;
    while (!check()) {
        if (steady::now() > until) {
            return false;
        }
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

// The protocol level byte of a CONNECT (4 = MQTT 3.1.1, 5 = MQTT 5).
int protocol_level(const WirePacket& connect) {
    const std::string b = connect.body();
    return b.size() > 6 ? static_cast<unsigned char>(b[6]) : -1;
}

// The Receive Maximum property of an MQTT 5 CONNACK; nullopt when absent (or not MQTT 5).
std::optional<int> receive_maximum(const WirePacket& connack) {
    const std::string b = connack.body();
    std::size_t i = 2;
    std::size_t length = 0;
    std::size_t shift = 0;
    while (i < b.size()) {
        const auto c = static_cast<unsigned char>(b[i++]);
        length |= static_cast<std::size_t>(c & 0x7F) << shift;
        shift += 7;
        if ((c & 0x80) == 0) {
            break;
        }
    }
    const std::size_t end = std::min(b.size(), i + length);
    auto u16 = [&](std::size_t at) {
        return (static_cast<unsigned char>(b[at]) << 8) | static_cast<unsigned char>(b[at + 1]);
    };
    while (i < end) {
        const int id = static_cast<unsigned char>(b[i++]);
        switch (id) {
            case 0x21:
                return u16(i);
            case 0x13:
            case 0x22:
                i += 2;
                break;
            case 0x11:
            case 0x27:
                i += 4;
                break;
            case 0x12:
            case 0x15:
            case 0x16:
            case 0x1A:
            case 0x1C:
            case 0x1F:
                i += 2 + static_cast<std::size_t>(u16(i));
                break;
            case 0x26:
                i += 2 + static_cast<std::size_t>(u16(i));
                i += 2 + static_cast<std::size_t>(u16(i));
                break;
            default:  // the one-byte properties (0x24, 0x25, 0x28, 0x29, 0x2A)
                i += 1;
                break;
        }
    }
    return std::nullopt;
}

// The most QoS 1/2 PUBLISHes the client had sent on one connection that the broker had not
// acknowledged yet, as the proxy saw them.
int max_in_flight(const MqttProxy& wire) {
    std::vector<std::pair<Direction, WirePacket>> all;
    for (Direction d : {Direction::to_broker, Direction::to_client}) {
        for (WirePacket& p : wire.packets(d)) {
            all.emplace_back(d, std::move(p));
        }
    }
    std::sort(all.begin(), all.end(),
              [](const auto& a, const auto& b) { return a.second.seq < b.second.seq; });
    std::map<int, std::set<int>> open;  // connection -> packet ids in flight
    std::size_t most = 0;
    for (const auto& [direction, p] : all) {
        if (!p.packet_id()) {
            continue;
        }
        if (direction == Direction::to_broker && p.type == pkt::publish) {
            open[p.connection].insert(*p.packet_id());
        } else if (direction == Direction::to_client &&
                   (p.type == pkt::puback || p.type == pkt::pubcomp)) {
            open[p.connection].erase(*p.packet_id());
        }
        most = std::max(most, open[p.connection].size());
    }
    return static_cast<int>(most);
}

template <typename Side>
class BrokerContract : public ::testing::Test {
  public:
    static void SetUpTestSuite() { Side::set_up_suite(); }
    static void TearDownTestSuite() { Side::tear_down_suite(); }

  protected:
    void SetUp() override {
        const std::string error = Side::start_error();
        ASSERT_TRUE(error.empty()) << error;
        side_ = std::make_unique<Side>();
        side().broker().set_connection_handler(changes_.handler());
    }
    void TearDown() override {
        if (HasFailure() && side_) {
            // The end of it: RabbitMQ's boot alone logs some 30 KB.
            const std::string log = side_->log();
            std::cerr << "broker log (end):\n"
                      << log.substr(log.size() > 8000 ? log.size() - 8000 : 0) << "\n";
        }
        side_.reset();
    }
    Side& side() { return *side_; }
    MessageBroker& broker() { return side_->broker(); }
    static constexpr Capabilities caps() { return Side::caps; }
    // A record on this test's topic root/suffix (default: one of three topics).
    Record record(std::int64_t id, std::string payload, std::optional<std::string> suffix = {}) {
        return make_record(id, side().root() + "/" + suffix.value_or(std::to_string(id % 3)),
                           std::move(payload));
    }
    std::vector<std::string> received_payloads() {
        std::vector<std::string> out;
        for (const Arrival& a : side().received()) {
            out.push_back(a.payload);
        }
        return out;
    }

    // Declared first, destroyed last: the broker's destructor may still complete publishes and
    // tell the handler.
    Completions done_;
    testing::ConnectionLog changes_;
    std::unique_ptr<Side> side_;
};

using Sides = ::testing::Types<FakeSide, RealSide<MosquittoMqtt5>, RealSide<MosquittoMqtt311>
#if OUTPOST_CONTRACT_AEDES
                               ,
                               RealSide<AedesMqtt311>
#endif
#if OUTPOST_CONTRACT_RABBITMQ
                               ,
                               RealSide<RabbitMqMqtt311>
#endif
                               >;
class SideNames {
  public:
    template <typename T>
    static std::string GetName(int) {
        return T::name;
    }
};
TYPED_TEST_SUITE(BrokerContract, Sides, SideNames);

TYPED_TEST(BrokerContract, EveryPublishCompletesOnceAndArrives) {
    this->broker().connect(5s);
    EXPECT_TRUE(this->broker().connected());
    EXPECT_TRUE(this->changes_.wait_for(true, 2s)) << "the handler is told about a connect";
    constexpr int kTotal = 50;
    std::set<std::string> sent;
    for (int i = 1; i <= kTotal; ++i) {
        const std::string payload = "reading " + std::to_string(i);
        sent.insert(payload);
        this->broker().publish(this->record(i, payload), this->done_.callback_for(i));
    }
    ASSERT_TRUE(this->done_.wait_for(kTotal, 10s));
    EXPECT_EQ(this->done_.count(PublishResult::Status::delivered), std::size_t{kTotal});
    EXPECT_TRUE(this->done_.repeated().empty());
    ASSERT_TRUE(eventually([&] { return this->side().received().size() >= kTotal; }, 10s));
    const auto got = this->received_payloads();
    EXPECT_EQ(std::set<std::string>(got.begin(), got.end()), sent);
}

TYPED_TEST(BrokerContract, PublishCopiesTheRecordBeforeReturning) {
    this->broker().connect(5s);
    {
        Record r = this->record(1, "original");
        this->broker().publish(r, this->done_.callback_for(1));
        r.message.payload.assign(8, std::byte{'X'});  // the caller reuses its record at once
    }
    ASSERT_TRUE(this->done_.wait_for(1, 10s));
    ASSERT_TRUE(eventually([&] { return !this->side().received().empty(); }, 10s));
    EXPECT_EQ(this->received_payloads().front(), "original");
}

TYPED_TEST(BrokerContract, PublishBeforeConnectCompletesAsLostOrThrows) {
    bool threw = false;
    try {
        this->broker().publish(this->record(1, "too early"), this->done_.callback_for(1));
    } catch (const BrokerError&) {
        threw = true;
    }
    if (!threw) {
        ASSERT_TRUE(this->done_.wait_for(1, 5s));
        EXPECT_EQ(this->done_.count(PublishResult::Status::connection_lost), 1u);
    }
    EXPECT_FALSE(this->broker().connected());
}

TYPED_TEST(BrokerContract, UnreachableConnectThrowsATransientBrokerErrorInTime) {
    this->side().make_unreachable();
    const auto t0 = steady::now();
    try {
        this->broker().connect(2s);
        FAIL() << "connected to nothing";
    } catch (const BrokerError& e) {
        EXPECT_TRUE(e.transient()) << e.what();
        EXPECT_FALSE(std::string(e.what()).empty());
    }
    EXPECT_LT(steady::now() - t0, 3s);
    EXPECT_FALSE(this->broker().connected());
}

TYPED_TEST(BrokerContract, ALostConnectionCompletesWhatIsOutstandingAsLost) {
    this->broker().connect(5s);
    const std::size_t before = this->changes_.size();
    this->side().hold_acks();
    constexpr int kTotal = 20;
    for (int i = 1; i <= kTotal; ++i) {
        this->broker().publish(this->record(i, "held " + std::to_string(i)),
                               this->done_.callback_for(i));
    }
    this->side().break_connection();
    ASSERT_TRUE(this->done_.wait_for(kTotal, 10s));
    EXPECT_EQ(this->done_.count(PublishResult::Status::connection_lost), std::size_t{kTotal});
    EXPECT_TRUE(this->done_.repeated().empty());
    const auto reason = this->changes_.wait_for(false, 10s, before);
    ASSERT_TRUE(reason.has_value()) << "the handler is told about the loss";
    EXPECT_FALSE(reason->empty());
    EXPECT_TRUE(eventually([&] { return !this->broker().connected(); }, 5s));

    // And it comes back: connect again, publish again, and the far side sees it.
    this->side().restore();
    this->broker().connect(5s);
    this->broker().publish(this->record(kTotal + 1, "after"), this->done_.callback_for(kTotal + 1));
    ASSERT_TRUE(this->done_.wait_for(kTotal + 1, 10s));
    EXPECT_EQ(this->done_.count(PublishResult::Status::delivered), 1u);
    EXPECT_TRUE(eventually(
        [&] {
            const auto got = this->received_payloads();
            return std::find(got.begin(), got.end(), "after") != got.end();
        },
        10s));
}

TYPED_TEST(BrokerContract, DisconnectTellsTheHandlerAndMayBeRepeated) {
    this->broker().connect(5s);
    this->broker().publish(this->record(1, "last words"), this->done_.callback_for(1));
    ASSERT_TRUE(this->done_.wait_for(1, 10s));
    const std::size_t before = this->changes_.size();
    this->broker().disconnect(1s);
    EXPECT_FALSE(this->broker().connected());
    EXPECT_TRUE(this->changes_.wait_for(false, 2s, before).has_value());
    this->broker().disconnect(1s);  // twice is fine, and never throws
    EXPECT_FALSE(this->broker().connected());
    this->broker().connect(5s);  // and connecting again works
    EXPECT_TRUE(this->broker().connected());
}

// --- capabilities ---

// mqtt5: headers and content type arrive; MQTT 3.1.1: they are dropped (not even sent), while
// topic, payload and qos arrive. The CONNECT's protocol level is the declared one.
TYPED_TEST(BrokerContract, HeadersAndContentTypeTravelOnlyOnMqtt5) {
    this->broker().connect(5s);
    Record with = this->record(1, "with headers", "h");
    with.message.headers = {{"sensor", "hall-7"}, {"unit", "celsius"}};
    with.message.content_type = "application/x-contract";
    Record at_most_once = this->record(2, "qos zero", "z");
    at_most_once.message.qos = 0;
    at_most_once.message.headers = {{"sensor", "hall-7"}};
    this->broker().publish(with, this->done_.callback_for(1));
    this->broker().publish(at_most_once, this->done_.callback_for(2));
    ASSERT_TRUE(this->done_.wait_for(2, 10s));
    EXPECT_EQ(this->done_.count(PublishResult::Status::delivered), 2u);
    ASSERT_TRUE(eventually([&] { return this->side().received().size() >= 2; }, 10s));

    std::map<std::string, Arrival> got;
    for (const Arrival& a : this->side().received()) {
        got[a.payload] = a;
    }
    ASSERT_EQ(got.count("with headers"), 1u);
    ASSERT_EQ(got.count("qos zero"), 1u);
    EXPECT_EQ(got["with headers"].topic, with.message.topic);
    EXPECT_EQ(got["with headers"].qos, 1);
    EXPECT_EQ(got["qos zero"].topic, at_most_once.message.topic);
    EXPECT_EQ(got["qos zero"].qos, 0);
    if constexpr (TestFixture::caps().mqtt5) {
        const std::vector<std::pair<std::string, std::string>> headers = {{"sensor", "hall-7"},
                                                                          {"unit", "celsius"}};
        EXPECT_EQ(got["with headers"].headers, headers);
        EXPECT_EQ(got["with headers"].content_type, "application/x-contract");
    } else {
        EXPECT_TRUE(got["with headers"].headers.empty());
        EXPECT_FALSE(got["with headers"].content_type.has_value());
    }
    if (MqttProxy* wire = this->side().wire()) {
        const auto up = wire->packets(Direction::to_broker);
        const auto connect = std::find_if(up.begin(), up.end(),
                                          [](const auto& p) { return p.type == pkt::connect; });
        ASSERT_NE(connect, up.end());
        EXPECT_EQ(protocol_level(*connect), TestFixture::caps().mqtt5 ? 5 : 4);
        for (const WirePacket& p : up) {
            if (p.type == pkt::publish) {
                EXPECT_EQ(p.bytes.find("hall-7") != std::string::npos, TestFixture::caps().mqtt5)
                    << "a header in the PUBLISH for " << p.topic().value_or("?");
            }
        }
    }
}

// qos2: a QoS 2 publish completes once, on PUBCOMP (not on PUBREC), and arrives once at QoS 2.
// The proxy keeps the PUBCOMP from the client to show that the publish waits for it. Without
// qos2 the broker downgrades it to QoS 1, which the test checks instead.
TYPED_TEST(BrokerContract, AQosTwoPublishCompletesOnce) {
    this->broker().connect(5s);
    if constexpr (!TestFixture::caps().qos2) {
        // RabbitMQ takes a QoS 2 publish as QoS 1: it answers PUBACK (no PUBREC), the publish
        // completes delivered on it, and it arrives at QoS 1 (at least once, not exactly once).
        Record r = this->record(1, "exactly once", "q2");
        r.message.qos = 2;
        this->broker().publish(r, this->done_.callback_for(1));
        ASSERT_TRUE(this->done_.wait_for(1, 10s));
        EXPECT_EQ(this->done_.get(1).status, PublishResult::Status::delivered);
        EXPECT_TRUE(this->broker().connected());
        const auto down = this->side().wire()->packets(Direction::to_client);
        EXPECT_TRUE(std::any_of(down.begin(), down.end(),
                                [](const auto& p) { return p.type == pkt::puback; }));
        EXPECT_FALSE(std::any_of(down.begin(), down.end(),
                                 [](const auto& p) { return p.type == pkt::pubrec; }));
        ASSERT_TRUE(eventually([&] { return !this->side().received().empty(); }, 10s));
        EXPECT_EQ(this->side().received().front().qos, 1);
        EXPECT_TRUE(this->done_.repeated().empty());
    } else {
        Record r = this->record(1, "exactly once", "q2");
        r.message.qos = 2;
        MqttProxy* wire = this->side().wire();
        if (wire) {
            wire->hold_at(Direction::to_client, pkt::pubcomp);
        }
        this->broker().publish(r, this->done_.callback_for(1));
        if (wire) {
            ASSERT_TRUE(wire->wait_for(Direction::to_client, pkt::pubrec, 1, 10s));
            ASSERT_TRUE(wire->wait_for(Direction::to_broker, pkt::pubrel, 1, 10s));
            ASSERT_TRUE(wire->wait_for(Direction::to_client, pkt::pubcomp, 1, 10s));
            // The PUBCOMP waits in the proxy: nothing may complete the publish now. A negative can
            // only be watched for a while; paho acts on a PUBREC within milliseconds.
            EXPECT_FALSE(this->done_.wait_for(1, 500ms)) << "completed before the PUBCOMP came";
            wire->release();
        }
        ASSERT_TRUE(this->done_.wait_for(1, 10s));
        EXPECT_EQ(this->done_.get(1).status, PublishResult::Status::delivered);
        ASSERT_TRUE(eventually([&] { return !this->side().received().empty(); }, 10s));
        // A later publish on the same connection arrives after it: then a duplicate would have too.
        this->broker().publish(this->record(2, "marker", "q2"), this->done_.callback_for(2));
        ASSERT_TRUE(this->done_.wait_for(2, 10s));
        ASSERT_TRUE(eventually([&] { return this->side().received().size() >= 2; }, 10s));
        const auto got = this->side().received();
        EXPECT_EQ(std::count_if(got.begin(), got.end(),
                                [](const Arrival& a) { return a.payload == "exactly once"; }),
                  1);
        EXPECT_EQ(got.front().qos, 2);
        EXPECT_TRUE(this->done_.repeated().empty());
    }
}

// A publish the broker refuses (its ACL denies the topic) ends as the side declares: rejected
// with reason code 0x87 (MQTT 5), acknowledged but never routed (mosquitto on 3.1.1), or the
// broker closes the connection (aedes). In every case the connection is usable afterwards (after
// a reconnect where it was closed) and the refused message never arrives.
TYPED_TEST(BrokerContract, ARefusedPublishEndsAsDeclared) {
    this->broker().connect(5s);
    const std::size_t before = this->changes_.size();
    Record denied = make_record(1, this->side().denied_topic(), "refused");
    this->broker().publish(denied, this->done_.callback_for(1));
    ASSERT_TRUE(this->done_.wait_for(1, 10s));
    const PublishResult result = this->done_.get(1);
    switch (TestFixture::caps().refusal) {
        case Refusal::reason_code:
            EXPECT_EQ(result.status, PublishResult::Status::rejected);
            EXPECT_EQ(result.reason_code, 0x87);
            EXPECT_TRUE(result.permanent);
            EXPECT_NE(result.reason.find("0x87"), std::string::npos) << result.reason;
            EXPECT_TRUE(this->broker().connected());
            break;
        case Refusal::acked_not_routed:
            EXPECT_EQ(result.status, PublishResult::Status::delivered) << result.reason;
            EXPECT_TRUE(this->broker().connected());
            break;
        case Refusal::connection_closed:
            EXPECT_EQ(result.status, PublishResult::Status::connection_lost) << result.reason;
            EXPECT_TRUE(this->changes_.wait_for(false, 10s, before).has_value())
                << "the handler is told about the loss";
            EXPECT_TRUE(eventually([&] { return !this->broker().connected(); }, 5s));
            this->broker().connect(5s);
            break;
    }
    // Routed in order on one connection: once the next one arrived, the refused one would have.
    this->broker().publish(this->record(2, "next"), this->done_.callback_for(2));
    ASSERT_TRUE(this->done_.wait_for(2, 10s));
    EXPECT_EQ(this->done_.get(2).status, PublishResult::Status::delivered);
    ASSERT_TRUE(eventually([&] { return !this->side().received().empty(); }, 10s));
    EXPECT_EQ(this->received_payloads(), std::vector<std::string>{"next"});
}

// More publishes handed over at once than the broker's Receive Maximum (where it announces one)
// all complete delivered, none lost, and arrive in order; the client never has more than that
// many unacknowledged on the wire. Where none is announced, the same holds without a bound.
TYPED_TEST(BrokerContract, MorePublishesThanTheReceiveMaximumAllCompleteInOrder) {
    this->broker().connect(5s);
    const int declared = TestFixture::caps().receive_maximum;
    const int total = std::max(60, 10 * declared);
    std::vector<std::string> sent;
    for (int i = 1; i <= total; ++i) {
        sent.push_back("in order " + std::to_string(i));
        this->broker().publish(this->record(i, sent.back(), "ordered"),
                               this->done_.callback_for(i));
    }
    ASSERT_TRUE(this->done_.wait_for(static_cast<std::size_t>(total), 20s));
    EXPECT_EQ(this->done_.count(PublishResult::Status::delivered), static_cast<std::size_t>(total));
    EXPECT_TRUE(this->done_.repeated().empty());
    ASSERT_TRUE(eventually(
        [&] { return this->side().received().size() >= static_cast<std::size_t>(total); }, 20s));
    EXPECT_EQ(this->received_payloads(), sent);
    if (MqttProxy* wire = this->side().wire()) {
        const auto down = wire->packets(Direction::to_client);
        const auto connack = std::find_if(down.begin(), down.end(),
                                          [](const auto& p) { return p.type == pkt::connack; });
        ASSERT_NE(connack, down.end());
        const int in_flight = max_in_flight(*wire);
        std::cout << "[ wire     ] receive maximum announced: "
                  << (declared ? std::to_string(declared) : "none")
                  << ", most publishes in flight: " << in_flight << "\n";
        if (declared > 0) {
            EXPECT_EQ(receive_maximum(*connack), declared);
            EXPECT_LE(in_flight, declared);
            EXPECT_GE(in_flight, 2) << "the publishes were not handed over at once";
        } else {
            EXPECT_FALSE(receive_maximum(*connack).has_value());
        }
    }
}

// An MqttBroker left at the default version (MQTT 5, or 3.1.1 with a server that refuses 5)
// connects and delivers: at MQTT 5 where the broker accepts it; where the broker answers
// "unacceptable protocol version" (aedes), by asking again in 3.1.1 within the same connect()
// (the wire shows a level 5 CONNECT refused with 3.1.1 return code 1, then a level 4 CONNECT).
// Where the broker just closes the socket (RabbitMQ 3.10), the same after MqttBroker's probe (a
// second level 5 CONNECT, closed without a byte as well).
TYPED_TEST(BrokerContract, ABrokerAtTheDefaultVersionConnectsAndDelivers) {
    auto broker = this->side().broker_at_default_version();
    Completions done;
    MqttProxy* wire = this->side().wire();
    constexpr Mqtt5Connect answer = TestFixture::caps().mqtt5_connect;
    broker->connect(5s);
    EXPECT_TRUE(broker->connected());
    broker->publish(this->record(1, "at the default version"), done.callback_for(1));
    ASSERT_TRUE(done.wait_for(1, 10s));
    EXPECT_EQ(done.get(1).status, PublishResult::Status::delivered) << done.get(1).reason;
    ASSERT_TRUE(eventually([&] { return !this->side().received().empty(); }, 10s));
    EXPECT_EQ(this->received_payloads().front(), "at the default version");
    if constexpr (requires { broker->version(); }) {
        ASSERT_NE(wire, nullptr);
        std::vector<int> levels;
        for (const WirePacket& p : wire->packets(Direction::to_broker)) {
            if (p.type == pkt::connect) {
                levels.push_back(protocol_level(p));
            }
        }
        std::vector<std::string> connacks;
        for (const WirePacket& p : wire->packets(Direction::to_client)) {
            if (p.type == pkt::connack) {
                connacks.push_back(p.bytes.substr(0, 4));
            }
        }
        if constexpr (answer == Mqtt5Connect::accepted) {
            EXPECT_EQ(levels, std::vector<int>{5});
            EXPECT_EQ(broker->version(), MqttVersion::v5);
        } else if constexpr (answer == Mqtt5Connect::refused_version) {
            EXPECT_EQ(levels, (std::vector<int>{5, 4}));
            EXPECT_EQ(broker->version(), MqttVersion::v3_1_1);
            ASSERT_FALSE(connacks.empty());
            EXPECT_EQ(connacks.front(), std::string("\x20\x02\x00\x01", 4));
        } else {
            EXPECT_EQ(levels, (std::vector<int>{5, 5, 4})) << "paho's CONNECT, the probe's, 3.1.1";
            EXPECT_EQ(broker->version(), MqttVersion::v3_1_1);
            ASSERT_EQ(connacks.size(), 1u) << "only the 3.1.1 CONNECT is answered";
            EXPECT_EQ(connacks.front(), std::string("\x20\x02\x00\x00", 4));
        }
    }
    broker->disconnect(1s);
}

}  // namespace
}  // namespace outpost
