// Power loss: no commit that returned is lost to a power cut under synchronous=FULL, at most the
// documented tail under NORMAL, never a message without its business row or the reverse, and
// the file is sound and the dispatcher resumes after every cut.
//
// How: a forked child runs a short workload (app transactions of a business row and its outbox
// message, some rolled back; a dispatcher stepping with run_once() to a FakeBroker; app
// checkpoints, or in the checkpoint scenarios large app blobs that make outpost's own WAL hook
// checkpoint) on the fault VFS (support/fault_vfs.hpp), which keeps every write since a file's
// last xSync in memory and, at the chosen sync or write, writes, drops or garbles each buffered
// write and _exit()s. Before the cut the child tells the parent down a pipe (the kernel keeps
// what was written when the child dies) each commit that RETURNED, each rollback, each
// completed sync (with the commits returned before it) and each message handed to its broker.
// The parent then opens the file with the default VFS: integrity_check, the business rows
// (plain SQLite) against what the child reported, then a fresh dispatcher drains it into a
// FakeBroker; judge() gets the child's and the parent's arrivals.
//
// The bound under NORMAL. SQLite (pragma.html#pragma_synchronous; wal.html, "Performance
// Considerations"): in WAL mode with synchronous=NORMAL the WAL is synced before each checkpoint
// and the database after it, and no commit syncs; "a transaction committed in WAL mode with
// synchronous=NORMAL might roll back following a power loss", and the database stays
// consistent. Checked here: the commits that survive are a prefix (in commit order) of those
// that returned (WAL recovery stops at the first frame that fails its checksum chain), and that
// prefix holds at least every commit that had returned before the last completed xSync of the
// WAL or the database file (the only syncs under NORMAL are a checkpoint's, which make every
// frame before them durable). Under FULL the prefix is all of them. Under both, at most the one
// commit that was under way may survive too.
//
// One aggregated scenario line per test (summed over its cut points).
#include <gtest/gtest.h>

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <set>
#include <sstream>

#include <outpost/dispatcher.hpp>
#include <outpost/outbox.hpp>
#include <outpost/sqlite_store.hpp>

#include "fake_broker.hpp"
#include "fault_vfs.hpp"
#include "oracle.hpp"
#include "testkit/temp_dir.hpp"

namespace outpost::faults {
namespace {

using namespace std::chrono_literals;

void say(int fd, const std::string& line) {
    const std::string l = line + "\n";
    std::size_t done = 0;
    while (done < l.size()) {
        const ssize_t n = ::write(fd, l.data() + done, l.size() - done);
        if (n <= 0) {
            return;
        }
        done += static_cast<std::size_t>(n);
    }
}

// Tells the parent of each publish before the dispatcher can mark it: a message the child's
// broker was handed counts as arrived even when the power goes before its mark is written.
class PipedBroker final : public MessageBroker {
  public:
    PipedBroker(MessageBroker& inner, int fd) : inner_(inner), fd_(fd) {}
    void connect(std::chrono::milliseconds t) override { inner_.connect(t); }
    void disconnect(std::chrono::milliseconds t) noexcept override { inner_.disconnect(t); }
    bool connected() const noexcept override { return inner_.connected(); }
    void publish(const Record& record, PublishCallback done) override {
        if (inner_.connected()) {
            say(fd_, "A " + std::string(record.message.payload_view()));
        }
        inner_.publish(record, std::move(done));
    }
    void set_connection_handler(ConnectionHandler h) override {
        inner_.set_connection_handler(std::move(h));
    }

