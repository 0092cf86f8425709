// The MessageBroker contract (include/outpost/broker.hpp), one typed suite run against every
// implementation: FakeBroker, which the dispatcher's unit tests trust, and MqttBroker on a real
// mosquitto. When the fake drifts from the real thing, this suite says where.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
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

namespace outpost {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using testing::Completions;

// Each side gives the suite a broker and the means to break its world.
//   broker()            the MessageBroker under test
//   make_unreachable()  the next connect() cannot reach anything
//   hold_acks()         publishes from now on get no answer (until the connection breaks)
//   break_connection()  the connection dies under the broker
//   restore()           reachable again, answering again
//   received()          the payloads that reached the far side so far

class FakeSide {
  public:
    MessageBroker& broker() { return fake_; }
    void make_unreachable() { fake_.set_reachable(false); }
    void hold_acks() { fake_.set_auto_ack(false); }
    void break_connection() { fake_.drop_connection("the fake's connection dropped"); }
    void restore() {
        fake_.set_reachable(true);
        fake_.set_auto_ack(true);
    }
    // The fake's far side is its log: everything it was handed while connected.
    std::vector<std::string> received() {
        std::vector<std::string> out;
        for (const Record& r : fake_.log()) {
            out.emplace_back(reinterpret_cast<const char*>(r.message.payload.data()),
                             r.message.payload.size());
        }
        return out;
    }

  private:
    testing::FakeBroker fake_;
};

class MqttSide {
  public:
    MqttSide() : broker_(options(mosq_.uri())) {}
    MessageBroker& broker() { return broker_; }
    void make_unreachable() { mosq_.kill(); }
    void hold_acks() {
        ASSERT_EQ(::kill(mosq_.pid(), SIGSTOP), 0);  // a broker that hangs: no PUBACK comes
        stopped_ = true;
    }
    void break_connection() {
        mosq_.kill();
        stopped_ = false;
    }
    void restore() {
        if (stopped_) {
            ::kill(mosq_.pid(), SIGCONT);
            stopped_ = false;
        }
        if (!mosq_.running()) {
            mosq_.start();
            sub_->reconnect();
        }
    }
    std::vector<std::string> received() {
        std::vector<std::string> out;
        for (const auto& m : sub_->messages()) {
            out.push_back(m.payload);
        }
        return out;
    }

  private:
    static MqttOptions options(const std::string& uri) {
        MqttOptions o;
        o.servers = {uri};
        o.client_id = "outpost-contract-" + std::to_string(::getpid());
        // Not shorter: paho-c's network thread can take a second to look at a new socket (see
        // tests/support/subscriber.hpp), so a 1 s budget failed "TCP connect timeout" on a loaded
        // or emulated machine. The unreachable test still ends in time: connect(2s) caps it.
        o.connect_timeout = 5s;
        return o;
    }
    testing::Mosquitto mosq_;
    std::unique_ptr<testing::Subscriber> sub_ =
        std::make_unique<testing::Subscriber>(mosq_.uri(), "contract/#", 1, 5);
    MqttBroker broker_;
    bool stopped_ = false;
};

Record record(std::int64_t id, std::string payload) {
    Record r;
    r.id = id;
    r.uid = "contract-" + std::to_string(id);
    r.message = Message::text("contract/" + std::to_string(id % 3), std::move(payload));
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

template <typename Side>
class BrokerContract : public ::testing::Test {
  protected:
    BrokerContract() { side_.broker().set_connection_handler(changes_.handler()); }
    MessageBroker& broker() { return side_.broker(); }
    // Declared first, destroyed last: the broker's destructor may still complete publishes and
    // tell the handler.
    Completions done_;
    testing::ConnectionLog changes_;
    Side side_;
};

using Sides = ::testing::Types<FakeSide, MqttSide>;
class SideNames {
  public:
    template <typename T>
    static std::string GetName(int) {
        return std::is_same_v<T, FakeSide> ? "FakeBroker" : "MqttBroker";
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
        this->broker().publish(record(i, payload), this->done_.callback_for(i));
    }
    ASSERT_TRUE(this->done_.wait_for(kTotal, 10s));
    EXPECT_EQ(this->done_.count(PublishResult::Status::delivered), std::size_t{kTotal});
    EXPECT_TRUE(this->done_.repeated().empty());
    ASSERT_TRUE(eventually([&] { return this->side_.received().size() >= kTotal; }, 10s));
    const auto got = this->side_.received();
    EXPECT_EQ(std::set<std::string>(got.begin(), got.end()), sent);
}

TYPED_TEST(BrokerContract, PublishCopiesTheRecordBeforeReturning) {
    this->broker().connect(5s);
    {
        Record r = record(1, "original");
        this->broker().publish(r, this->done_.callback_for(1));
        r.message.payload.assign(8, std::byte{'X'});  // the caller reuses its record at once
    }
    ASSERT_TRUE(this->done_.wait_for(1, 10s));
    ASSERT_TRUE(eventually([&] { return !this->side_.received().empty(); }, 10s));
    EXPECT_EQ(this->side_.received().front(), "original");
}

TYPED_TEST(BrokerContract, PublishBeforeConnectCompletesAsLostOrThrows) {
    bool threw = false;
    try {
        this->broker().publish(record(1, "too early"), this->done_.callback_for(1));
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
    this->side_.make_unreachable();
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
    this->side_.hold_acks();
    constexpr int kTotal = 20;
    for (int i = 1; i <= kTotal; ++i) {
        this->broker().publish(record(i, "held " + std::to_string(i)), this->done_.callback_for(i));
    }
    this->side_.break_connection();
    ASSERT_TRUE(this->done_.wait_for(kTotal, 10s));
    EXPECT_EQ(this->done_.count(PublishResult::Status::connection_lost), std::size_t{kTotal});
    EXPECT_TRUE(this->done_.repeated().empty());
    const auto reason = this->changes_.wait_for(false, 10s, before);
    ASSERT_TRUE(reason.has_value()) << "the handler is told about the loss";
    EXPECT_FALSE(reason->empty());
    EXPECT_TRUE(eventually([&] { return !this->broker().connected(); }, 5s));

    // And it comes back: connect again, publish again.
    this->side_.restore();
    this->broker().connect(5s);
    this->broker().publish(record(kTotal + 1, "after"), this->done_.callback_for(kTotal + 1));
    ASSERT_TRUE(this->done_.wait_for(kTotal + 1, 10s));
    EXPECT_EQ(this->done_.count(PublishResult::Status::delivered), 1u);
}

TYPED_TEST(BrokerContract, DisconnectTellsTheHandlerAndMayBeRepeated) {
    this->broker().connect(5s);
    this->broker().publish(record(1, "last words"), this->done_.callback_for(1));
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

}  // namespace
}  // namespace outpost
