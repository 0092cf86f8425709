// The dispatcher on the paths that fail: a Store that throws at every point of a step, outcome
// batches at their size limits, a broker that answers by disconnecting, a key with a long
// backlog waiting for a retry, the lease lost under the threaded loop, durations at their edge,
// a record whose stored form does not decode. Real SQLite files underneath (FaultyStore wraps a
// SqliteStore), the FakeBroker and a ManualClock; every check reads the file back on the app's
// connection.
#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "faulty_store.hpp"
#include "fixture.hpp"

using namespace std::chrono_literals;
using namespace outpost;
using outpost::testing::FakeBroker;
using outpost::testing::FaultyStore;
using outpost::testing::OutboxTest;
using outpost::testing::TempDir;
using Op = FaultyStore::Op;

namespace {

class DispatcherFaults : public OutboxTest {
  protected:
    FaultyStore& faulty() {
        if (!faulty_) {
            faulty_ = std::make_unique<FaultyStore>(store());
        }
        return *faulty_;
    }
    std::unique_ptr<Dispatcher> faulty_dispatcher(std::optional<DispatcherOptions> o = {}) {
        return std::make_unique<Dispatcher>(faulty(), broker_, o ? *o : options(), clock_);
    }
    // Steps with the clock moving `tick` each step until nothing is pending or `steps` passed.
    void run(Dispatcher& d, int steps, std::chrono::milliseconds tick = 100ms) {
        for (int i = 0; i < steps && count("state = 0") > 0; ++i) {
            d.run_once();
            clock_.advance(tick);
        }
        settle(d);
    }
    // The app commits one record on a connection of its own (so the dispatcher's data_version
    // moves), half a second passes, the dispatcher steps twice: true when the record was sent.
    bool fresh_record_goes(Dispatcher& d, int i) {
        SQLite::Database other(path_, SQLite::OPEN_READWRITE);
        Outbox box(other, {}, clock_);
        const std::int64_t fresh = box.add(Message::text("fresh", std::to_string(i)));
        clock_.advance(500ms);
        d.run_once();
        d.run_once();
        return !state_of(fresh);
    }
    // The first delivery of each record, per key, must come in id (commit) order.
    void expect_per_key_order(const std::vector<Record>& log) {
        std::set<std::int64_t> seen;
        std::map<std::string, std::int64_t> last;
        for (const Record& r : log) {
            if (!seen.insert(r.id).second || !r.message.key) {
                continue;
            }
            auto it = last.find(*r.message.key);
            if (it != last.end()) {
                EXPECT_GT(r.id, it->second) << "key " << *r.message.key << " out of order";
            }
            last[*r.message.key] = r.id;
        }
    }