  private:
    MessageBroker& inner_;
    int fd_;
};

struct Workload {
    bool full = true;  // the app's synchronous: FULL or NORMAL
    int events = 40;
    std::uint64_t seed = 1;
    // Every 5th event the app also commits a 1.5 MB blob of its own, so the WAL passes the
    // Outbox's checkpoint limit (1,000 pages on a large file system) and outpost's own WAL-hook
    // checkpoints, WAL restarts and journal_size_limit truncations happen under the cut; the
    // app then makes no checkpoints of its own.
    bool blobs = false;
};

DispatcherOptions dispatcher_options() {
    DispatcherOptions o;
    o.retention = std::chrono::hours(1);  // keeps delivered records: every row keeps its message
    o.poll_interval = 20ms;
    return o;
}

// The child: the workload on the fault VFS, every fact down `fd`. Never returns.
[[noreturn]] void child(const std::string& path, int fd, const Workload& w, vfs::CutAt at,
                        std::uint64_t nth) {
    int status = 0;
    try {
        vfs::install(true);
        vfs::set_buffering(true);
        std::size_t returned = 0;
        vfs::on_synced([&](const std::string&) { say(fd, "S " + std::to_string(returned)); });
        vfs::cut_power_at(
            at, nth, w.seed ^ (nth * 0x9e3779b97f4a7c15ull), [fd](const vfs::CutStats& c) {
                say(fd, "F " + std::to_string(c.written) + " " + std::to_string(c.dropped) + " " +
                            std::to_string(c.garbled));
            });
        std::mt19937_64 rng(w.seed);
        {
            SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
            db.exec(w.full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
            db.exec(kAppSchema);
            db.exec("CREATE TABLE IF NOT EXISTS app_blobs (id INTEGER PRIMARY KEY, data BLOB)");
            Outbox outbox(db);
            say(fd, "T");  // the first open and the migration returned
            SqliteStore store(path);
            testing::FakeBroker fake;
            PipedBroker broker(fake, fd);
            Dispatcher dispatcher(store, broker, dispatcher_options());
            for (int i = 0; i < w.events; ++i) {
                const std::string key = "k" + std::to_string(rng() % 3);
                const bool roll_back = rng() % 8 == 0;
                const Event e = add_event(db, outbox, key, roll_back, rng);
                if (!roll_back) {
                    ++returned;
                }
                say(fd, (roll_back ? "R " : "C ") + e.uid);
                if (rng() % 3 == 0) {
                    dispatcher.run_once();
                    dispatcher.run_once();
                }
                if (w.blobs && i % 5 == 4) {
                    SQLite::Statement blob(db, "INSERT INTO app_blobs (data) VALUES (?)");
                    const std::vector<unsigned char> data(1536 * 1024,
                                                          static_cast<unsigned char>(i));
                    blob.bind(1, data.data(), static_cast<int>(data.size()));
                    blob.exec();
                } else if (!w.blobs && i % 12 == 11) {
                    db.exec("PRAGMA wal_checkpoint(PASSIVE)");
                }
            }
            dispatcher.run_once();
            dispatcher.run_once();
        }
        say(fd, "E " + std::to_string(vfs::syncs()) + " " + std::to_string(vfs::writes()));
    } catch (const std::exception& e) {
        say(fd, std::string("X ") + e.what());
        status = 3;
    }
    ::_exit(status);
}

// The first open after the reboot, read-write with plain SQLite and the default VFS: it rolls a
// hot journal back or recovers the WAL, which the oracle's read-only connections cannot.
void first_open(const std::string& path) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK) {
        sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr);
    }
    sqlite3_close(db);
}

// Whether `path` has table `name`, by plain SQLite (read-only).
bool has_table(const std::string& path, const std::string& name) {
    sqlite3* db = nullptr;
    bool found = false;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
        sqlite3_stmt* q = nullptr;
        if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                               -1, &q, nullptr) == SQLITE_OK) {
            sqlite3_bind_text(q, 1, name.c_str(), -1, SQLITE_TRANSIENT);
            found = sqlite3_step(q) == SQLITE_ROW;
        }
        sqlite3_finalize(q);
    }
    sqlite3_close(db);
    return found;
}

struct ChildReport {
    std::vector<std::string> returned;  // uids, in commit order
    std::set<std::string> rolled_back;
    std::size_t durable = 0;  // commits returned before the last completed sync
    std::vector<std::string> arrived;
    bool cut = false, finished = false, tables = false;
    std::uint64_t syncs = 0, writes = 0;
    vfs::CutStats fates;
    std::string error;
};

ChildReport run_child(const std::string& path, const Workload& w, vfs::CutAt at,
                      std::uint64_t nth) {
    int p[2];
    if (::pipe(p) != 0) {
        throw std::runtime_error("pipe failed");
    }
    std::cout.flush();
    const pid_t pid = ::fork();
    if (pid < 0) {
        throw std::runtime_error("fork failed");
    }
    if (pid == 0) {
        ::close(p[0]);
        child(path, p[1], w, at, nth);
    }
    ::close(p[1]);
    std::string text;
    char buf[4096];
    ssize_t n = 0;
    while ((n = ::read(p[0], buf, sizeof buf)) > 0) {
        text.append(buf, static_cast<std::size_t>(n));
    }
    ::close(p[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ChildReport r;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.empty()) {
            continue;
        }
        const std::string rest = line.size() > 2 ? line.substr(2) : "";
        switch (line[0]) {
            case 'C':
                r.returned.push_back(rest);
                break;
            case 'T':
                r.tables = true;
                break;
            case 'R':
                r.rolled_back.insert(rest);
                break;
            case 'S':
                r.durable = std::max<std::size_t>(r.durable, std::stoul(rest));
                break;
            case 'A':
                r.arrived.push_back(rest);
                break;
            case 'F': {
                std::istringstream f(rest);
                f >> r.fates.written >> r.fates.dropped >> r.fates.garbled;
                break;
            }
            case 'E': {
                std::istringstream f(rest);
                f >> r.syncs >> r.writes;
                r.finished = true;
                break;
            }
            case 'X':
                r.error = rest;
                break;
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == vfs::kCutExit) {
        r.cut = true;
    } else if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        r.error += " (child status " + std::to_string(status) + ")";
    }
    return r;
}

