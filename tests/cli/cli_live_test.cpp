// The outpost command next to a live app: its write lock, its commits while a command runs.
#include <atomic>
#include <thread>

#include "cli_support.hpp"

namespace outpost::testing {
namespace {

using nlohmann::json;
using std::chrono::hours;
using std::chrono::milliseconds;

// ---- next to a live app -----------------------------------------------------------------------

TEST_F(CliCommands, WaitsForTheAppsWriteLockThenSucceeds) {
    // The app holds the write lock for 300 ms; add waits (busy timeout) rather than failing.
    SQLite::Database app(db(), SQLite::OPEN_READWRITE);
    app.exec("BEGIN IMMEDIATE");
    std::thread release([&] {
        std::this_thread::sleep_for(milliseconds(300));
        app.exec("COMMIT");
    });
    const RunResult r = run_outpost({"add", "--db", db(), "--topic", "t", "--payload", "x"});
    release.join();
    EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(CliCommands, GivesUpOnABusyFileWithATransientError) {
    SQLite::Database app(db(), SQLite::OPEN_READWRITE);
    app.exec("BEGIN IMMEDIATE");
    const RunResult r = run_outpost(
        {"add", "--db", db(), "--topic", "t", "--payload", "x", "--busy-timeout", "200ms"});
    app.exec("ROLLBACK");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(one_error_line(r, "locked"));
}

TEST_F(CliCommands, EveryCommandWorksWhileTheAppKeepsWriting) {
    // The app commits small transactions non-stop; no command may fail with "locked". Under
    // ASan on a loaded machine the app added records about as fast as list --limit 0 and export
    // read them: they chased the growing table until the runner killed them (136 s, a failed
    // CI run). They now stop at the records present when they start (CliGrowing tests that on
    // its own). The app stops after kMaxCommits (30,000 records: longer than the commands take
    // at the pace measured under ASan, 2,600 records/s) so the work of each command stays
    // bounded on any machine.
    constexpr int kMaxCommits = 1500;
    std::atomic<bool> stop{false};
    std::atomic<int> app_commits{0};
    std::thread app([&] {
        SQLite::Database conn(db(), SQLite::OPEN_READWRITE);
        Outbox outbox(conn);
        while (!stop && app_commits < kMaxCommits) {
            SQLite::Transaction tx(conn);
            for (int i = 0; i < 20; ++i) {
                outbox.add(Message::text("live/" + std::to_string(i), std::string(100, 'x')));
            }
            tx.commit();
            ++app_commits;
            std::this_thread::sleep_for(milliseconds(2));
        }
    });
    const std::vector<std::vector<std::string>> commands = {
        {"stats", "--db", db()},
        {"list", "--db", db(), "--limit", "0"},
        {"show", "--db", db(), std::to_string(ids_[0])},
        {"export", "--db", db()},
        {"add", "--db", db(), "--topic", "t", "--payload", "x"},
        {"retry", "--db", db(), "--all-dead"},
        {"purge", "--db", db(), "--state", "expired"},
        {"check", "--db", db(), "--quick"},
    };
    for (int round = 0; round < 2; ++round) {
        for (const auto& args : commands) {
            SCOPED_TRACE(joined(args));
            const RunResult r = run_outpost(args);
            EXPECT_EQ(r.exit_code, 0) << r.err;
        }
    }
    stop = true;
    app.join();
    EXPECT_GT(app_commits.load(), 0);
}

TEST_F(CliCommands, ReadsWhileTheAppHoldsTheWriteLock) {
    // WAL: readers never wait for the writer.
    SQLite::Database app(db(), SQLite::OPEN_READWRITE);
    app.exec("BEGIN IMMEDIATE");
    app.exec("UPDATE outpost_records SET priority = 9");
    const RunResult r = run_outpost({"stats", "--db", db(), "--busy-timeout", "0s"});
    app.exec("ROLLBACK");
    EXPECT_EQ(r.exit_code, 0) << r.err;
}

// ---- commands over a growing outbox --------------------------------------------------------

// The app keeps committing while a paged command runs. The app here is driven by the command's
// own output: before the command writes its first 64 KiB, and again for every further 64 KiB
// (no more than ~220 records of export or list --json), it commits kBatch = 1,000 records in
// one transaction on its own connection. So the app adds several times faster than the command
// reads on any machine and under any sanitizer, and it stops on its own after kMaxBatches.
class CliGrowing : public CliTest {
  protected:
    static constexpr int kBatch = 1000;
    static constexpr int kMaxBatches = 60;
    static constexpr std::size_t kChunk = 65536;  // one read of run_outpost() at most

    void SetUp() override {
        // 2,000 records: every 3rd dead, every 5th other one delivered (kept), the rest pending.
        std::vector<Message> ms;
        for (int i = 0; i < 2000; ++i) {
            ms.push_back(
                Message::text("pre/" + std::to_string(i % 7), "reading " + std::to_string(i)));
        }
        const std::vector<std::int64_t> ids = add(ms);
        std::vector<std::int64_t> dead, delivered;
        for (std::size_t i = 0; i < ids.size(); ++i) {
            (i % 3 == 0 ? dead : i % 5 == 0 ? delivered : pending_at_start_).push_back(ids[i]);
        }
        apply(Outcome::Kind::dead, dead);
        apply(Outcome::Kind::delivered, delivered);
        max_id_at_start_ = ids.back();
    }

    // Runs `args` while the app adds kBatch records per kChunk of the command's output; `batches`
    // counts the app's commits.
    RunResult run_while_the_app_writes(const std::vector<std::string>& args, int& batches) {
        SQLite::Database app(db(), SQLite::OPEN_READWRITE);
        Outbox outbox(app);
        RunOptions o;
        o.timeout = std::chrono::minutes(5);
        o.on_stdout = [&](std::size_t bytes) {
            while (batches < kMaxBatches && static_cast<std::size_t>(batches) <= bytes / kChunk) {
                SQLite::Transaction tx(app);
                for (int i = 0; i < kBatch; ++i) {
                    outbox.add(Message::text("live/" + std::to_string(i % 7), "new reading"));
                }
                tx.commit();
                ++batches;
            }
        };
        return run_outpost(args, o);
    }

    // The ids of the pending records up to `last_id`, from the file reopened with plain SQLite.
    std::vector<std::int64_t> pending_ids_up_to(std::int64_t last_id) {
        SQLite::Database plain(db(), SQLite::OPEN_READONLY);
        SQLite::Statement q(
            plain, "SELECT id FROM outpost_records WHERE state = 0 AND id <= ? ORDER BY id");
        q.bind(1, last_id);
        std::vector<std::int64_t> out;
        while (q.executeStep()) {
            out.push_back(q.getColumn(0).getInt64());
        }
        return out;
    }

    // What a bounded command must have written: every record pending when it started, in
    // order, and of the records committed after that at most the one batch the app committed
    // while the command was starting (it may read the largest id before or after that commit).
    void expect_the_records_present_at_start(const std::vector<std::int64_t>& got, int batches) {
        EXPECT_LT(batches, kMaxBatches)
            << "the app stopped adding (after " << kMaxBatches * kBatch
            << " records) before the command ended: it chases the records committed after it "
               "started";
        ASSERT_FALSE(got.empty());
        EXPECT_LE(got.back(), max_id_at_start_ + kBatch)
            << "records committed after the command started were written";
        EXPECT_EQ(got, pending_ids_up_to(got.back()));
        const std::vector<std::int64_t> at_start(
            got.begin(), got.begin() + std::min(got.size(), pending_at_start_.size()));
        EXPECT_EQ(at_start, pending_at_start_);
        // The app did write while the command ran (its output is several chunks long).
        EXPECT_GE(batches, 3);
    }

    std::int64_t max_id_at_start_ = 0;
    std::vector<std::int64_t> pending_at_start_;
};

TEST_F(CliGrowing, ExportEndsAtTheRecordsPresentWhenItStarted) {
    int batches = 0;
    const RunResult r =
        run_while_the_app_writes({"export", "--db", db(), "--state", "pending"}, batches);
    ASSERT_FALSE(r.timed_out) << "export did not end";
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::int64_t> got;
    for (const json& line : parse_lines(r.out)) {
        EXPECT_EQ(line["state"], "pending");
        got.push_back(line["id"].get<std::int64_t>());
    }
    expect_the_records_present_at_start(got, batches);
}

TEST_F(CliGrowing, ListWithoutLimitEndsAtTheRecordsPresentWhenItStarted) {
    int batches = 0;
    const RunResult r = run_while_the_app_writes(
        {"list", "--db", db(), "--state", "pending", "--limit", "0", "--json"}, batches);
    ASSERT_FALSE(r.timed_out) << "list --limit 0 did not end";
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::int64_t> got;
    for (const json& record : parse_json(r.out)) {
        EXPECT_EQ(record["state"], "pending");
        got.push_back(record["id"].get<std::int64_t>());
    }
    expect_the_records_present_at_start(got, batches);
}

TEST_F(CliGrowing, PurgeEndsAtTheRecordsPresentWhenItStarted) {
    // 3,000 more delivered records (more than one purge batch of 1,000). A trigger stands in
    // for a dispatcher that keeps delivering (with retention): every delivered record the purge
    // deletes brings two new delivered ones, committed with the purge's own batch, until ids
    // reach 100,000. Deterministic: the set grows faster than the purge deletes, on any machine.
    std::vector<Message> more(3000, Message::text("done/t", "delivered"));
    const std::vector<std::int64_t> ids = add(more);
    apply(Outcome::Kind::delivered, ids);
    const std::uint64_t delivered_at_start = counts().delivered;
    ASSERT_GT(delivered_at_start, 3000u);
    exec_sql(R"sql(
CREATE TRIGGER app_keeps_delivering AFTER DELETE ON outpost_records
WHEN old.state = 1 AND (SELECT max(id) FROM outpost_records) < 100000
BEGIN
    INSERT INTO outpost_records (uid, state, topic, payload, qos, retain, priority, created_at,
                                 done_at)
    VALUES (lower(hex(randomblob(16))), 1, 'live/t', x'00', 1, 0, 0, 0, 0),
           (lower(hex(randomblob(16))), 1, 'live/t', x'00', 1, 0, 0, 0, 0);
END)sql");
    const std::int64_t last_id_at_start = ids.back();
    RunOptions o;
    o.timeout = std::chrono::minutes(5);
    const RunResult r = run_outpost({"purge", "--db", db(), "--state", "delivered", "--json"}, o);
    ASSERT_FALSE(r.timed_out) << "purge did not end";
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(parse_json(r.out)["deleted"], delivered_at_start) << r.out;
    SQLite::Database plain(db(), SQLite::OPEN_READONLY);
    EXPECT_EQ(plain
                  .execAndGet("SELECT count(*) FROM outpost_records WHERE state = 1 AND id <= " +
                              std::to_string(last_id_at_start))
                  .getInt64(),
              0);
    EXPECT_EQ(plain
                  .execAndGet("SELECT count(*) FROM outpost_records WHERE state = 1 AND id > " +
                              std::to_string(last_id_at_start))
                  .getInt64(),
              static_cast<std::int64_t>(2 * delivered_at_start))
        << "every record delivered after the purge started is still there";
}

}  // namespace
}  // namespace outpost::testing
