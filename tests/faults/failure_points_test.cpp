// Every failure point: whichever call to the file system fails (open, read, write, sync, lock,
// truncate; with an I/O error, a full disk or can't-open; once or from then on), a typed error
// reaches the caller (never a crash, an abort or a hang), nothing committed is lost, and once
// the fault clears the same process, with the same Outbox and Dispatcher objects, recovers.
//
// How: the fault VFS (support/fault_vfs.hpp) is this process's default VFS, so the app's
// connection and the SqliteStore's use it. One workload (the first open and migration, adds in
// app transactions, one rolled back, a dispatcher draining with run_once() into a FakeBroker, a
// poison message parked dead and requeued, a purge of delivered records; in the checkpoint
// variants also large app blobs that make outpost's own WAL hook checkpoint) runs with the N-th
// counted call failing, for N = 1, 2, 3, ... until a run in which no call failed. Every outpost
// call must return or throw outpost::Error; the app's own statements may throw
// SQLite::Exception (they are the app's). Then the fault is disarmed and the same objects must
// add, requeue and drain without an error. The oracle: the business rows read back by plain
// SQLite (every commit that returned is there, none that rolled back, and a commit that threw
// may or may not be), and the FakeBroker's log of what it was handed as the arrivals.
//
// One aggregated scenario line per variant (summed over its N).
#include <gtest/gtest.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <iostream>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include <outpost/dispatcher.hpp>
#include <outpost/error.hpp>
#include <outpost/outbox.hpp>
#include <outpost/sqlite_store.hpp>

#include "fake_broker.hpp"
#include "fault_vfs.hpp"
#include "oracle.hpp"
#include "testkit/temp_dir.hpp"

namespace outpost::faults {
namespace {

using namespace std::chrono_literals;

struct Trial {
    testing::TempDir dir;
    std::string path = dir.file("app.db");
    std::unique_ptr<SQLite::Database> db;
    bool schema = false;
    std::unique_ptr<Outbox> outbox;
    testing::FakeBroker broker;
    std::unique_ptr<SqliteStore> store;
    std::unique_ptr<Dispatcher> dispatcher;
    std::vector<std::int64_t> dead;
    std::mt19937_64 rng{42};

    std::vector<std::string> returned;  // uids whose commit returned
    std::set<std::string> uncertain;    // uids whose commit threw
    std::set<std::string> rolled_back;
    std::size_t typed = 0, app_errors = 0, requeued = 0, purged = 0;
    std::atomic<std::size_t> dispatcher_errors{0};  // on the dispatcher's thread when started
    std::vector<std::string> problems;  // untyped errors, failures after the fault cleared
    bool recovering = false;            // the fault is gone: no call may fail any more
    bool blobs = false;                 // the workload also writes large app blobs

    void problem(const std::string& what) {
        if (problems.size() < 10) {
            problems.push_back((recovering ? "after the fault cleared: " : "") + what);
        }
    }

    // Runs one outpost call: an outpost::Error is the typed error the caller is owed.
    template <class F>
    bool outpost_call(const std::string& what, F f) {
        try {
            f();
            return true;
        } catch (const Error& e) {
            ++typed;
            if (recovering) {
                problem(what + ": " + e.what());
            }
        } catch (const SQLite::Exception& e) {
            problem(what + " leaked SQLite::Exception: " + e.what());
        } catch (const std::exception& e) {
            problem(what + " threw a non-outpost exception: " + e.what());
        }
        return false;
    }

    // Runs one of the app's own SQLite calls: SQLite::Exception is the app's to see.
    template <class F>
    bool app_call(const std::string& what, F f) {
        try {
            f();
            return true;
        } catch (const SQLite::Exception& e) {
            ++app_errors;
            if (recovering) {
                problem(what + ": " + e.what() + " (" + std::to_string(e.getExtendedErrorCode()) +
                        ")");
            }
        } catch (const std::exception& e) {
            problem(what + " threw: " + e.what());
        }
        return false;
    }