struct Totals {
    Tally tally;
    std::size_t cuts = 0, lost_tail = 0, in_flight_kept = 0, sent_then_lost = 0;
    vfs::CutStats fates;
    void add(const Tally& t) {
        tally.committed += t.committed;
        tally.lost += t.lost;
        tally.rolled_back_sent += t.rolled_back_sent;
        tally.duplicated += t.duplicated;
        tally.reordered += t.reordered;
        tally.stuck += t.stuck;
        for (const auto& e : t.examples) {
            if (tally.examples.size() < 10) {
                tally.examples.push_back(e);
            }
        }
    }
};

// One cut: the child to the cut, then every check on the file it left.
void cut_and_check(const Workload& w, vfs::CutAt at, std::uint64_t nth, Totals& totals) {
    testing::TempDir dir;
    const std::string path = dir.file("app.db");
    const ChildReport r = run_child(path, w, at, nth);
    const std::string where = std::string(w.full ? "FULL" : "NORMAL") + " seed " +
                              std::to_string(w.seed) +
                              (at == vfs::CutAt::sync ? " sync " : " write ") + std::to_string(nth);
    ASSERT_TRUE(r.error.empty()) << where << ": the child failed: " << r.error;
    ++totals.cuts;
    totals.fates.written += r.fates.written;
    totals.fates.dropped += r.fates.dropped;
    totals.fates.garbled += r.fates.garbled;

    first_open(path);
    ASSERT_EQ(integrity_check(path), "ok") << where;
    // A cut before the schema's first commit leaves no tables; under FULL, once the first open
    // and migration returned, both are there.
    const bool app_table = has_table(path, "app_events");
    const bool outbox_table = has_table(path, "outpost_records");
    if (w.full && r.tables) {
        EXPECT_TRUE(app_table && outbox_table) << where << ": the schema was lost";
    }
    const std::vector<Event> committed = app_table ? committed_events(path) : std::vector<Event>{};
    std::set<std::string> present;
    for (const Event& e : committed) {
        present.insert(e.uid);
    }
    // What survived: a prefix of the returned commits, then at most the one under way.
    std::size_t prefix = 0;
    while (prefix < r.returned.size() && present.count(r.returned[prefix]) != 0) {
        ++prefix;
    }
    for (std::size_t i = prefix; i < r.returned.size(); ++i) {
        EXPECT_EQ(present.count(r.returned[i]), 0u)
            << where << ": commit " << i << " survived after commit " << prefix << " was lost";
    }
    const std::size_t must_keep =
        w.full ? r.returned.size() : std::min(r.durable, r.returned.size());
    EXPECT_GE(prefix, must_keep) << where << ": " << r.returned.size() - prefix
                                 << " returned commits lost, of which "
                                 << must_keep - std::min(prefix, must_keep)
                                 << " were before the last sync";
    totals.lost_tail += r.returned.size() - prefix;
    std::size_t extra = 0;
    for (const std::string& uid : present) {
        EXPECT_EQ(r.rolled_back.count(uid), 0u) << where << ": a rolled-back row survived";
        if (std::find(r.returned.begin(), r.returned.end(), uid) == r.returned.end()) {
            ++extra;
        }
    }
    EXPECT_LE(extra, 1u) << where << ": rows nobody committed";
    EXPECT_TRUE(extra == 0 || prefix == r.returned.size())
        << where << ": the commit under way survived a lost one";
    totals.in_flight_kept += extra;

    // Every business row has its message and every message its row (delivered ones are kept).
    const auto states_before = outbox_table ? outbox_states(path) : std::map<std::string, int>{};
    std::set<std::string> messages;
    for (const auto& [uid, state] : states_before) {
        messages.insert(uid);
    }
    EXPECT_EQ(messages, present) << where << ": rows and messages differ";

    // The dispatcher resumes on the default VFS: everything committed, in order per key.
    // The app restarts: its schema, the Outbox (migrating when the cut took the tables), then
    // the dispatcher on the default VFS.
    testing::FakeBroker fake;
    {
        SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        db.exec(kAppSchema);
        Outbox outbox(db);
        SqliteStore store(path);
        Dispatcher dispatcher(store, fake, dispatcher_options());
        dispatcher.start();
        EXPECT_TRUE(dispatcher.drain(60s)) << where << ": the dispatcher did not drain";
        dispatcher.stop();
    }
    // Under NORMAL a returned commit of the lost tail may already have been handed to the
    // broker before the power went: the documented loss of NORMAL, the app's own state rolled
    // back with it. Counted apart (never under FULL, where the tail is empty by the check
    // above); every other arrival goes to the judge.
    const std::set<std::string> tail(r.returned.begin() + static_cast<std::ptrdiff_t>(prefix),
                                     r.returned.end());
    std::vector<std::string> arrived;
    for (const std::string& p : r.arrived) {
        const auto e = parse_payload(p);
        if (!w.full && e && tail.count(e->uid) != 0 && present.count(e->uid) == 0) {
            ++totals.sent_then_lost;
            continue;
        }
        arrived.push_back(p);
    }
    for (const Record& rec : fake.log()) {
        arrived.emplace_back(rec.message.payload_view());
    }
    EXPECT_EQ(committed_events(path), committed) << where << ": the restart changed the rows";
    const Tally t = judge(committed, arrived, outbox_states(path));
    EXPECT_TRUE(t.sound()) << where << ": " << t.line("power-loss") << " "
                           << (t.examples.empty() ? "" : t.examples.front());
    // A redelivery only for a message handed over before the cut whose mark was lost.
    EXPECT_LE(t.duplicated, r.arrived.size()) << where;
    EXPECT_EQ(integrity_check(path), "ok") << where << " (after the dispatcher)";
    totals.add(t);
}

