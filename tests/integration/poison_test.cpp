// Poison records through the whole chain (Outbox -> SqliteStore -> Dispatcher -> MqttBroker ->
// mosquitto): a record the server would answer by closing the connection must end as one
// failed attempt of its own, never as a lost connection that takes the records behind it along
// and comes back after every reconnect (issue 10, item 1).
#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "outpost/mqtt_broker.hpp"
#include "outpost/outpost.hpp"
#include "subscriber.hpp"
#include "testkit/mosquitto.hpp"
#include "testkit/temp_dir.hpp"

namespace outpost {
namespace {

using namespace std::chrono_literals;
using testing::Mosquitto;
using testing::MosquittoOptions;
using testing::Subscriber;
using testing::TempDir;

// Counts dispatcher events by kind; waits for a number of them.
class Tally {
  public:
    EventHandler handler() {
        return [this](const DispatchEvent& e) {
            std::lock_guard lock(mutex_);
            ++counts_[e.kind];
            if (e.kind == DispatchEvent::Kind::dead) {
                dead_[e.record_id] = e.detail;
            }
            cv_.notify_all();
        };
    }
    bool wait_for(DispatchEvent::Kind kind, int n, std::chrono::milliseconds timeout) {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, timeout, [&] { return counts_[kind] >= n; });
    }
    int count(DispatchEvent::Kind kind) {
        std::lock_guard lock(mutex_);
        return counts_[kind];
    }
    std::map<std::int64_t, std::string> dead() {
        std::lock_guard lock(mutex_);
        return dead_;
    }

  private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::map<DispatchEvent::Kind, int> counts_;
    std::map<std::int64_t, std::string> dead_;
};

// The measured case of the issue: poison first, then 20 good records. Here three kinds of
// poison: a QoS 2 and a retained record against a server whose CONNACK says Maximum QoS 1 and
// Retain Available 0 (both pass add(): only the server knows), and a record whose topic holds a
// TAB, written into the table past add() (an older version, a hand edit). Before, mosquitto
// dropped the connection over each: reconnects about once a second, the good records lost with
// the connection and sent again, duplicates, everything still pending.
TEST(Poison, RecordsTheServerWouldDropTheConnectionOverGoDeadAndTheRestFlow) {
    MosquittoOptions mo;
    mo.extra_config = "max_qos 1\nretain_available false\n";
    Mosquitto mosq(mo);
    Subscriber sub(mosq.uri(), "#", 1, 5);

    TempDir dir;
    const std::string path = dir.file("app.db");
    SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    Outbox outbox(db);
    db.exec(
        "INSERT INTO outpost_records (uid, topic, payload, qos, retain, priority, created_at) "
        "VALUES ('0190c0de-0000-7000-8000-00000000beef', 'poison/tab\tx', x'00', 1, 0, 0, 0)");
    const std::int64_t tab = db.getLastInsertRowid();
    Message q2 = Message::text("poison/qos2", "q");
    q2.qos = 2;
    const std::int64_t qos2 = outbox.add(q2);
    Message kept = Message::text("poison/retained", "r");
    kept.retain = true;
    const std::int64_t retained = outbox.add(kept);
    {
        SQLite::Transaction tx(db);
        for (int i = 0; i < 20; ++i) {
            outbox.add(Message::text("good/" + std::to_string(i), "ok"));
        }
        tx.commit();
    }

    Tally tally;
    SqliteStore store(path);
    MqttOptions mqtt;
    mqtt.servers = {mosq.uri()};
    mqtt.client_id = "outpost-poison-" + std::to_string(::getpid());
    MqttBroker broker(mqtt);
    DispatcherOptions o;
    o.retry.max_attempts = 1;  // a permanent rejection: dead at once
    o.reconnect_initial = 200ms;
    o.reconnect_max = 200ms;
    o.connect_timeout = 2s;
    o.poll_interval = 50ms;
    o.on_event = tally.handler();
    Dispatcher dispatcher(store, broker, o);
    dispatcher.start();

    ASSERT_TRUE(tally.wait_for(DispatchEvent::Kind::delivered, 20, 20s))
        << tally.count(DispatchEvent::Kind::delivered) << " delivered\n"
        << mosq.log();
    ASSERT_TRUE(tally.wait_for(DispatchEvent::Kind::dead, 3, 10s));
    ASSERT_TRUE(sub.wait_for_count(20, 10s)) << sub.count();
    EXPECT_TRUE(dispatcher.drain(5s));
    const DispatcherStats stats = dispatcher.stats();
    const int disconnects = tally.count(DispatchEvent::Kind::disconnected);
    dispatcher.stop();

    EXPECT_EQ(sub.count(), 20u) << "duplicates or poison arrived";
    for (const auto& m : sub.messages()) {
        EXPECT_EQ(m.topic.rfind("good/", 0), 0u) << m.topic;
    }
    EXPECT_EQ(stats.reconnects, 1u) << "the connection was lost";
    EXPECT_EQ(stats.connection_losses, 0u);
    EXPECT_EQ(disconnects, 0);
    EXPECT_FALSE(mosq.log_contains("disconnected due to")) << mosq.log();

    const auto dead = tally.dead();
    ASSERT_EQ(dead.size(), 3u);
    EXPECT_NE(dead.at(tab).find("topic name invalid"), std::string::npos) << dead.at(tab);
    EXPECT_NE(dead.at(tab).find("U+0009"), std::string::npos) << dead.at(tab);
    EXPECT_NE(dead.at(qos2).find("qos not supported"), std::string::npos) << dead.at(qos2);
    EXPECT_NE(dead.at(retained).find("retain not supported"), std::string::npos)
        << dead.at(retained);
    SQLite::Statement state(db, "SELECT state, last_error FROM outpost_records WHERE id = ?");
    state.bind(1, tab);
    ASSERT_TRUE(state.executeStep());
    EXPECT_EQ(state.getColumn(0).getInt(), static_cast<int>(RecordState::dead));
    EXPECT_NE(state.getColumn(1).getString().find("U+0009"), std::string::npos);
}

}  // namespace
}  // namespace outpost
