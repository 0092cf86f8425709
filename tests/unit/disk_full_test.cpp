// A full partition: the app fills it while offline, then the dispatcher must still be able to
// record deliveries, so everything committed arrives and the space comes back. On a real,
// size-limited tmpfs this test mounts (it needs root, as CI runs it).
#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <set>
#include <string>

#include "fake_broker.hpp"
#include "outpost/outpost.hpp"
#include "testkit/temp_dir.hpp"
#include "testkit/tmpfs.hpp"

using namespace std::chrono_literals;
using namespace outpost;
using outpost::testing::FakeBroker;
using outpost::testing::TempDir;

namespace {

bool is_disk_full(int code) {
    return (code & 0xff) == SQLITE_FULL;
}

Message reading(int n) {
    // About 200 bytes, like a sensor's JSON reading.
    std::string body =
        "{\"sensor\":\"t-7\",\"seq\":" + std::to_string(n) + ",\"v\":21.5,\"pad\":\"";
    body += std::string(200 - body.size() - 2, 'x');
    body += "\"}";
    Message m = Message::text("site/3/temp", body);
    m.qos = 1;
    return m;
}

std::int64_t count(SQLite::Database& db, const std::string& sql) {
    return db.execAndGet(sql).getInt64();
}

}  // namespace

// The device of issue 10, item 11: an app on a 3 MB partition, offline, commits readings (each
// with a row of its own) until the disk is full. The dispatcher must then deliver every committed
// reading, the disk space must come back, and the app must be able to add again.
TEST(DiskFull, AFullPartitionDrainsEverythingAndTheSpaceComesBack) {
    if (::geteuid() != 0) {
        FAIL() << "this test mounts a 3 MB tmpfs and needs root (CI runs the tests as root); "
                  "run it as root";
    }
    outpost::testing::Tmpfs part(3 << 20);
    ASSERT_TRUE(part.mounted()) << part.error();
    const std::string path = part.file("app.db");
    const std::uint64_t free_at_start = part.free_bytes();

    FakeBroker broker;
    broker.set_reachable(false);  // offline while the app fills the disk
    std::set<std::int64_t> committed;
    std::uint64_t free_when_full = 0;
    std::int64_t seq = 0;
    {
        SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        // The Outbox first, on the new file: it then chooses auto_vacuum = INCREMENTAL, without
        // which freed pages stay inside the file (README, "Disk space").
        Outbox box(db);
        db.exec("CREATE TABLE readings (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
        SqliteStore store(path);
        DispatcherOptions o;
        o.poll_interval = 100ms;
        o.reconnect_initial = 20ms;
        o.reconnect_max = 100ms;
        Dispatcher dispatcher(store, broker, o);
        dispatcher.start();

        // 1. Fill: one reading and its message per transaction, until a write fails.
        std::string failure;
        while (failure.empty() && seq < 1'000'000) {
            std::int64_t id = 0;
            try {
                SQLite::Transaction tx(db);
                db.exec("INSERT INTO readings (v) VALUES ('" + std::string(20, 'r') + "')");
                id = box.add(reading(static_cast<int>(seq)));
                tx.commit();
                committed.insert(id);
                ++seq;
            } catch (const StorageError& e) {  // from add()
                EXPECT_TRUE(is_disk_full(e.code())) << e.what();
                failure = e.what();
            } catch (const SQLite::Exception& e) {  // from the app's own statements or commit
                EXPECT_TRUE(is_disk_full(e.getErrorCode())) << e.what();
                failure = e.what();
            }
        }
        ASSERT_FALSE(failure.empty()) << "the partition never filled";
        ASSERT_GT(committed.size(), 100u) << part.listing();
        std::printf("full after %zu committed readings: %s\n  (%s)\n", committed.size(),
                    part.listing().c_str(), failure.c_str());
        free_when_full = part.free_bytes();
        // The failed transaction rolled back (SQLite::Transaction's destructor), and the
        // connection still works: it holds exactly what was committed.
        EXPECT_EQ(count(db, "SELECT count(*) FROM readings"),
                  static_cast<std::int64_t>(committed.size()));
        EXPECT_EQ(count(db, "SELECT count(*) FROM outpost_records"),
                  static_cast<std::int64_t>(committed.size()));

        // 2. The broker comes back: everything committed must be delivered.
        broker.set_reachable(true);
        const bool drained = dispatcher.drain(120s);
        EXPECT_TRUE(drained) << "pending after 120 s: " << box.counts().pending << " of "
                             << committed.size()
                             << "; last error: " << dispatcher.stats().last_error << "; "
                             << part.listing();
        std::printf("drained: %s\n", part.listing().c_str());

        // 3. The app can add again in the same process.
        for (int i = 0; i < 50; ++i) {
            try {
                SQLite::Transaction tx(db);
                db.exec("INSERT INTO readings (v) VALUES ('again')");
                committed.insert(box.add(reading(static_cast<int>(seq++))));
                tx.commit();
            } catch (const std::exception& e) {
                ADD_FAILURE() << "add after the drain, #" << i << ": " << e.what() << "; "
                              << part.listing();
                break;
            }
        }
        EXPECT_TRUE(dispatcher.drain(60s)) << dispatcher.stats().last_error;
        dispatcher.stop();
    }

    // 4. Judged with plain SQLite on a fresh connection: nothing pending, and every committed
    // record reached the broker.
    {
        SQLite::Database check(path, SQLite::OPEN_READONLY);
        EXPECT_EQ(count(check, "SELECT count(*) FROM outpost_records WHERE state = 0"), 0);
        EXPECT_EQ(count(check, "SELECT count(*) FROM outpost_records WHERE state <> 0"), 0);
        EXPECT_EQ(check.execAndGet("PRAGMA integrity_check").getString(), "ok");
        // The app's own rows, one per committed reading, are all there.
        EXPECT_EQ(count(check, "SELECT count(*) FROM readings"),
                  static_cast<std::int64_t>(committed.size()));
    }
    std::set<std::int64_t> delivered;
    for (const Record& r : broker.log()) {
        delivered.insert(r.id);
    }
    std::size_t missing = 0;
    for (std::int64_t id : committed) {
        missing += delivered.count(id) == 0 ? 1 : 0;
    }
    EXPECT_EQ(missing, 0u) << "of " << committed.size() << " committed records";

    // 5. The space came back: the records' pages went back to the partition, which is now at
    // least half free (the app's own rows, 20 bytes each, and the reserve stay).
    const std::uint64_t free_after = part.free_bytes();
    std::printf("free: at start %llu, when full %llu, after the drain %llu; %s\n",
                static_cast<unsigned long long>(free_at_start),
                static_cast<unsigned long long>(free_when_full),
                static_cast<unsigned long long>(free_after), part.listing().c_str());
    EXPECT_GE(free_after, free_when_full + free_at_start / 2) << part.listing();
}