// The workload once without a cut: how many syncs and writes it makes.
ChildReport measure(const Workload& w) {
    testing::TempDir dir;
    return run_child(dir.file("app.db"), w, vfs::CutAt::never, 0);
}

void sweep(const std::string& name, bool full, bool blobs = false) {
    const std::uint64_t seed = scenario_seed(name);
    std::mt19937_64 rng(seed);
    Totals totals;
    const int workloads = blobs ? 1 : sized(2, 3);
    // Write cut points: 0 = every write. The blob workload writes thousands of pages: sampled.
    const std::size_t write_cuts =
        blobs ? sized<std::size_t>(40, 600) : sized<std::size_t>(full ? 60 : 150, 0);
    const auto started = std::chrono::steady_clock::now();
    for (int round = 0; round < workloads; ++round) {
        Workload w;
        w.full = full;
        w.seed = rng();
        w.events = sized(40, 60);
        w.blobs = blobs;
        const ChildReport m = measure(w);
        ASSERT_TRUE(m.finished && m.error.empty()) << "the uncut workload failed: " << m.error;
        ASSERT_GT(m.syncs, 0u);
        // Every sync point: the moments a commit (FULL) or a checkpoint (both) makes data
        // durable, where a cut in the middle is the hardest.
        for (std::uint64_t k = 1; k <= m.syncs; ++k) {
            cut_and_check(w, vfs::CutAt::sync, k, totals);
            if (::testing::Test::HasFailure()) {
                report(name, totals.tally);
                return;
            }
        }
        // Writes between syncs: every one in the long size, a seeded sample in CI.
        std::vector<std::uint64_t> points;
        if (write_cuts == 0 || write_cuts >= m.writes) {
            for (std::uint64_t k = 1; k <= m.writes; ++k) {
                points.push_back(k);
            }
        } else {
            for (std::size_t i = 0; i < write_cuts; ++i) {
                points.push_back(1 + rng() % m.writes);
            }
        }
        for (const std::uint64_t k : points) {
            cut_and_check(w, vfs::CutAt::write, k, totals);
            if (::testing::Test::HasFailure()) {
                report(name, totals.tally);
                return;
            }
        }
        std::cout << "scenario " << name << ": workload seed " << w.seed << ", " << m.syncs
                  << " sync points, " << m.writes << " writes" << std::endl;
    }
    const auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started);
    std::cout << "scenario " << name << ": " << totals.cuts << " cuts, buffered writes "
              << totals.fates.written << " written, " << totals.fates.dropped << " dropped, "
              << totals.fates.garbled << " garbled; returned commits lost " << totals.lost_tail
              << " (of them sent before the cut " << totals.sent_then_lost
              << "), commits under way kept " << totals.in_flight_kept << "; " << secs.count()
              << " s" << std::endl;
    report(name, totals.tally);
    EXPECT_TRUE(totals.tally.sound());
    if (full) {
        EXPECT_EQ(totals.lost_tail, 0u);
    }
}

TEST(PowerLoss, FullLosesNoCommitThatReturned) {
    sweep("power-loss-full", true);
}

TEST(PowerLoss, NormalLosesAtMostTheTailSinceTheLastSync) {
    sweep("power-loss-normal", false);
}

TEST(PowerLoss, OutpostCheckpointsFull) {
    sweep("power-loss-checkpoints-full", true, true);
}

TEST(PowerLoss, OutpostCheckpointsNormal) {
    sweep("power-loss-checkpoints-normal", false, true);
}

}  // namespace
}  // namespace outpost::faults