    DispatcherOptions options() {
        DispatcherOptions o;
        o.retention = std::chrono::hours(1);  // delivered records wait for the purge below
        o.retry.max_attempts = 1;             // the poison message goes dead at its rejection
        o.retry.initial_backoff = 1ms;
        o.poll_interval = 1ms;
        o.on_event = [this](const DispatchEvent& e) {
            if (e.kind == DispatchEvent::Kind::dead) {
                dead.push_back(e.record_id);
            } else if (e.kind == DispatchEvent::Kind::error) {
                ++dispatcher_errors;  // how the dispatcher reports a storage error
            }
        };
        return o;
    }

    // The app starts (again, for what a fault left unmade): its connection, its table, the
    // Outbox (the first open creates and migrates the outpost tables), the store, the dispatcher.
    void open() {
        if (!db) {
            app_call("opening the app's connection", [&] {
                auto d = std::make_unique<SQLite::Database>(
                    path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
                d->exec("PRAGMA synchronous = FULL");
                db = std::move(d);
            });
        }
        if (db && !schema) {
            schema = app_call("the app's schema", [&] { db->exec(kAppSchema); });
        }
        if (db && schema && !outbox) {
            outpost_call("Outbox (first open, migration)",
                         [&] { outbox = std::make_unique<Outbox>(*db); });
        }
        if (outbox && !store) {
            outpost_call("SqliteStore", [&] { store = std::make_unique<SqliteStore>(path); });
        }
        if (store && !dispatcher) {
            outpost_call("Dispatcher", [&] {
                dispatcher = std::make_unique<Dispatcher>(*store, broker, options());
            });
        }
    }

    // One app transaction: a business row and its message per key; commits unless roll_back.
    void transaction(const std::vector<std::string>& keys, bool roll_back) {
        if (!outbox) {
            return;
        }
        std::vector<std::string> uids;
        bool committing = false;
        app_call("an app transaction", [&] {
            // IMMEDIATE: it reads (the seq) before it writes, and a deferred transaction doing
            // so fails at once with SQLITE_BUSY_SNAPSHOT when a started dispatcher commits in
            // between (the app's concern, not outpost's; see Outbox::add).
            SQLite::Transaction tx(*db, SQLite::TransactionBehavior::IMMEDIATE);
            for (const std::string& key : keys) {
                char uid[17];
                std::snprintf(uid, sizeof uid, "%016llx", static_cast<unsigned long long>(rng()));
                SQLite::Statement next(
                    *db, "SELECT coalesce(max(seq), 0) + 1 FROM app_events WHERE key = ?");
                next.bind(1, key);
                next.executeStep();
                const Event e{uid, key, next.getColumn(0).getInt64()};
                SQLite::Statement row(*db,
                                      "INSERT INTO app_events (uid, key, seq) VALUES (?, ?, ?)");
                row.bind(1, e.uid);
                row.bind(2, e.key);
                row.bind(3, e.seq);
                row.exec();
                Message m = Message::text(kTopicPrefix + key, payload_of(e));
                m.key = key;
                if (!outpost_call("Outbox::add", [&] { outbox->add(m); })) {
                    return;  // the app gives up: the transaction rolls back
                }
                uids.push_back(e.uid);
            }
            if (roll_back) {
                return;
            }
            committing = true;
            tx.commit();
            committing = false;
            returned.insert(returned.end(), uids.begin(), uids.end());
            uids.clear();
        });
        for (const std::string& uid : uids) {
            (committing ? uncertain : rolled_back).insert(uid);
        }
    }

    void dispatch(int steps) {
        if (!dispatcher) {
            return;
        }
        for (int i = 0; i < steps; ++i) {
            outpost_call("Dispatcher::run_once", [&] { dispatcher->run_once(); });
        }
    }

    void requeue() {
        if (!outbox) {
            return;
        }
        for (const std::int64_t id : dead) {
            outpost_call("Outbox::requeue", [&] {
                try {
                    outbox->requeue(id);
                    ++requeued;
                } catch (const NotFound&) {
                    // requeued already (the first try's commit went through)
                }
            });
        }
        dead.clear();
    }

    void purge() {
        if (!store) {
            return;
        }
        outpost_call("SqliteStore::purge_delivered", [&] {
            purged += store->purge_delivered(SystemClock::instance().wall_ms() + 1000);
        });
    }

    void workload() {
        open();
        transaction({"p"}, false);  // the poison message: rejected, dead, requeued
        broker.reject_next(1, "PUBACK reason 0x99 payload format invalid", true, 0x99);
        transaction({"k0", "k1"}, false);
        transaction({"k0"}, true);
        transaction({"k1"}, false);
        dispatch(8);
        if (db && blobs) {
            // 1.5 MB app blobs, each in a transaction of its own: the WAL passes the Outbox's
            // checkpoint limit (1,000 pages), so outpost's WAL hook checkpoints (and the WAL
            // restarts, and journal_size_limit truncates it) under the fault.
            for (int i = 0; i < 3; ++i) {
                app_call("an app blob", [&] {
                    db->exec(
                        "CREATE TABLE IF NOT EXISTS app_blobs (id INTEGER PRIMARY KEY, data BLOB)");
                    SQLite::Statement q(*db, "INSERT INTO app_blobs (data) VALUES (?)");
                    const std::vector<unsigned char> data(1536 * 1024,
                                                          static_cast<unsigned char>(i));
                    q.bind(1, data.data(), static_cast<int>(data.size()));
                    q.exec();
                });
            }
            transaction({"k1"}, false);
        }
        if (db) {
            app_call("the app's checkpoint", [&] { db->exec("PRAGMA wal_checkpoint(PASSIVE)"); });
        }
        requeue();
        transaction({"k0", "k1"}, false);
        dispatch(8);
        purge();
    }

    // The fault has cleared: the same objects must work, and deliver everything committed.
    void recover() {
        recovering = true;
        open();
        if (!dispatcher) {
            problem("the app could not start again");
            return;
        }
        transaction({"k0", "k1"}, false);
        outpost_call("Outbox::requeue_all_dead", [&] { outbox->requeue_all_dead(); });
        dead.clear();
        const auto deadline = std::chrono::steady_clock::now() + 30s;
        while (std::chrono::steady_clock::now() < deadline) {
            outpost_call("Dispatcher::run_once", [&] { dispatcher->run_once(); });
            bool pending = true;
            outpost_call("SqliteStore::has_pending", [&] { pending = store->has_pending(); });
            if (!pending && dispatcher->stats().in_flight == 0) {
                break;
            }
        }
        outpost_call("SqliteStore::has_pending", [&] {
            if (store->has_pending()) {
                problem("the dispatcher did not drain after the fault cleared: " +
                        dispatcher->stats().last_error);
            }
        });
    }
};

struct Variant {
    std::string name;
    vfs::FailurePlan plan;
    std::uint64_t stride;  // N advances by this (1 = every call)
    bool blobs = false;    // Trial::blobs
};

// The oracle on what a run left: the file sound, every commit that returned there and no row
// nobody committed, everything committed handed to the broker in order per key. Adds the run's
// tally to `totals`; false when the file is not sound (nothing more to learn from it).
bool check(Trial& run, const std::string& where, Tally& totals) {
    run.dispatcher.reset();  // stops it, before the oracle reads the file
    run.store.reset();
    const std::string integrity = integrity_check(run.path);
    EXPECT_EQ(integrity, "ok") << where;
    if (integrity != "ok") {
        return false;
    }
    const std::vector<Event> committed = committed_events(run.path);
    std::set<std::string> present;
    for (const Event& e : committed) {
        present.insert(e.uid);
        EXPECT_TRUE(std::find(run.returned.begin(), run.returned.end(), e.uid) !=
                        run.returned.end() ||
                    run.uncertain.count(e.uid) != 0)
            << where << ": a row nobody committed: " << payload_of(e);
    }
    for (const std::string& uid : run.returned) {
        EXPECT_EQ(present.count(uid), 1u) << where << ": a commit that returned was lost";
    }
    std::vector<std::string> arrived;
    for (const Record& r : run.broker.log()) {
        arrived.emplace_back(r.message.payload_view());
    }
    const Tally t = judge(committed, arrived, outbox_states(run.path));
    EXPECT_TRUE(t.sound()) << where << ": " << t.line(where) << " "
                           << (t.examples.empty() ? "" : t.examples.front());
    // At least once: a record whose mark a fault undid is sent again, once per failed write of
    // its outcome; never more than every record twice over.
    EXPECT_LE(t.duplicated, 2 * committed.size()) << where;
    totals.committed += t.committed;
    totals.lost += t.lost;
    totals.rolled_back_sent += t.rolled_back_sent;
    totals.duplicated += t.duplicated;
    totals.reordered += t.reordered;
    totals.stuck += t.stuck;
    return true;
}

void sweep(const Variant& v) {
    vfs::install(true);
    Tally totals;
    std::uint64_t runs = 0, fired = 0, silent = 0, typed = 0, app_errors = 0, calls = 0,
                  dispatcher_errors = 0;
    const auto started = std::chrono::steady_clock::now();
    for (std::uint64_t n = 1;; n += v.stride) {
        Trial run;
        run.blobs = v.blobs;
        vfs::FailurePlan plan = v.plan;
        plan.nth = n;
        vfs::arm(plan);
        run.workload();
        const std::uint64_t failed = vfs::failed_calls();
        calls = vfs::counted_calls();
        vfs::disarm();
        run.recover();
        ++runs;
        typed += run.typed;
        app_errors += run.app_errors;
        dispatcher_errors += run.dispatcher_errors;
        const std::string where = v.name + " N=" + std::to_string(n);
        EXPECT_TRUE(run.problems.empty()) << where << ": " << run.problems.front();
        if (failed != 0) {
            ++fired;
            // Some failures are absorbed without an error to anyone (SQLite retries or ignores a
            // few calls, SqliteStore retries a write that hit a full disk once it freed its
            // reserve): counted, not an error.
            silent += run.typed + run.app_errors + run.dispatcher_errors == 0 ? 1 : 0;
        }
        if (!check(run, where, totals)) {
            break;
        }
        if (failed == 0) {
            // The run without a fault did all the workload says: the poison message went dead
            // and was requeued, delivered records were purged.
            EXPECT_EQ(run.requeued, 1u) << where;
            EXPECT_GT(run.purged, 0u) << where;
        }
        if (::testing::Test::HasFailure() || failed == 0) {
            break;  // a run in which no fault fired: every call point has been tried
        }
    }
    const auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started);
    std::cout << "scenario " << v.name << ": " << runs << " runs (N step " << v.stride << ", "
              << calls << " counted calls in the workload), " << fired << " with a fault fired ("
              << silent << " absorbed); typed errors " << typed << ", app errors " << app_errors
              << ", dispatcher error events " << dispatcher_errors << "; " << secs.count() << " s"
              << std::endl;
    report(v.name, totals);
    EXPECT_TRUE(totals.sound());
    EXPECT_GT(fired, 0u);
}

constexpr unsigned kIo =
    vfs::op_read | vfs::op_write | vfs::op_sync | vfs::op_lock | vfs::op_truncate;

TEST(FailurePoints, IoErrorOnce) {
    sweep({"failure-points-io-once", {kIo, 0, vfs::Failure::io_error, false}, 1});
}

TEST(FailurePoints, IoErrorFromThenOn) {
    sweep({"failure-points-io-sticky", {kIo, 0, vfs::Failure::io_error, true}, 1});
}

TEST(FailurePoints, DiskFullOnce) {
    sweep({"failure-points-full-once", {vfs::op_write, 0, vfs::Failure::disk_full, false}, 1});
}

TEST(FailurePoints, DiskFullFromThenOn) {
    sweep({"failure-points-full-sticky", {vfs::op_write, 0, vfs::Failure::disk_full, true}, 1});
}

// Through outpost's own checkpoints: thousands of counted calls, every 25th in CI.
TEST(FailurePoints, IoErrorOnceThroughCheckpoints) {
    sweep({"failure-points-checkpoint-io-once",
           {kIo, 0, vfs::Failure::io_error, false},
           sized<std::uint64_t>(25, 1),
           true});
}

TEST(FailurePoints, DiskFullOnceThroughCheckpoints) {
    sweep({"failure-points-checkpoint-full-once",
           {vfs::op_write, 0, vfs::Failure::disk_full, false},
           sized<std::uint64_t>(25, 1),
           true});
}

TEST(FailurePoints, CantOpenOnce) {
    sweep({"failure-points-cantopen-once", {vfs::op_open, 0, vfs::Failure::cant_open, false}, 1});
}

TEST(FailurePoints, CantOpenFromThenOn) {
    sweep({"failure-points-cantopen-sticky", {vfs::op_open, 0, vfs::Failure::cant_open, true}, 1});
}

}  // namespace
}  // namespace outpost::faults