    std::unique_ptr<FaultyStore> faulty_;
};

// ---- outcome batches at their limits (the use-after-free in write_outcomes) ----

struct BatchCase {
    std::size_t window;
    std::size_t max_batch;
    int records;
};

class OutcomeBatches : public DispatcherFaults, public ::testing::WithParamInterface<BatchCase> {};

TEST_P(OutcomeBatches, EveryOutcomeIsWrittenWhateverTheBatchSize) {
    const BatchCase c = GetParam();
    for (int i = 0; i < c.records; ++i) {
        add("t/" + std::to_string(i));
    }
    auto o = options();
    o.window = c.window;
    o.max_batch = c.max_batch;
    auto d = dispatcher(o);
    run(*d, 200);
    EXPECT_EQ(count(), 0);
    EXPECT_EQ(d->stats().delivered, static_cast<std::uint64_t>(c.records));
    EXPECT_EQ(broker_.published(), static_cast<std::size_t>(c.records));
}

INSTANTIATE_TEST_SUITE_P(Limits, OutcomeBatches,
                         ::testing::Values(BatchCase{1, 1, 5}, BatchCase{100, 1, 250},
                                           BatchCase{50, 7, 200}, BatchCase{65535, 1000, 3000},
                                           BatchCase{10, 10, 35}));

TEST_F(DispatcherFaults, OutcomesPiledUpWhileWritesFailAreAllWrittenOnceTheDiskRecovers) {
    {
        SQLite::Transaction tx(db_);
        for (int i = 0; i < 2500; ++i) {
            add("t/" + std::to_string(i));
        }
        tx.commit();
    }
    auto o = options();
    o.window = 2500;
    auto d = faulty_dispatcher(o);
    faulty().fail(Op::apply, 1, 3, StorageError("injected: database or disk is full", true, 13));
    for (int i = 0; i < 3; ++i) {
        d->run_once();  // 2,500 outcomes decided, more than max_batch, not written
        clock_.advance(1s);
    }
    EXPECT_EQ(count("state = 0"), 2500);
    run(*d, 50);
    EXPECT_EQ(count(), 0);
    EXPECT_EQ(broker_.published(), 2500u);  // nothing sent twice while the writes failed
    EXPECT_EQ(d->stats().delivered, 2500u);
}

// ---- a Store that throws, at every point of a step ----

// For every Store method and the first calls of it, one injected failure: afterwards every
// record is delivered (no busy key or cursor left behind), per-key order holds, no record is
// published while another of its key is in flight.
TEST_F(DispatcherFaults, OneFailureAtAnyStoreCallLeavesNoTrace) {
    int fired = 0;
    for (int times : {1, 3})  // once, and three calls in a row
        for (Op op : FaultyStore::kOps) {
            // N = 1, 2, 3, ... until a run ends with the fault never fired.
            for (int nth = 1;; ++nth) {
                SCOPED_TRACE(std::string(FaultyStore::name(op)) + " call " + std::to_string(nth) +
                             " x" + std::to_string(times));
                TempDir dir;
                const std::string path = dir.file("f.db");
                SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
                ManualClock clock;
                Outbox box(db, {}, clock);
                FakeBroker broker;
                SqliteStore real(path);
                FaultyStore store(real);
                auto o = options();
                o.window = 4;
                o.max_batch = 3;
                Dispatcher d(store, broker, o, clock);
                auto add_some = [&](int n, int base) {
                    SQLite::Transaction tx(db);
                    for (int i = 0; i < n; ++i) {
                        Message m = Message::text("t", std::to_string(base + i));
                        if (i % 3 != 0) {
                            m.key = "k" + std::to_string(i % 3);
                        }
                        if (i % 5 == 4) {
                            m.ttl = 1h;
                        }
                        box.add(m);
                    }
                    tx.commit();
                };
                auto pending = [&] {
                    return db.execAndGet("SELECT count(*) FROM outpost_records").getInt();
                };
                add_some(12, 0);
                d.run_once();
                store.fail(op, nth, times);
                add_some(12, 100);
                for (int i = 0; i < 300; ++i) {
                    const std::size_t work = d.run_once();
                    if (work == 0 && pending() == 0) {
                        break;
                    }
                    clock.advance(200ms);
                }
                if (store.armed()) {
                    break;  // the workload never made an nth call: every point was tried
                }
                ++fired;
                EXPECT_EQ(db.execAndGet("SELECT count(*) FROM outpost_records").getInt(), 0)
                    << "records stranded";
                std::set<std::int64_t> distinct;
                for (const Record& r : broker.log()) {
                    distinct.insert(r.id);
                }
                EXPECT_EQ(distinct.size(), 24u);
                expect_per_key_order(broker.log());
            }
        }
    std::printf("%d failure points tried\n", fired);
    EXPECT_GT(fired, 60);  // the sweep reached deep into the workload
}

TEST_F(DispatcherFaults, AFailedLoadFreesTheKeysItChose) {
    add("a", "k");
    add("b");
    auto d = faulty_dispatcher();
    faulty().fail(Op::load_pending);
    d->run_once();  // chooses both, the load throws
    EXPECT_EQ(broker_.published(), 0u);
    EXPECT_NE(d->stats().last_error.find("injected"), std::string::npos);
    for (int i = 0; i < 5; ++i) {
        clock_.advance(1s);
        d->run_once();
    }
    EXPECT_EQ(count(), 0) << "key k or the keyless record was stranded";
    EXPECT_EQ(broker_.published(), 2u);
}

TEST_F(DispatcherFaults, AStoreThatKeepsFailingIsRetriedWithoutSpinning) {
    add("a");
    DispatcherOptions o;
    o.poll_interval = 200ms;
    Dispatcher d(faulty(), broker_, o);  // the real clock, its own thread
    faulty().fail_always(Op::scan_pending);
    d.start();
    std::this_thread::sleep_for(1s);
    const int calls = faulty().calls(Op::scan_pending);
    EXPECT_GE(calls, 1);
    EXPECT_LE(calls, 20) << "a failing step is repeated in a loop";
    faulty().clear();
    EXPECT_TRUE(d.drain(10s));
    EXPECT_EQ(count(), 0);
    d.stop();
}

TEST_F(DispatcherFaults, ARecordWhoseHeadersDoNotDecodeGoesDeadAndTheOthersFlow) {
    Message bad = Message::text("bad", "x");
    bad.headers = {{"h", "v"}};
    const std::int64_t bad_id = outbox_.add(bad);
    db_.exec("UPDATE outpost_records SET headers = x'ffffffff01' WHERE id = " +
             std::to_string(bad_id));
    for (int i = 0; i < 10; ++i) {
        add("good/" + std::to_string(i),
            i % 2 == 0 ? std::optional<std::string>("k") : std::nullopt);
    }
    auto d = dispatcher();
    run(*d, 20);
    EXPECT_EQ(broker_.published(), 10u);
    EXPECT_EQ(count("state = 0"), 0);
    EXPECT_EQ(state_of(bad_id), std::make_pair(2, 0));
    EXPECT_NE(last_error_of(bad_id).find("cannot be read"), std::string::npos)
        << last_error_of(bad_id);
    EXPECT_EQ(d->stats().dead, 1u);
}

// ---- a broker that answers by disconnecting ----

TEST_F(DispatcherFaults, AMessageTheBrokerAnswersByDisconnectingGoesDeadAndTheRestArrive) {
    broker_.disconnect_on_topic("t/poison");
    const std::int64_t poison = add("t/poison");
    for (int i = 0; i < 20; ++i) {
        add("t/good/" + std::to_string(i));
    }
    auto o = options();  // max_attempts 3, backoff 1 s .. 60 s
    std::vector<DispatchEvent> events;
    o.on_event = [&](const DispatchEvent& e) { events.push_back(e); };
    auto d = dispatcher(o);
    run(*d, 2000);
    EXPECT_EQ(count("state = 0"), 0);
    EXPECT_EQ(state_of(poison), std::make_pair(2, 3));
    EXPECT_NE(last_error_of(poison).find("dropped the connection"), std::string::npos)
        << last_error_of(poison);
    std::set<std::int64_t> good;
    for (const Record& r : broker_.log()) {
        if (r.id != poison) {
            good.insert(r.id);
        }
    }
    EXPECT_EQ(good.size(), 20u);
    // Reconnects are backed off: a broker that keeps dropping the connection is not hammered.
    EXPECT_LE(broker_.connect_calls(), 12);
}

TEST_F(DispatcherFaults, OccasionalLossesNeverBurnAnAttempt) {
    // Losses that do not follow one record (a flaky link) are never counted against it.
    broker_.set_auto_ack(false);
    const std::int64_t a = add("a");
    auto d = dispatcher();
    for (int i = 0; i < 5; ++i) {
        settle(*d);
        clock_.advance(30s);  // the link died long after the publish
        broker_.drop_connection();
        settle(*d);
    }
    EXPECT_EQ(state_of(a), std::make_pair(0, 0));
    d->stop(0ms);
}

// ---- one key's backlog never holds back the others ----

TEST_F(DispatcherFaults, AWaitingKeysBacklogCostsTheScanNothingAndOtherKeysGoAtOnce) {
    broker_.deny_topic("a");
    {
        SQLite::Transaction tx(db_);
        for (int i = 0; i < 5000; ++i) {
            add("a", "A");
        }
        tx.commit();
    }
    const std::int64_t b = add("b", "B");
    auto o = options();
    o.retry.max_attempts = 100;
    auto d = faulty_dispatcher(o);
    for (int i = 0; i < 40 && state_of(b); ++i) {
        d->run_once();
    }
    EXPECT_EQ(state_of(b), std::nullopt) << "B was held back by A's backlog";
    // While A's head waits for its retries, the app keeps committing (another connection, so
    // the dispatcher's data_version changes at each poll): the scan must not walk A's backlog.
    const std::size_t before = faulty().rows_scanned();
    int sent_fresh = 0;
    for (int i = 0; i < 100; ++i) {
        sent_fresh += fresh_record_goes(*d, i) ? 1 : 0;
    }
    EXPECT_EQ(sent_fresh, 100) << "fresh records waited behind A's backlog";
    EXPECT_LT(faulty().rows_scanned() - before, 1000u)
        << "the scan walked A's backlog again and again";
    EXPECT_EQ(count("msg_key = 'A' AND state = 0"), 5000 - d->stats().dead);
}

TEST_F(DispatcherFaults, KeylessRecordsWaitingForARetryDoNotDelayFreshOnes) {
    broker_.reject_next(300);
    {
        SQLite::Transaction tx(db_);
        for (int i = 0; i < 300; ++i) {
            add("waiting/" + std::to_string(i));
        }
        tx.commit();
    }
    auto o = options();
    o.retry.initial_backoff = 60s;
    o.retry.max_backoff = 60s;
    auto d = faulty_dispatcher(o);
    for (int i = 0; i < 20; ++i) {
        d->run_once();
    }
    EXPECT_EQ(count("state = 0 AND attempts = 1"), 300);
    for (int i = 0; i < 40; ++i) {
        EXPECT_TRUE(fresh_record_goes(*d, i)) << "fresh record " << i << " not sent";
    }
}

TEST_F(DispatcherFaults, AHigherPriorityArrivalOvertakesTheRunningPass) {
    broker_.set_auto_ack(false);
    for (int i = 0; i < 50; ++i) {
        add("low/" + std::to_string(i));
    }
    auto o = options();
    o.window = 10;
    auto d = dispatcher(o);
    d->run_once();  // the pass stands at the 10th low record
    SQLite::Database other(path_, SQLite::OPEN_READWRITE);
    Outbox box(other, {}, clock_);
    Message alarm = Message::text("alarm", "!");
    alarm.priority = 9;
    const std::int64_t id = box.add(alarm);
    clock_.advance(1s);  // the poll sees another connection's commit
    broker_.ack(1);
    d->run_once();
    ASSERT_EQ(broker_.published(), 11u);
    EXPECT_EQ(broker_.log().back().id, id);
    d->stop(0ms);
}

// ---- the lease lost under the threaded loop ----

// Counts now() calls: a loop that spins calls it millions of times a second.
class CountingClock final : public Clock {
  public:
    time_point now() const override {
        ++calls;
        return SystemClock::instance().now();
    }
    std::int64_t wall_ms() const override { return SystemClock::instance().wall_ms(); }
    mutable std::atomic<std::uint64_t> calls{0};
};

TEST_F(DispatcherFaults, AfterLosingTheLeaseTheThreadSleepsUntilItsNextTry) {
    CountingClock clock;
    add("a");
    DispatcherOptions o;
    o.lease_ttl = 600ms;  // renewed every 200 ms
    broker_.set_auto_ack(false);
    Dispatcher d(store(), broker_, o, clock);
    d.start();
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (broker_.held() == 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
    }
    ASSERT_EQ(broker_.held(), 1u);
    // Another dispatcher took the lease over (ours lapsed while the process stalled).
    db_.exec("UPDATE outpost_lease SET owner = 'other', pid = 1, expires_at = " +
             std::to_string(SystemClock::instance().wall_ms() + 3'600'000));
    while (d.stats().last_error.find("taken over") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
    }
    ASSERT_NE(d.stats().last_error.find("taken over"), std::string::npos);
    broker_.ack_all();  // answers that come after the lease was lost
    const std::uint64_t before = clock.calls.load();
    std::this_thread::sleep_for(1s);
    const std::uint64_t calls = clock.calls.load() - before;
    EXPECT_LT(calls, 2000u) << "the dispatcher thread spins without the lease";
    d.stop();
}

// ---- durations at their edge ----

TEST_F(DispatcherFaults, DurationsBeyondAHundredYearsAreRefusedByName) {
    const auto too_long = kMaxDuration + 1ms;
    struct Field {
        const char* name;
        std::chrono::milliseconds DispatcherOptions::*member;
    };
    for (Field f : {Field{"ack_timeout", &DispatcherOptions::ack_timeout},
                    Field{"poll_interval", &DispatcherOptions::poll_interval},
                    Field{"reconnect_max", &DispatcherOptions::reconnect_max},
                    Field{"connect_timeout", &DispatcherOptions::connect_timeout},
                    Field{"lease_ttl", &DispatcherOptions::lease_ttl},
                    Field{"retention", &DispatcherOptions::retention}}) {
        for (auto v : {too_long, std::chrono::milliseconds::max()}) {
            auto o = options();
            o.*f.member = v;
            try {
                o.validate();
                ADD_FAILURE() << f.name << " = " << v.count() << " accepted";
            } catch (const InvalidConfig& e) {
                EXPECT_NE(std::string(e.what()).find(f.name), std::string::npos) << e.what();
            }
        }
    }
    auto o = options();
    o.retry.max_backoff = std::chrono::milliseconds::max();
    EXPECT_THROW(o.validate(), InvalidConfig);
}

TEST_F(DispatcherFaults, TheLongestAckTimeoutAndLeaseNeverFireEarly) {
    broker_.set_auto_ack(false);
    const std::int64_t id = add("a");
    auto o = options();
    o.ack_timeout = kMaxDuration;
    o.lease_ttl = kMaxDuration;
    o.poll_interval = kMaxDuration;
    auto d = dispatcher(o);
    settle(*d);
    clock_.advance(std::chrono::hours(24 * 365));
    settle(*d);
    EXPECT_EQ(state_of(id), std::make_pair(0, 0)) << "the publish timed out at once";
    broker_.ack_all();
    settle(*d);
    EXPECT_EQ(state_of(id), std::nullopt);
}

// ---- expiry and records in flight ----

TEST_F(DispatcherFaults, ARecordInFlightIsNotExpiredUnderItsAcknowledgement) {
    broker_.set_auto_ack(false);
    Message m = Message::text("t", "x");
    m.ttl = 5s;
    const std::int64_t id = outbox_.add(m);
    add("other");  // moves data_version, so the poll looks at expiry
    auto o = options();
    o.retention = 1h;
    auto d = dispatcher(o);
    settle(*d);
    ASSERT_EQ(broker_.held(), 2u);
    clock_.advance(10s);
    settle(*d);
    EXPECT_EQ(state_of(id), std::make_pair(0, 0)) << "expired while its publish was in flight";
    broker_.ack_all();
    settle(*d);
    EXPECT_EQ(state_of(id), std::make_pair(1, 0));
    EXPECT_EQ(d->stats().expired, 0u);
    EXPECT_EQ(d->stats().delivered, 2u);
}

}  // namespace

