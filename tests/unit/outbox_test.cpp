#include <sqlite3.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>

#include "fixture.hpp"

using namespace std::chrono_literals;
using namespace outpost;
using outpost::testing::OutboxTest;
using outpost::testing::TempDir;

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// An Outbox and a SqliteStore both refuse `path` with a SchemaError whose text contains
// `expected`, and the file's bytes stay what they were.
void expect_refused_untouched(const std::string& path, const std::string& expected) {
    const std::string before = read_file(path);
    {
        SQLite::Database db(path, SQLite::OPEN_READWRITE);
        try {
            Outbox o(db);
            FAIL() << "expected SchemaError";
        } catch (const SchemaError& e) {
            EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
        }
    }
    EXPECT_EQ(read_file(path), before);
    EXPECT_THROW(SqliteStore{path}, SchemaError);
    EXPECT_EQ(read_file(path), before);
}

}  // namespace

TEST_F(OutboxTest, CreatesItsTablesWithItsOwnVersionAndLeavesUserVersionAlone) {
    EXPECT_EQ(db_.execAndGet("PRAGMA user_version").getInt(), 0);
    EXPECT_EQ(
        db_.execAndGet("SELECT value FROM outpost_meta WHERE name = 'schema_version'").getString(),
        std::to_string(kSchemaVersion));
    EXPECT_EQ(db_.execAndGet("PRAGMA journal_mode").getString(), "wal");
    EXPECT_EQ(db_.execAndGet("PRAGMA busy_timeout").getInt(), 5000);
    db_.exec("PRAGMA user_version = 42");
    Outbox again(db_);  // a second open migrates nothing and keeps the app's version
    EXPECT_EQ(db_.execAndGet("PRAGMA user_version").getInt(), 42);
}