namespace outpost::faults {
namespace {

// The dispatcher on its own thread (start()) meets a fault that lasts (every counted call
// failing from a random N on, while the app keeps adding): it reports storage errors as error
// events and never stops for good; once the fault clears it drains everything committed.
TEST(FailurePoints, StartedDispatcherOutlivesAFault) {
    vfs::install(true);
    const std::string name = "failure-points-started-dispatcher";
    std::mt19937_64 rng(scenario_seed(name));
    Tally totals;
    std::size_t errors = 0, fired = 0;
    const int rounds = sized(20, 200);
    for (int round = 0; round < rounds && !::testing::Test::HasFailure(); ++round) {
        Trial run;
        run.rng.seed(rng());
        run.open();
        ASSERT_TRUE(run.dispatcher) << run.problems.front();
        run.transaction({"k0", "k1"}, false);
        run.dispatcher->start();
        vfs::arm({kIo, 1 + rng() % 60, vfs::Failure::io_error, true});
        for (int i = 0; i < 4; ++i) {
            run.transaction({"k" + std::to_string(i % 3)}, i == 2);
        }
        // The dispatcher's next look at the file (its poll, a wake-up) meets the fault too.
        const auto until = std::chrono::steady_clock::now() + 2s;
        while (run.dispatcher_errors == 0 && std::chrono::steady_clock::now() < until) {
            run.dispatcher->wake();
            std::this_thread::sleep_for(1ms);  // polling an atomic: no event to wait on here
        }
        fired += vfs::failed_calls() != 0 ? 1 : 0;
        vfs::disarm();
        errors += run.dispatcher_errors;
        run.recovering = true;
        run.transaction({"k0", "k1"}, false);
        EXPECT_TRUE(run.dispatcher->drain(60s))
            << "round " << round << ": the dispatcher did not drain after the fault cleared: "
            << run.dispatcher->stats().last_error;
        EXPECT_TRUE(run.dispatcher->stats().running);
        EXPECT_TRUE(run.problems.empty()) << "round " << round << ": " << run.problems.front();
        check(run, name + " round " + std::to_string(round), totals);
    }
    std::cout << "scenario " << name << ": " << rounds << " rounds, " << fired
              << " with a fault fired, dispatcher error events " << errors << std::endl;
    report(name, totals);
    EXPECT_TRUE(totals.sound());
    EXPECT_GT(errors, 0u);
}

}  // namespace
}  // namespace outpost::faults
