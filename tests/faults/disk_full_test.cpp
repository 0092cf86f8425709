// Disk full for real (issue 12, part 4): the app's file on a 2 MiB tmpfs this test mounts, a real
// mosquitto, and the mosquitto_sub oracle. It proves that when the partition fills:
//  - add() throws a StorageError that says the disk is full (code SQLITE_FULL, transient) before
//    any of the app's commits fails for want of space, and the app's transaction survives it: the
//    app's own earlier statements are still there, and it can roll back, or roll back to its
//    savepoint and commit what fits;
//  - nothing committed is lost: every committed event arrives (judged by plain SQLite and the
//    subscriber's log, never by outpost's stats), in order per key, and no rolled-back one;
//  - the dispatcher keeps delivering on the full partition and gives the space back, and add()
//    works again in the same process, on the same Outbox, with no restart of anything.
// How: the broker is frozen (SIGSTOP: the subscriber stays subscribed, the dispatcher's connects
// time out, so no publish is in flight) while the app commits events until add() refuses; then
// the broker thaws and the app retries add() until it succeeds. The app is the oracle's
// add_event: it resets its read before it writes, so its checkpoints complete and the partition
// fills with records, not with WAL.
//
// Unlike tests/unit/disk_full_test.cpp (a FakeBroker, judged by that broker's log and the
// library's counts, after a failure anywhere in the app's transaction), this one is judged by the
// fault oracle with a real broker, several ordering keys and rolled-back events, and it checks
// the app's transaction after add()'s disk-full error and add() again on the same Outbox.
#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>

#include <outpost/mqtt_broker.hpp>
#include <outpost/outpost.hpp>

#include "oracle.hpp"
#include "subscriber.hpp"
#include "testkit/mosquitto.hpp"
#include "testkit/temp_dir.hpp"
#include "testkit/tmpfs.hpp"