TEST_F(OutboxTest, KeepsTheAppsOwnBusyTimeout) {
    TempDir d;
    SQLite::Database db(d.file("x.db"), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("PRAGMA busy_timeout = 1234");
    Outbox o(db);
    EXPECT_EQ(db.execAndGet("PRAGMA busy_timeout").getInt(), 1234);
}

TEST_F(OutboxTest, CommitStoresStateAndMessageTogether) {
    db_.exec("CREATE TABLE readings (v REAL)");
    {
        SQLite::Transaction tx(db_);
        db_.exec("INSERT INTO readings VALUES (21.5)");
        add("site/temp");
        tx.commit();
    }
    EXPECT_EQ(db_.execAndGet("SELECT count(*) FROM readings").getInt(), 1);
    EXPECT_EQ(count("state = 0"), 1);
}

TEST_F(OutboxTest, RollbackStoresNeither) {
    db_.exec("CREATE TABLE readings (v REAL)");
    {
        SQLite::Transaction tx(db_);
        db_.exec("INSERT INTO readings VALUES (21.5)");
        add("site/temp");
        // no commit: the destructor rolls back
    }
    EXPECT_EQ(db_.execAndGet("SELECT count(*) FROM readings").getInt(), 0);
    EXPECT_EQ(count(), 0);
}

TEST_F(OutboxTest, BadInputStoresNothingAndTheTransactionStaysUsable) {
    db_.exec("CREATE TABLE readings (v REAL)");
    SQLite::Transaction tx(db_);
    db_.exec("INSERT INTO readings VALUES (1)");
    Message bad = Message::text("a/+/b", "x");
    EXPECT_THROW(outbox_.add(bad), InvalidMessage);
    bad = Message::text("ok", "x");
    bad.qos = 7;
    EXPECT_THROW(outbox_.add(bad), InvalidMessage);
    add("good");
    tx.commit();
    EXPECT_EQ(db_.execAndGet("SELECT count(*) FROM readings").getInt(), 1);
    EXPECT_EQ(count(), 1);
    EXPECT_EQ(db_.execAndGet("SELECT topic FROM outpost_records").getString(), "good");
}

TEST_F(OutboxTest, EveryRecordHasAUniqueTimeOrderedUid) {
    std::set<std::string> uids;
    for (int i = 0; i < 500; ++i) {
        add("t");
    }
    SQLite::Statement q(db_, "SELECT uid FROM outpost_records ORDER BY id");
    const std::regex v7("[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
    std::string previous;
    while (q.executeStep()) {
        const std::string uid = q.getColumn(0).getString();
        EXPECT_TRUE(std::regex_match(uid, v7)) << uid;
        EXPECT_GE(uid.substr(0, 13),
                  previous.substr(0, std::min<std::size_t>(13, previous.size())));
        previous = uid;
        uids.insert(uid);
    }
    EXPECT_EQ(uids.size(), 500u);
}

TEST_F(OutboxTest, StoresEveryFieldOfTheMessage) {
    Message m = Message::text("dev/1/event", "");
    m.payload = {std::byte{0}, std::byte{0xff}, std::byte{0x10}};
    m.key = "dev-1";
    m.qos = 2;
    m.retain = true;
    m.priority = 7;
    m.ttl = 90s;
    m.headers = {{"unit", "°C"}, {"empty", ""}};
    m.content_type = "application/octet-stream";
    const std::int64_t id = outbox_.add(m);
    const std::vector<Record> loaded = store().load_pending({id}).records;
    ASSERT_EQ(loaded.size(), 1u);
    const Record* r = &loaded[0];
    EXPECT_EQ(r->message, m);
    EXPECT_EQ(r->state, RecordState::pending);
    EXPECT_EQ(r->created_at, clock_.wall_ms());
    EXPECT_EQ(r->expires_at, clock_.wall_ms() + 90'000);
    EXPECT_EQ(r->attempts, 0u);
}

TEST_F(OutboxTest, AnEmptyPayloadIsStoredAsAnEmptyBlob) {
    const std::int64_t id = outbox_.add(Message::text("empty", ""));
    const std::vector<Record> loaded = store().load_pending({id}).records;
    ASSERT_EQ(loaded.size(), 1u);
    EXPECT_TRUE(loaded[0].message.payload.empty());
}

TEST_F(OutboxTest, RefusesAFileThatIsNotSqliteAndLeavesItAlone) {
    TempDir d;
    const std::string path = d.file("notes.txt");
    std::ofstream(path) << "these are not the pages you are looking for\n"
                        << std::string(5000, 'x');
    expect_refused_untouched(path, "not a SQLite database");
}

TEST_F(OutboxTest, RefusesANewerSchemaAndLeavesTheFileAlone) {
    TempDir d;
    const std::string path = d.file("newer.db");
    {
        SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        db.exec("CREATE TABLE outpost_meta (name TEXT PRIMARY KEY, value TEXT)");
        db.exec("INSERT INTO outpost_meta VALUES ('schema_version', '99')");
    }
    expect_refused_untouched(path, "schema version 99");
    SQLite::Database db(path, SQLite::OPEN_READONLY);
    EXPECT_EQ(db.execAndGet("PRAGMA journal_mode").getString(), "delete");  // not switched
}

TEST_F(OutboxTest, StoreRefusesAFileWithoutOutpostTables) {
    TempDir d;
    const std::string path = d.file("plain.db");
    {
        SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        db.exec("CREATE TABLE t (x)");
    }
    EXPECT_THROW(SqliteStore{path}, SchemaError);
    EXPECT_THROW(SqliteStore{d.file("missing.db")}, Error);
    EXPECT_FALSE(std::filesystem::exists(d.file("missing.db")));
}

TEST_F(OutboxTest, RequeueMovesOnlyDeadRecords) {
    const std::int64_t a = add("a");
    const std::int64_t b = add("b");
    db_.exec("UPDATE outpost_records SET state = 2, attempts = 3, last_error = 'x' WHERE id = " +
             std::to_string(a));
    EXPECT_THROW(outbox_.requeue(b), NotFound);  // pending, not dead
    EXPECT_THROW(outbox_.requeue(999), NotFound);
    outbox_.requeue(a);
    EXPECT_EQ(state_of(a), std::make_pair(0, 0));
    db_.exec("UPDATE outpost_records SET state = 2");
    EXPECT_EQ(outbox_.requeue_all_dead(), 2u);
    EXPECT_EQ(count("state = 0"), 2);
}

namespace {

// An outbox with a quota, on its own file.
struct QuotaBox {
    QuotaBox(OutboxOptions options, const Clock& clock)
        : db(dir.file("quota.db"), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE),
          box(db, options, clock) {}
    std::int64_t add(int priority = 0, std::string payload = "x") {
        Message m = Message::text("t", std::move(payload));
        m.priority = priority;
        return box.add(m);
    }
    std::vector<std::int64_t> pending_ids() {
        std::vector<std::int64_t> ids;
        SQLite::Statement q(db, "SELECT id FROM outpost_records WHERE state = 0 ORDER BY id");
        while (q.executeStep()) {
            ids.push_back(q.getColumn(0).getInt64());
        }
        return ids;
    }
    TempDir dir;
    SQLite::Database db;
    Outbox box;
};

OutboxOptions quota(std::uint64_t max_pending, std::uint64_t max_pending_bytes = 0,
                    WhenFull when_full = WhenFull::refuse) {
    OutboxOptions o;
    o.max_pending = max_pending;
    o.max_pending_bytes = max_pending_bytes;
    o.when_full = when_full;
    return o;
}

OutboxOptions drop_at(std::uint64_t max_pending) {
    return quota(max_pending, 0, WhenFull::drop_oldest);
}

}  // namespace

TEST_F(OutboxTest, QuotaRefusesBeyondMaxPendingAndStoresNothing) {
    QuotaBox q(quota(3), clock_);
    for (int i = 0; i < 3; ++i) {
        q.add();
    }
    EXPECT_THROW(q.add(), OutboxFull);
    EXPECT_EQ(q.db.execAndGet("SELECT count(*) FROM outpost_records").getInt(), 3);
    q.db.exec("UPDATE outpost_records SET state = 1 WHERE id = 1");  // one delivered
    clock_.advance(2s);
    EXPECT_NO_THROW(q.add());
    EXPECT_EQ(q.box.counts().pending, 3u);
}

TEST_F(OutboxTest, DropOldestKeepsTheNewestAndCountsWhatItRemoved) {
    QuotaBox d(drop_at(10), clock_);
    const std::int64_t dead = d.add();
    d.db.exec("UPDATE outpost_records SET state = 2 WHERE id = " + std::to_string(dead));
    std::vector<std::int64_t> ids;
    for (int i = 0; i < 25; ++i) {
        ids.push_back(d.add());
        ASSERT_LE(d.box.counts().pending, 10u) << "after add " << i;
    }
    // A quota of 10 drops one record per add once full: the 10 newest remain.
    EXPECT_EQ(d.pending_ids(), std::vector<std::int64_t>(ids.end() - 10, ids.end()));
    const StoreCounts c = d.box.counts();
    EXPECT_EQ(c.dropped, 15u);
    EXPECT_EQ(c.dead, 1u);  // only pending records are dropped
}

TEST_F(OutboxTest, DropOldestTakesTheLowestPriorityFirst) {
    QuotaBox d(drop_at(4), clock_);
    const std::int64_t urgent1 = d.add(5);
    const std::int64_t urgent2 = d.add(5);
    std::vector<std::int64_t> routine;
    for (int i = 0; i < 4; ++i) {
        routine.push_back(d.add(0));
    }
    EXPECT_EQ(d.pending_ids(),
              (std::vector<std::int64_t>{urgent1, urgent2, routine[2], routine[3]}));
    EXPECT_EQ(d.box.counts().dropped, 2u);
}

TEST_F(OutboxTest, DropOldestRollsBackWithTheAppsTransaction) {
    QuotaBox d(drop_at(3), clock_);
    for (int i = 0; i < 3; ++i) {
        d.add();
    }
    const auto before = d.pending_ids();
    {
        SQLite::Transaction tx(d.db);
        d.add();  // drops the oldest inside the app's transaction
        EXPECT_EQ(d.pending_ids().size(), 3u);
        // no commit: the destructor rolls back the removal with the insert
    }
    EXPECT_EQ(d.pending_ids(), before);
    EXPECT_EQ(d.box.counts().dropped, 0u);
    const std::int64_t last = d.add();  // autocommit: removal and insert commit together
    EXPECT_EQ(d.pending_ids(), (std::vector<std::int64_t>{before[1], before[2], last}));
    EXPECT_EQ(d.box.counts().dropped, 1u);
}

TEST_F(OutboxTest, DropOldestMakesRoomInStepsOfOnePercent) {
    QuotaBox d(drop_at(1000), clock_);
    {
        SQLite::Transaction tx(d.db);
        for (int i = 0; i < 1000; ++i) {
            d.add();
        }
        tx.commit();
    }
    d.add();  // full: 10 go (1% of 1,000), so the next 9 adds need no count and drop nothing
    EXPECT_EQ(d.box.counts().dropped, 10u);
    for (int i = 0; i < 9; ++i) {
        d.add();
    }
    EXPECT_EQ(d.box.counts().pending, 1000u);
    EXPECT_EQ(d.box.counts().dropped, 10u);
    d.add();
    EXPECT_EQ(d.box.counts().pending, 991u);
    EXPECT_EQ(d.box.counts().dropped, 20u);
    EXPECT_EQ(d.pending_ids().front(), 21);  // the oldest 20 went
}

TEST_F(OutboxTest, QuotaByBytesRefusesWhatWouldPassItAndNamesTheLimit) {
    QuotaBox q(quota(0, 1000), clock_);
    const std::string body(300, 'b');
    for (int i = 0; i < 3; ++i) {
        q.add(0, body);  // 900 bytes pending
    }
    try {
        q.add(0, body);
        FAIL() << "1,200 bytes pending were accepted under a 1,000-byte quota";
    } catch (const OutboxFull& e) {
        EXPECT_NE(std::string(e.what()).find("max_pending_bytes = 1000"), std::string::npos)
            << e.what();
    }
    EXPECT_NO_THROW(q.add(0, std::string(100, 's')));  // exactly 1,000
    EXPECT_EQ(q.box.counts().pending_bytes, 1000u);
    q.db.exec("UPDATE outpost_records SET state = 1 WHERE id = 1");  // 300 bytes delivered
    EXPECT_NO_THROW(q.add(0, body));
    EXPECT_EQ(q.box.counts().pending_bytes, 1000u);
}

TEST_F(OutboxTest, DropOldestByBytesKeepsThePayloadUnderTheQuota) {
    QuotaBox q(quota(0, 1000, WhenFull::drop_oldest), clock_);
    std::vector<std::int64_t> ids;
    for (int i = 0; i < 6; ++i) {
        ids.push_back(q.add(0, std::string(300, 'b')));
        ASSERT_LE(q.box.counts().pending_bytes, 1000u) << "after add " << i;
    }
    // Three 300-byte payloads fit; each add past them drops the oldest.
    EXPECT_EQ(q.pending_ids(), std::vector<std::int64_t>(ids.end() - 3, ids.end()));
    EXPECT_EQ(q.box.counts().dropped, 3u);
    // A payload larger than the whole quota cannot be made room for: refused, nothing dropped.
    EXPECT_THROW(q.add(0, std::string(1001, 'x')), OutboxFull);
    EXPECT_EQ(q.box.counts().dropped, 3u);
    EXPECT_EQ(q.box.counts().pending, 3u);
}

TEST_F(OutboxTest, CountsByState) {
    add("a");
    add("b");
    add("c");
    db_.exec("UPDATE outpost_records SET state = 2 WHERE id = 3");
    const StoreCounts c = outbox_.counts();
    EXPECT_EQ(c.pending, 2u);
    EXPECT_EQ(c.dead, 1u);
    EXPECT_EQ(c.pending_bytes, std::string("payload of a").size() * 2);
    EXPECT_EQ(c.dead_bytes, std::string("payload of c").size());
    EXPECT_EQ(c.delivered_bytes, 0u);
    EXPECT_EQ(c.oldest_pending_at, clock_.wall_ms());
}

namespace {

// Another connection commits a write at the very moment the app's connection starts an INSERT or
// a DELETE (the outbox's or the app's own; a SQLITE_TRACE_STMT hook): what the dispatcher's lease
// renewal, every 10 s, can do at any time. Its busy timeout is 0, so a write lock held by the app
// makes it fail at once instead of waiting (in the app's own thread) for a lock that cannot be
// released.
class CommitAtInsert {
  public:
    CommitAtInsert(SQLite::Database& app, const std::string& path)
        : app_(app), other_(path, SQLite::OPEN_READWRITE) {
        other_.exec("CREATE TABLE IF NOT EXISTS ticks (n INTEGER)");
        sqlite3_trace_v2(app_.getHandle(), SQLITE_TRACE_STMT, &CommitAtInsert::on_trace, this);
    }
    ~CommitAtInsert() { sqlite3_trace_v2(app_.getHandle(), 0, nullptr, nullptr); }
    CommitAtInsert(const CommitAtInsert&) = delete;
    CommitAtInsert& operator=(const CommitAtInsert&) = delete;

    int commits() const { return commits_; }

  private:
    static int on_trace(unsigned type, void* ctx, void* stmt, void*) {
        auto* self = static_cast<CommitAtInsert*>(ctx);
        const char* sql =
            type == SQLITE_TRACE_STMT ? sqlite3_sql(static_cast<sqlite3_stmt*>(stmt)) : nullptr;
        const bool write = sql != nullptr && (std::strncmp(sql, "INSERT INTO ", 12) == 0 ||
                                              std::strncmp(sql, "DELETE FROM ", 12) == 0);
        if (write && std::strncmp(sql, "INSERT INTO ticks", 17) != 0) {
            if (sqlite3_exec(self->other_.getHandle(), "INSERT INTO ticks VALUES (1)", nullptr,
                             nullptr, nullptr) == SQLITE_OK) {
                ++self->commits_;
            }
        }
        return 0;
    }

    SQLite::Database& app_;
    SQLite::Database other_;
    int commits_ = 0;
};

// Runs `n` app transactions in which add() is the first statement (deferred BEGIN), each followed
// by a row of the app's own (also when add() refused the message: the transaction must stay
// usable), with another connection committing as each INSERT starts. Returns the errors it met,
// one line each with its SQLite code.
std::string add_while_another_connection_commits(QuotaBox& q, ManualClock& clock, int n,
                                                 const std::string& payload = "x") {
    q.db.exec("CREATE TABLE IF NOT EXISTS readings (v)");
    CommitAtInsert other(q.db, q.db.getFilename());
    std::string errors;
    for (int i = 0; i < n; ++i) {
        try {
            SQLite::Transaction tx(q.db);
            try {
                q.add(0, payload);
            } catch (const OutboxFull&) {
                // refused by the quota: the app keeps its own change
            }
            q.db.exec("INSERT INTO readings VALUES (1)");
            tx.commit();
        } catch (const Error& e) {
            errors += std::string(e.what()) + " (code " + std::to_string(e.code()) + ")\n";
        } catch (const SQLite::Exception& e) {
            errors += std::string(e.what()) + " (code " + std::to_string(e.getExtendedErrorCode()) +
                      ")\n";
        }
        clock.advance(2s);  // past quota_refresh: every add() counts again
    }
    if (other.commits() == 0) {
        errors += "the other connection never committed: the test proved nothing\n";
    }
    return errors;
}

}  // namespace

// Issue 10, item 6: the quota's count read before the INSERT made a deferred transaction a
// reader, so a commit by another connection in between failed the INSERT with
// SQLITE_BUSY_SNAPSHOT (517) and spoiled the app's transaction.
TEST_F(OutboxTest, QuotaNeverTurnsTheAppsTransactionIntoAStaleReader) {
    {
        QuotaBox q(quota(1000), clock_);
        EXPECT_EQ(add_while_another_connection_commits(q, clock_, 5), "") << "max_pending";
        EXPECT_EQ(q.box.counts().pending, 5u);
    }
    {
        QuotaBox q(quota(0, 1 << 20), clock_);
        EXPECT_EQ(add_while_another_connection_commits(q, clock_, 5), "") << "max_pending_bytes";
        EXPECT_EQ(q.box.counts().pending, 5u);
    }
    {  // at the limit, refusing: OutboxFull, nothing stored, and the app's own row commits
        QuotaBox q(quota(3), clock_);
        for (int i = 0; i < 3; ++i) {
            q.add();
        }
        EXPECT_EQ(add_while_another_connection_commits(q, clock_, 3), "") << "refuse at the cap";
        EXPECT_EQ(q.box.counts().pending, 3u);
        EXPECT_EQ(q.db.execAndGet("SELECT count(*) FROM readings").getInt(), 3);
    }
    {  // at the limit, dropping the oldest: the count and the removals
        QuotaBox q(drop_at(3), clock_);
        for (int i = 0; i < 3; ++i) {
            q.add();
        }
        EXPECT_EQ(add_while_another_connection_commits(q, clock_, 4), "") << "drop_oldest";
        EXPECT_EQ(q.box.counts().pending, 3u);
        EXPECT_EQ(q.box.counts().dropped, 4u);
    }
}

// Issue 10, "worth a look": with synchronous = OFF the store's connection would checkpoint
// without fsync, and the WAL reset after it could lose the app's FULL commits at a power cut.
TEST_F(OutboxTest, StoreRefusesSynchronousOffNamingWhy) {
    SqliteStoreOptions o;
    o.synchronous = "OFF";
    try {
        SqliteStore s(path_, o);
        FAIL() << "synchronous = OFF was accepted";
    } catch (const InvalidConfig& e) {
        EXPECT_NE(std::string(e.what()).find("synchronous = OFF"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("checkpoint"), std::string::npos) << e.what();
    }
    o.synchronous = "FULL";
    EXPECT_NO_THROW(SqliteStore(path_, o));
}