namespace {

// ---- found in review ----

// A record the broker acknowledged just before the poison message made it drop the connection
// is not the poison: its acknowledgement was queued but not collected when the loss was noticed.
TEST_F(DispatcherFaults, AnAcknowledgedRecordBeforeThePoisonIsNotBlamed) {
    broker_.disconnect_on_topic("t/poison");
    const std::int64_t good = add("t/good");
    const std::int64_t poison = add("t/poison");
    for (int i = 0; i < 5; ++i) {
        add("t/more/" + std::to_string(i));
    }
    auto d = dispatcher();
    run(*d, 2000);
    EXPECT_EQ(state_of(good), std::nullopt) << last_error_of(good);
    EXPECT_EQ(state_of(poison), std::make_pair(2, 3));
    EXPECT_EQ(count("state = 0"), 0);
}

// `dues` overflows; when the forgotten retry comes due, the records taken from `dues` must not be
// chosen a second time by the pass that restarts.
TEST_F(DispatcherFaults, AForgottenDueNeverPublishesARecordTwiceInOneStep) {
    {
        SQLite::Transaction tx(db_);
        for (int i = 0; i < 4097; ++i) {
            add("t/" + std::to_string(i));
        }
        tx.commit();
    }
    const std::int64_t wall = clock_.wall_ms();
    db_.exec("UPDATE outpost_records SET next_attempt_at = " + std::to_string(wall + 50'000));
    db_.exec("UPDATE outpost_records SET next_attempt_at = " + std::to_string(wall + 5'000) +
             " WHERE id = 1");  // in `dues`, due first
    db_.exec("UPDATE outpost_records SET next_attempt_at = " + std::to_string(wall + 10'000) +
             " WHERE id = 4097");  // no room in `dues`: forgotten_due
    auto d = dispatcher();
    for (int i = 0; i < 40; ++i) {
        d->run_once();  // the pass walks everything once; nothing is due
    }
    ASSERT_EQ(broker_.published(), 0u);
    clock_.advance(10s);
    d->run_once();
    int ones = 0;
    for (const Record& r : broker_.log()) {
        ones += r.id == 1 ? 1 : 0;
    }
    EXPECT_EQ(ones, 1) << "record 1 published " << ones << " times in one step";
    for (int i = 0; i < 50; ++i) {
        d->run_once();
    }
    EXPECT_EQ(count("id IN (1, 4097)"), 0);
    EXPECT_EQ(d->stats().in_flight, 0u) << "`sent` counts a publish that has no flight";
}

// A higher-priority record committed by another process (no wake-up; the poll notices) while
// the pass runs through a lower priority, then a lower-priority one the pass reaches before the
// next poll: the first lies behind the cursor and must still be found.
TEST_F(DispatcherFaults, AHigherPriorityRecordFromAnotherProcessIsNotStranded) {
    for (int i = 0; i < 3; ++i) {
        add("low/" + std::to_string(i));
    }
    auto o = options();
    o.window = 1;
    auto d = dispatcher(o);
    d->run_once();  // low/0 out; the pass stands at it
    auto insert = [&](const std::string& topic, int priority) {
        db_.exec(
            "INSERT INTO outpost_records (uid, topic, payload, qos, retain, priority, "
            "created_at) VALUES ('" +
            topic + "', '" + topic + "', x'00', 1, 0, " + std::to_string(priority) + ", " +
            std::to_string(clock_.wall_ms()) + ")");
        return db_.getLastInsertRowid();
    };
    const std::int64_t alarm = insert("alarm", 7);  // another process, e.g. `outpost add`
    insert("late", 0);
    for (int i = 0; i < 6; ++i) {
        d->run_once();  // no poll yet: the pass reaches "late"
    }
    for (int i = 0; i < 50; ++i) {
        clock_.advance(1s);
        d->run_once();
    }
    EXPECT_EQ(state_of(alarm), std::nullopt) << "the alarm is still pending, never sent";
    EXPECT_EQ(count("state = 0"), 0);
}

// A requeue by another process noticed at a poll whose requeue_count() read fails must be
// noticed at a later poll.
TEST_F(DispatcherFaults, ARequeueSeenByAFailedPollIsNotLost) {
    const std::int64_t a = add("a");
    add("b");
    db_.exec("UPDATE outpost_records SET state = 2, attempts = 3, done_at = 1 WHERE id = " +
             std::to_string(a));  // dead
    auto d = faulty_dispatcher();
    run(*d, 20);
    ASSERT_EQ(state_of(a)->first, 2);
    ASSERT_EQ(count("state = 0"), 0);
    // `outpost retry` in another process.
    db_.exec("UPDATE outpost_records SET state = 0, attempts = 0, done_at = NULL WHERE id = " +
             std::to_string(a));
    faulty().fail(Op::requeue_count);
    for (int i = 0; i < 60; ++i) {
        clock_.advance(1s);
        d->run_once();
    }
    EXPECT_GT(faulty().calls(Op::requeue_count), 1);
    EXPECT_EQ(state_of(a), std::nullopt) << "the requeued record was never sent again";
}

// A link that dies a couple of seconds after each connect, before the first publish is
// answered (a flapping uplink, or two devices sharing a client id kicking each other off): the
// record at the head is innocent and must never lose an attempt to it.
TEST_F(DispatcherFaults, AFlakyLinkNeverKillsTheHeadRecord) {
    broker_.set_auto_ack(false);
    const std::int64_t a = add("a");
    auto o = options();
    o.ack_timeout = 1h;  // the clock jumps below must not time the publish out
    auto d = dispatcher(o);
    for (int i = 0; i < 9; ++i) {
        settle(*d);  // (re)connects, publishes a
        clock_.advance(2s);
        broker_.drop_connection();
        settle(*d);
        clock_.advance(120s);  // past any reconnect or retry backoff
    }
    EXPECT_EQ(state_of(a), std::make_pair(0, 0))
        << "a: state " << state_of(a)->first << ", attempts " << state_of(a)->second;
    d->stop(0ms);
}

// ... nor can it with other records flowing: the suspect is sent alone after the others were
// acknowledged, and the flaky link then happens to die while others are out, not it alone.
TEST_F(DispatcherFaults, ASuspectIsSentAloneAndClearedWhenAcknowledged) {
    broker_.set_auto_ack(false);
    const std::int64_t a = add("a", "k");
    const std::int64_t a2 = add("a2", "k");
    for (int i = 0; i < 5; ++i) {
        add("other/" + std::to_string(i));
    }
    auto d = dispatcher();
    settle(*d);
    ASSERT_EQ(broker_.held(), 6u);  // a and the five others; a2 waits behind a
    broker_.drop_connection();      // right after: a is the suspect
    settle(*d);
    // Next connection: the others first, a (and so its key) held back.
    ASSERT_EQ(broker_.held(), 5u);
    for (const Record& r : broker_.log()) {
        EXPECT_NE(r.id, a2) << "a later record of the suspect's key overtook it";
    }
    broker_.ack_all();
    settle(*d);
    ASSERT_EQ(broker_.held(), 1u);  // a, alone
    EXPECT_EQ(broker_.log().back().id, a);
    broker_.ack_all();
    settle(*d);
    broker_.ack_all();
    settle(*d);
    EXPECT_EQ(count(), 0);
    EXPECT_EQ(state_of(a), std::nullopt);
    expect_per_key_order(broker_.log());
}

// While a suspect waits for the window to empty (it goes alone), the threaded loop sleeps until
// the answers come: it must not spin although the pass has more to look at.
TEST_F(DispatcherFaults, TheLoopSleepsWhileASuspectWaitsForTheWindowToEmpty) {
    CountingClock clock;
    broker_.disconnect_on_topic("t/poison");
    broker_.set_auto_ack(false);
    add("t/poison");
    {
        SQLite::Transaction tx(db_);
        for (int i = 0; i < 50; ++i) {
            add("t/good/" + std::to_string(i));
        }
        tx.commit();
    }
    DispatcherOptions o;
    o.window = 5;
    o.reconnect_initial = 50ms;
    o.reconnect_max = 50ms;
    Dispatcher d(store(), broker_, o, clock);
    d.start();
    auto wait_until = [](auto done) {
        const auto deadline = std::chrono::steady_clock::now() + 20s;
        while (!done() && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(1ms);
        }
        return done();
    };
    // The poison dropped the first connection; on the next one five good records are out.
    ASSERT_TRUE(wait_until([&] { return broker_.connect_calls() >= 2 && broker_.held() == 5; }));
    broker_.ack(1);  // the connection works: the suspect now waits for the window to empty
    ASSERT_TRUE(wait_until([&] { return d.stats().delivered == 1; }));
    const std::uint64_t before = clock.calls.load();
    std::this_thread::sleep_for(1s);
    const std::uint64_t calls = clock.calls.load() - before;
    EXPECT_LT(calls, 2000u) << "the dispatcher thread spins while the suspect waits";
    broker_.set_auto_ack(true);
    broker_.ack_all();
    EXPECT_TRUE(wait_until([&] { return count("state = 0 AND topic <> 't/poison'") == 0; }));
    d.stop(0ms);
}

}  // namespace