namespace outpost::faults {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using testing::Tmpfs;

bool disk_full_code(int code) {
    return (code & 0xff) == SQLITE_FULL;
}

// A busy app transaction (the oracle's add_event takes the write lock first, with the busy
// timeout, so only a dispatcher holding it longer than that): nothing is committed and the app
// retries. Nothing to do with space.
bool snapshot_busy(const SQLite::Exception& e) {
    return (e.getErrorCode() & 0xff) == SQLITE_BUSY;
}

std::int64_t count_where(SQLite::Database& db, const std::string& sql, const std::string& arg) {
    SQLite::Statement q(db, sql);
    q.bind(1, arg);
    q.executeStep();
    return q.getColumn(0).getInt64();
}

const char* const kNotesSchema =
    "CREATE TABLE IF NOT EXISTS app_notes (note TEXT PRIMARY KEY NOT NULL)";

using Writer = Event (*)(SQLite::Database&, Outbox&, const std::string&, bool, std::mt19937_64&);

struct App {
    const char* name;
    Writer write;
    // The partition fills with records (then the app's transaction is probed at the full
    // disk), or with WAL, which comes back as soon as the app pauses (no probe: it would find
    // room).
    bool full_of_records;
};

class FaultDiskFull : public ::testing::TestWithParam<App> {};

TEST_P(FaultDiskFull, AddRefusesKeepsTheAppsTransactionDeliversAllAndRecovers) {
    const Writer write = GetParam().write;
    Tmpfs part(2 << 20);
    if (!part.mounted()) {
        GTEST_SKIP() << part.error();
    }
    const std::string name = GetParam().name;
    std::mt19937_64 rng(scenario_seed(name));
    const std::string path = part.file("app.db");

    testing::Mosquitto mosquitto;
    testing::Subscriber sub(mosquitto.uri(), std::string(kTopicPrefix) + "#", 1);
    // Frozen, the broker still holds the subscriber's session, and the dispatcher's connects
    // time out before any publish: nothing is in flight while the disk fills.
    ASSERT_EQ(::kill(mosquitto.pid(), SIGSTOP), 0);
    struct Thaw {
        pid_t pid;
        ~Thaw() { ::kill(pid, SIGCONT); }
    } thaw{mosquitto.pid()};

    SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    Outbox outbox(db);  // first, on the new file: it chooses auto_vacuum = INCREMENTAL
    db.exec(kAppSchema);
    db.exec(kNotesSchema);
    SqliteStore store(path);
    MqttOptions mqtt;
    mqtt.servers = {mosquitto.uri()};
    mqtt.client_id = "fault-disk-full-" + std::to_string(::getpid());
    mqtt.connect_timeout = 1s;  // its minimum
    MqttBroker broker(mqtt);
    DispatcherOptions options;
    options.poll_interval = 100ms;
    options.reconnect_initial = 50ms;
    options.reconnect_max = 250ms;
    options.connect_timeout = 1s;
    Dispatcher dispatcher(store, broker, options);
    dispatcher.start();
    const std::uint64_t free_at_start = part.free_bytes();

    const std::vector<std::string> keys{"k0", "k1", "k2", "k3"};
    auto key = [&] { return keys[rng() % keys.size()]; };

    // 1. Fill until add() itself refuses, and keeps refusing for half a second (a retrying app:
    // a refusal the dispatcher's upkeep of the WAL lifts at once is no full partition). A commit
    // may fail first (the WAL append finds no room): that transaction is rolled back and the
    // app goes on, as an app would.
    std::size_t commit_failures = 0, committed_before_full = 0, refusals = 0;
    std::string refusal;
    bool refusing = false;
    Clock::time_point refused_since{};
    const auto fill_deadline = Clock::now() + 60s;
    while (!refusing || Clock::now() - refused_since < 500ms) {
        ASSERT_LT(Clock::now(), fill_deadline) << "add() never refused; " << part.listing();
        ASSERT_LT(commit_failures, 1000u)
            << "commits keep failing for want of space but add() never says the disk is full; "
            << part.listing();
        try {
            const bool roll_back = rng() % 8 == 0;
            write(db, outbox, key(), roll_back, rng);
            committed_before_full += roll_back ? 0 : 1;
            refusing = false;
        } catch (const StorageError& e) {
            ASSERT_TRUE(disk_full_code(e.code())) << e.what();
            refusal = e.what();
            ++refusals;
            if (!refusing) {
                refusing = true;
                refused_since = Clock::now();
            }
            std::this_thread::sleep_for(20ms);  // a retrying app, not a synchronisation
        } catch (const SQLite::Exception& e) {  // the app's own statement or its commit
            if (snapshot_busy(e)) {
                continue;  // the oracle's deferred transaction met a commit of the dispatcher
            }
            ASSERT_TRUE(disk_full_code(e.getErrorCode()))
                << e.what() << " (extended code " << e.getExtendedErrorCode() << ")";
            ++commit_failures;
        }
    }
    const std::uint64_t free_when_full = part.free_bytes();
    std::cout << "full after " << committed_before_full << " events (" << commit_failures
              << " commits failed, " << refusals << " refusals): " << part.listing()
              << "\n  add(): " << refusal << std::endl;
    EXPECT_EQ(commit_failures, 0u) << "add() must refuse before the app's commits find no room";
    if (GetParam().full_of_records) {
        EXPECT_GT(committed_before_full, 500u);
    }
    EXPECT_NE(refusal.find("disk is full"), std::string::npos) << refusal;

    // 2. The app's transaction after add()'s refusal: its earlier statements are intact. Once it
    // rolls back to its savepoint and commits what fits (its note), once it rolls back it all.
    // The partition hovers at the line add() draws (a WAL cut back to its limit gives a few
    // pages back): an attempt whose add() finds room commits as any event would, and the app
    // tries again, as it would.
    std::vector<std::string> notes_committed, notes_not_committed;
    std::size_t probe_adds = 0;
    for (int probe = 0; probe < (GetParam().full_of_records ? 2 : 0); ++probe) {
        bool refused = false;
        for (int attempt = 0; !refused; ++attempt) {
            ASSERT_LT(attempt, 5000) << "add() found room 5000 times; " << part.listing();
            const std::string note =
                "note-" + std::to_string(probe) + "-" + std::to_string(attempt);
            char uid[17];
            std::snprintf(uid, sizeof uid, "%016llx", static_cast<unsigned long long>(rng()));
            SQLite::Transaction tx(db, SQLite::TransactionBehavior::IMMEDIATE);
            db.exec("INSERT INTO app_notes (note) VALUES ('" + note + "')");
            db.exec("SAVEPOINT event");
            std::int64_t seq = 0;
            {
                SQLite::Statement next(db,
                                       "SELECT coalesce(max(seq), 0) + 1 FROM app_events "
                                       "WHERE key = 'k0'");
                next.executeStep();
                seq = next.getColumn(0).getInt64();
            }
            db.exec("INSERT INTO app_events (uid, key, seq) VALUES ('" + std::string(uid) +
                    "', 'k0', " + std::to_string(seq) + ")");
            Message m =
                Message::text(std::string(kTopicPrefix) + "k0", payload_of(Event{uid, "k0", seq}));
            m.key = "k0";
            try {
                outbox.add(m);
                db.exec("RELEASE event");
                tx.commit();  // there was room: an event like any other
                ++probe_adds;
                notes_committed.push_back(note);
                continue;
            } catch (const StorageError& e) {
                refused = true;
                EXPECT_EQ(e.kind(), ErrorKind::storage);
                EXPECT_TRUE(disk_full_code(e.code())) << e.what();
                EXPECT_TRUE(e.transient()) << e.what();
            } catch (const SQLite::Exception& e) {  // the commit found no room
                EXPECT_TRUE(disk_full_code(e.getErrorCode())) << e.what();
                notes_not_committed.push_back(note);
                continue;
            }
            EXPECT_EQ(count_where(db, "SELECT count(*) FROM app_notes WHERE note = ?", note), 1)
                << "add()'s refusal undid the app's statement before its savepoint";
            EXPECT_EQ(count_where(db, "SELECT count(*) FROM app_events WHERE uid = ?", uid), 1)
                << "add()'s refusal undid the app's statement right before it";
            if (probe == 0) {
                db.exec("ROLLBACK TO event");
                db.exec("RELEASE event");
                try {
                    tx.commit();
                    notes_committed.push_back(note);
                } catch (const SQLite::Exception& e) {  // even the note did not fit
                    EXPECT_TRUE(disk_full_code(e.getErrorCode())) << e.what();
                    notes_not_committed.push_back(note);
                }
            } else {
                notes_not_committed.push_back(note);  // the Transaction rolls it all back
            }
        }
    }

    // 3. The broker thaws: the dispatcher delivers on the full partition and frees space; the
    // app retries add() (each attempt its own transaction) until it succeeds.
    ASSERT_EQ(::kill(mosquitto.pid(), SIGCONT), 0);
    const auto thawed = Clock::now();
    std::size_t refused_after_thaw = 0;
    std::string last_refusal;
    for (bool added = false; !added;) {
        ASSERT_LT(Clock::now(), thawed + 60s)
            << "add() still refused 60 s after the broker came back (" << refused_after_thaw
            << " times): " << last_refusal << "; " << part.listing()
            << "; dispatcher: " << dispatcher.stats().last_error;
        try {
            write(db, outbox, key(), false, rng);
            added = true;
        } catch (const StorageError& e) {
            ASSERT_TRUE(disk_full_code(e.code())) << e.what();
            last_refusal = e.what();
        } catch (const SQLite::Exception& e) {
            ASSERT_TRUE(disk_full_code(e.getErrorCode()) || snapshot_busy(e)) << e.what();
            last_refusal = e.what();
        }
        if (!added) {
            ++refused_after_thaw;
            std::this_thread::sleep_for(20ms);  // a retrying app, not a synchronisation
        }
    }
    const double recovery_s = std::chrono::duration<double>(Clock::now() - thawed).count();
    // Once the dispatcher has delivered the backlog (and deleted it), the space is back and
    // the app goes on adding normally: no refusal any more.
    EXPECT_TRUE(dispatcher.drain(60s)) << dispatcher.stats().last_error << "; " << part.listing();
    const std::uint64_t free_after = part.free_bytes();
    std::cout << "add() worked again " << recovery_s << " s after the broker came back ("
              << refused_after_thaw << " refusals); free bytes: at start " << free_at_start
              << ", full " << free_when_full << ", drained " << free_after << "; " << part.listing()
              << std::endl;
    // On the partition left after the drain a tight loop of commits can still find no room
    // for a moment (the space is looked at once per checkpoint attempt): add() then refuses, or
    // a commit fails, and the app retries; both are counted.
    std::size_t committed_after = 0, refused_after_drain = 0, commit_failures_after = 0;
    const auto after_deadline = Clock::now() + 60s;
    for (std::size_t i = 0, n = sized<std::size_t>(300, 3000); i < n;) {
        ASSERT_LT(Clock::now(), after_deadline) << part.listing();
        const bool roll_back = rng() % 8 == 0;
        try {
            write(db, outbox, key(), roll_back, rng);
        } catch (const StorageError& e) {
            ASSERT_TRUE(disk_full_code(e.code())) << e.what();
            ++refused_after_drain;
            std::this_thread::sleep_for(20ms);  // a retrying app
            continue;
        } catch (const SQLite::Exception& e) {
            // A commit that found no room: the Outbox looks at the free space once per
            // checkpoint attempt, and here the dispatcher writes too (seen with the oracle's
            // app, whose WAL grows with every commit). Nothing committed; the app retries.
            ASSERT_TRUE(snapshot_busy(e) || disk_full_code(e.getErrorCode())) << e.what();
            commit_failures_after += disk_full_code(e.getErrorCode()) ? 1 : 0;
            continue;
        }
        committed_after += roll_back ? 0 : 1;
        ++i;
    }
    std::cout << refused_after_drain << " refusals and " << commit_failures_after
              << " commits without room after the drain" << std::endl;
    EXPECT_TRUE(dispatcher.drain(60s)) << dispatcher.stats().last_error << "; " << part.listing();

    const std::vector<Event> committed = committed_events(path);
    EXPECT_TRUE(sub.wait_for_distinct("outpost-id", committed.size(), 60s))
        << sub.count() << " arrivals for " << committed.size() << " committed events";
    dispatcher.stop();

    std::vector<std::string> arrived;
    for (const testing::Received& r : sub.messages()) {
        arrived.push_back(r.payload);
    }
    const Tally tally = judge(committed, arrived, outbox_states(path));
    report(name, tally);
    EXPECT_TRUE(tally.sound()) << tally.line(name);
    // A mark that failed for want of space is kept in memory and written again, never re-sent;
    // only a lost connection re-sends, at most what was in flight: the window. (The broker
    // thawed has the dispatcher's abandoned connection attempts to work through first.)
    EXPECT_LE(tally.duplicated, options.window) << tally.line(name);
    EXPECT_EQ(committed.size(), committed_before_full + probe_adds + 1 + committed_after);

    // The notes: in the file exactly when their commit succeeded.
    SQLite::Database check(path, SQLite::OPEN_READONLY);
    for (const std::string& n : notes_committed) {
        EXPECT_EQ(count_where(check, "SELECT count(*) FROM app_notes WHERE note = ?", n), 1) << n;
    }
    for (const std::string& n : notes_not_committed) {
        EXPECT_EQ(count_where(check, "SELECT count(*) FROM app_notes WHERE note = ?", n), 0) << n;
    }
    EXPECT_EQ(integrity_check(path), "ok");
    // The space came back: the delivered records' pages went back to the partition.
    EXPECT_GT(free_after, free_when_full + free_at_start / 4) << part.listing();
}

// One app, the oracle's add_event. (A second app, whose read ran until after the commit, once
// showed a partition filled with WAL instead of records: the oracle's add_event resets its read
// now, so it would be this one again.)
INSTANTIATE_TEST_SUITE_P(Faults, FaultDiskFull,
                         ::testing::Values(App{"disk-full", &add_event, true}),
                         [](const auto& info) {
                             std::string n = info.param.name;
                             std::replace(n.begin(), n.end(), '-', '_');
                             return n;
                         });

}  // namespace
}  // namespace outpost::faults
