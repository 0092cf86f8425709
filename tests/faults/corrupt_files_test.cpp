// Corrupt files (issue 12, part 5): a real outbox file with committed events (the fault oracle's
// app), damaged in one way per scenario, then handed to the library and to the real `outpost`
// binary ($OUTPOST_BIN). It proves, per damage kind:
//  - the library (an Outbox on a SQLite::Database, a SqliteStore, a Dispatcher started on it)
//    refuses with a typed outpost::Error within 2 s, and the file (and any -wal/-shm) is
//    byte-identical afterwards: outpost never wipes, repairs or rewrites a damaged file;
//  - `outpost check` reports it with its own exit code (5) and leaves the files byte-identical;
//  - `outpost export --skip-unreadable` rescues every record the damage left readable, and
//    nothing that was not committed.
// Damage SQLite cannot see is checked for what does happen instead: a deleted or garbled -wal
// (SQLite drops the WAL frames from the first one whose checksum fails, a missing -wal has
// none) leaves a consistent older state, a stale -shm is rebuilt from the -wal; no crash, no
// refusal, nothing of the older state lost.
//
// The scenario line per kind: committed = the events in app_events of the undamaged file (the
// oracle, plain SQLite); arrived = the events `export --skip-unreadable` wrote (or, for the
// undetectable kinds, the events readable through the library afterwards); lost = committed
// events not rescued although the damage did not destroy them. An event is destroyed when its
// outbox row lay on a page the damage changed (or cut off), when the damage hit the file header
// (SQLite then reads nothing), or when it was only in WAL frames SQLite drops. Nothing is
// "stuck": the judge is given no outbox states.
#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <outpost/outpost.hpp>

#include "fake_broker.hpp"
#include "oracle.hpp"
#include "testkit/temp_dir.hpp"

namespace outpost::faults {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kCheckFoundProblems = 5;  // outpost check: the file is not clean (README)

std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// The database and its -wal and -shm: contents, or nullopt when absent.
struct Files {
    std::optional<std::string> db, wal, shm;
    friend bool operator==(const Files&, const Files&) = default;
};

Files snapshot(const std::string& path) {
    auto one = [](const std::string& p) -> std::optional<std::string> {
        if (!fs::exists(p)) {
            return std::nullopt;
        }
        return read_bytes(p);
    };
    return {one(path), one(path + "-wal"), one(path + "-shm")};
}

std::string describe(const Files& f) {
    auto one = [](const char* n, const std::optional<std::string>& s) {
        return std::string(n) + (s ? " " + std::to_string(s->size()) + " B" : " absent");
    };
    return one("db", f.db) + ", " + one("-wal", f.wal) + ", " + one("-shm", f.shm);
}

struct CliRun {
    int exit_code = -1;
    std::string out, err;
};

// Runs the real outpost binary; stdout and stderr through files (no pipe to drain).
CliRun run_outpost(const std::vector<std::string>& args, const testing::TempDir& dir) {
    const char* bin = std::getenv("OUTPOST_BIN");
    if (bin == nullptr || *bin == '\0') {
        throw std::runtime_error("OUTPOST_BIN is not set (run the test through meson test)");
    }
    const std::string out = dir.file("cli.out"), err = dir.file("cli.err");
    std::cout.flush();  // or the child's freopen writes the parent's buffer once more
    std::fflush(stdout);
    const pid_t pid = ::fork();
    if (pid == 0) {
        if (!std::freopen(out.c_str(), "w", stdout) || !std::freopen(err.c_str(), "w", stderr)) {
            ::_exit(127);
        }
        std::vector<std::string> argv{bin};
        argv.insert(argv.end(), args.begin(), args.end());
        std::vector<char*> p;
        for (auto& a : argv) {
            p.push_back(a.data());
        }
        p.push_back(nullptr);
        ::execv(bin, p.data());
        ::_exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    CliRun r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_bytes(out);
    r.err = read_bytes(err);
    return r;
}

std::string base64_decode(const std::string& in) {
    static const std::string kAlphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    unsigned buf = 0;
    int bits = 0;
    for (const char c : in) {
        const auto v = kAlphabet.find(c);
        if (v == std::string::npos) {
            break;  // '=' padding
        }
        buf = (buf << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((buf >> bits) & 0xFF);
        }
    }
    return out;
}

// The payloads of the JSON Lines `export` wrote (the "payload" field, base64).
std::vector<std::string> exported_payloads(const std::string& jsonl) {
    std::vector<std::string> out;
    std::istringstream lines(jsonl);
    const std::string field = "\"payload\":\"";
    for (std::string line; std::getline(lines, line);) {
        const auto at = line.find(field);
        if (at == std::string::npos) {
            continue;
        }
        const auto from = at + field.size();
        out.push_back(base64_decode(line.substr(from, line.find('"', from) - from)));
    }
    return out;
}

// The app of the oracle, on `path`: `events` events over three keys, one in eight rolled back.
// `keep_wal`: the last connection leaves its -wal (and -shm) unchekpointed, as a crash would.
void write_events(const std::string& path, std::size_t events, std::mt19937_64& rng,
                  bool keep_wal) {
    SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    if (keep_wal) {
        sqlite3_db_config(db.getHandle(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    }
    Outbox outbox(db);
    db.exec(kAppSchema);
    for (std::size_t i = 0; i < events; ++i) {
        add_event(db, outbox, "k" + std::to_string(rng() % 3), rng() % 8 == 0, rng);
    }
}

int page_size_of(const std::string& data) {
    const int p =
        (static_cast<unsigned char>(data[16]) << 8) | static_cast<unsigned char>(data[17]);
    return p == 1 ? 65536 : p;
}

// Leaf pages of the outbox records (dbstat of the undamaged file): damage there destroys rows,
// not the way to them. The app's own tables are left alone: damage there is the app's to meet
// when it reads them (outpost never reads them; `outpost check` does report it).
std::vector<int> leaf_pages(const std::string& path) {
    SQLite::Database db(path, SQLite::OPEN_READONLY);
    SQLite::Statement q(db,
                        "SELECT pageno FROM dbstat WHERE pagetype = 'leaf' AND name = "
                        "'outpost_records' ORDER BY pageno");
    std::vector<int> out;
    while (q.executeStep()) {
        out.push_back(q.getColumn(0).getInt());
    }
    return out;
}

// The events whose outbox row no longer stands as it was in `pristine`: its payload lay on a
// page `damaged` differs on (or lacks), or the header (page 1) changed, which SQLite needs for
// everything.
std::set<std::string> destroyed_by(const std::string& pristine, const std::string& damaged,
                                   const std::vector<Event>& committed) {
    std::set<std::string> out;
    const std::size_t page = static_cast<std::size_t>(page_size_of(pristine));
    auto page_changed = [&](std::size_t n) {
        const std::size_t from = n * page;
        if (from + page > damaged.size()) {
            return true;
        }
        return pristine.compare(from, page, damaged, from, page) != 0;
    };
    const bool header = page_changed(0);
    for (const Event& e : committed) {
        const auto at = pristine.find(payload_of(e));
        if (header || at == std::string::npos || page_changed(at / page)) {
            out.insert(e.uid);
        }
    }
    return out;
}

// Tells whether the library refuses the file, within `limit`: the Outbox, the SqliteStore and a
// started Dispatcher (on a broker that is down, so nothing is delivered), in the order an app
// makes them. Returns the refusal ("" when none) and the time it took.
struct Refusal {
    std::string what;  // "Outbox: schema: ..." or ""
    double seconds = 0;
};

Refusal open_with_outpost(const std::string& path, std::chrono::milliseconds limit) {
    const auto start = Clock::now();
    Refusal r;
    auto took = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
    auto typed = [&](const char* step, const Error& e) {
        r.what = std::string(step) + ": " + to_string(e.kind()) + ": " + e.what();
        r.seconds = took();
        return r;
    };
    try {
        SQLite::Database db(path, SQLite::OPEN_READWRITE);
        try {
            Outbox outbox(db);
        } catch (const Error& e) {
            return typed("Outbox", e);
        }
        std::unique_ptr<SqliteStore> store;
        try {
            store = std::make_unique<SqliteStore>(path);
        } catch (const Error& e) {
            return typed("SqliteStore", e);
        }
        testing::FakeBroker broker;
        broker.set_reachable(false);
        std::mutex m;
        std::string error;
        DispatcherOptions o;
        o.poll_interval = 50ms;
        o.on_event = [&](const DispatchEvent& ev) {
            // The broker is down on purpose: its connect errors are no refusal of the file.
            if (ev.kind == DispatchEvent::Kind::error && ev.detail.rfind("fake broker", 0) != 0) {
                std::lock_guard lock(m);
                error = ev.detail;
            }
        };
        Dispatcher dispatcher(*store, broker, o);
        try {
            dispatcher.start();
        } catch (const Error& e) {
            return typed("Dispatcher::start", e);
        }
        // A refusal found by the dispatcher's thread comes as an error event: waited for, up
        // to the limit (a sound file gives none, so the wait is the limit).
        while (Clock::now() - start < limit) {
            {
                std::lock_guard lock(m);
                if (!error.empty()) {
                    r.what = "Dispatcher: " + error;
                    break;
                }
            }
            std::this_thread::sleep_for(10ms);
        }
        dispatcher.stop();
        r.seconds = took();
    } catch (const Error& e) {
        return typed("SqliteStore", e);
    } catch (const std::exception& e) {
        r.what = std::string("UNTYPED: ") + e.what();
        r.seconds = took();
    }
    return r;
}

struct Damage {
    std::string name;
    bool wal;       // the file keeps a -wal with committed transactions (not checkpointed)
    bool detected;  // outpost can and must refuse it
};

class CorruptFiles : public ::testing::TestWithParam<Damage> {};

TEST_P(CorruptFiles, RefusedOrConsistentNeverRewrittenAndRescued) {
    const Damage& d = GetParam();
    const std::string name = "corrupt-" + d.name;
    std::mt19937_64 rng(scenario_seed(name));
    testing::TempDir dir;
    const std::string path = dir.file("app.db");

    // The file: a checkpointed part, and for the WAL kinds a part in the -wal.
    const std::size_t first = sized<std::size_t>(800, 8000), second = sized<std::size_t>(200, 2000);
    write_events(path, first, rng, false);
    const std::vector<Event> checkpointed = committed_events(path);
    if (d.wal) {
        write_events(path, second, rng, true);
        ASSERT_TRUE(fs::exists(path + "-wal"));
    }
    const std::vector<Event> committed = committed_events(path);
    ASSERT_EQ(integrity_check(path), "ok");
    const std::vector<int> leaves = leaf_pages(path);
    if (!d.wal) {
        // The oracle's read-only reads leave an empty -wal and its -shm (a read-only connection
        // may not delete them); a file closed by its app has neither.
        ASSERT_EQ(fs::file_size(path + "-wal"), 0u);
        fs::remove(path + "-wal");
        fs::remove(path + "-shm");
    }
    const Files pristine = snapshot(path);
    ASSERT_TRUE(pristine.db);
    ASSERT_EQ(pristine.wal.has_value(), d.wal) << describe(pristine);
    // What the main file holds without its -wal: the first part, and whatever checkpoints
    // (outpost's and SQLite's, on the app's connection) moved there during the second. Read by
    // plain SQLite from a copy of the main file alone.
    std::vector<Event> in_main_file = checkpointed;
    if (d.wal) {
        const std::string copy = dir.file("main-file-alone.db");
        write_bytes(copy, *pristine.db);
        in_main_file = committed_events(copy);
    }

    // The damage.
    std::set<std::string> destroyed;
    std::string data = *pristine.db;
    const std::size_t page = static_cast<std::size_t>(page_size_of(data));
    if (d.name == "truncated") {
        data.resize(data.size() / page / 2 * page);
        write_bytes(path, data);
    } else if (d.name == "header-zeroed") {
        std::fill(data.begin(), data.begin() + 100, '\0');
        write_bytes(path, data);
    } else if (d.name == "pages-flipped") {
        std::vector<int> candidates = leaves;
        ASSERT_GT(candidates.size(), 8u);
        for (int i = 0; i < 3; ++i) {  // three pages, every bit inverted
            const std::size_t at = rng() % candidates.size();
            const std::size_t from = static_cast<std::size_t>(candidates[at] - 1) * page;
            for (std::size_t b = from; b < from + page; ++b) {
                data[b] = static_cast<char>(~data[b]);
            }
            candidates.erase(candidates.begin() + static_cast<std::ptrdiff_t>(at));
        }
        write_bytes(path, data);
    } else if (d.name == "not-a-database") {
        for (char& c : data) {
            c = static_cast<char>(rng());
        }
        write_bytes(path, data);
    } else if (d.name == "wal-deleted") {
        fs::remove(path + "-wal");
    } else if (d.name == "wal-garbled") {
        // Past the WAL header and the first frames: from there on SQLite finds bad checksums.
        std::string wal = *pristine.wal;
        ASSERT_GT(wal.size(), 32u + 8 * (24 + page));
        for (std::size_t b = wal.size() / 2; b < wal.size() / 2 + 64; ++b) {
            wal[b] = static_cast<char>(~wal[b]);
        }
        write_bytes(path + "-wal", wal);
    } else if (d.name == "shm-stale") {
        // The wal-index of another moment: all of it one value, as if another state's.
        std::string shm = pristine.shm.value_or(std::string(32768, '\0'));
        for (std::size_t b = 0; b < shm.size(); b += 7) {
            shm[b] = static_cast<char>(b);
        }
        write_bytes(path + "-shm", shm);
    }
    if (!d.wal) {
        destroyed = destroyed_by(*pristine.db, read_bytes(path), committed);
    }
    const Files damaged = snapshot(path);

    // outpost check: read-only, its own exit code for a damaged file, the files untouched.
    const CliRun check = run_outpost({"check", "--db", path}, dir);
    std::cout << name << ": check exit " << check.exit_code << ": " << check.err << std::endl;
    // The database and its -wal byte for byte. Where there was no -wal, SQLite's read-only
    // open of a WAL file may leave an empty one (and a -shm). The -shm is never compared: it
    // is SQLite's index of the -wal, which any reader rebuilds from the -wal when no process
    // has the file open.
    auto same = [&](const Files& now) {
        const bool wal_same = now.wal == damaged.wal || (!damaged.wal && now.wal->empty());
        return now.db == damaged.db && wal_same;
    };
    EXPECT_TRUE(same(snapshot(path))) << "outpost check changed the files: " << describe(damaged)
                                      << " -> " << describe(snapshot(path));

    // export --skip-unreadable: what is readable, nothing invented.
    const CliRun exported = run_outpost({"export", "--db", path, "--skip-unreadable"}, dir);
    EXPECT_TRUE(same(snapshot(path))) << "outpost export changed the files";
    const std::vector<std::string> rescued = exported_payloads(exported.out);
    std::cout << name << ": export exit " << exported.exit_code << ", " << rescued.size()
              << " records: " << exported.err << std::endl;

    if (d.detected) {
        EXPECT_EQ(check.exit_code, kCheckFoundProblems) << check.out << check.err;
        EXPECT_NE(check.out.find("NOT CLEAN"), std::string::npos) << check.out;

        const Refusal refusal = open_with_outpost(path, 2s);
        std::cout << name << ": library: " << (refusal.what.empty() ? "no refusal" : refusal.what)
                  << " after " << refusal.seconds << " s" << std::endl;
        EXPECT_FALSE(refusal.what.empty()) << "outpost used the damaged file without a word";
        EXPECT_LT(refusal.seconds, 2.0);
        const Files now = snapshot(path);
        EXPECT_TRUE(same(now)) << "outpost changed a damaged file: " << describe(damaged) << " -> "
                               << describe(now)
                               << (now.db == damaged.db ? "" : " (the database's bytes)");

        // Rescued = committed minus destroyed, exactly: lost counts what is missing beyond
        // what the damage destroyed; anything else exported counts as sent-but-not-committed.
        std::vector<Event> survivors;
        for (const Event& e : committed) {
            if (destroyed.count(e.uid) == 0) {
                survivors.push_back(e);
            }
        }
        const Tally tally = judge(survivors, rescued, {});
        Tally line = tally;
        line.committed = committed.size();
        report(name, line);
        std::cout << name << ": " << destroyed.size() << " destroyed by the damage" << std::endl;
        EXPECT_TRUE(tally.sound()) << tally.line(name);
        for (const std::string& ex : tally.examples) {
            ADD_FAILURE() << ex;
        }
        EXPECT_EQ(tally.duplicated, 0u);
        return;
    }

    // Undetectable: SQLite sees a consistent state, so does everyone.
    EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
    EXPECT_EQ(exported.exit_code, 0) << exported.err;
    // The older state that must survive whole: without the -wal, what was checkpointed; with a
    // garbled one, that and the frames before the garbled one (at least what was checkpointed);
    // with a stale -shm, everything.
    const std::vector<Event>& older = d.name == "shm-stale" ? committed : in_main_file;
    // The library opens it (nothing to refuse) and uses it; afterwards (its checkpoint may
    // have moved the WAL into the file: the normal course) the state is still consistent.
    const Refusal refusal = open_with_outpost(path, 300ms);
    EXPECT_TRUE(refusal.what.empty()) << refusal.what;
    const std::vector<Event> after = committed_events(path);
    EXPECT_EQ(integrity_check(path), "ok");
    std::set<std::string> after_uids, rescued_uids;
    for (const Event& e : after) {
        after_uids.insert(e.uid);
    }
    for (const std::string& p : rescued) {
        if (auto e = parse_payload(p)) {
            rescued_uids.insert(e->uid);
        }
    }
    // Whole transactions only: each key's seqs are 1..n, no hole.
    std::map<std::string, std::int64_t> top;
    for (const Event& e : after) {
        EXPECT_EQ(e.seq, ++top[e.key]) << "a hole in key " << e.key;
    }
    // What export read before the library touched the file is what SQLite reads after it.
    EXPECT_EQ(after_uids, rescued_uids);
    // Survivors: the older state and whatever else SQLite still reads; the rest was only in
    // WAL frames SQLite dropped (destroyed). lost = survivors the export did not rescue.
    std::vector<Event> survivors;
    std::set<std::string> older_uids;
    for (const Event& e : older) {
        older_uids.insert(e.uid);
    }
    for (const Event& e : committed) {
        if (older_uids.count(e.uid) != 0 || after_uids.count(e.uid) != 0) {
            survivors.push_back(e);
        }
    }
    Tally tally = judge(survivors, rescued, {});
    for (const Event& e : older) {
        if (after_uids.count(e.uid) == 0) {
            ++tally.lost;  // gone from the file, not only from the export
            tally.examples.push_back("lost by the library: " + payload_of(e));
        }
    }
    Tally line = tally;
    line.committed = committed.size();
    report(name, line);
    std::cout << name << ": " << (committed.size() - survivors.size())
              << " committed events only in WAL frames SQLite dropped" << std::endl;
    EXPECT_TRUE(tally.sound()) << line.line(name);
    EXPECT_EQ(tally.duplicated, 0u);
    if (d.name == "wal-deleted") {
        EXPECT_EQ(after, in_main_file);
    }
    EXPECT_GE(older.size(), checkpointed.size());
    if (d.name == "shm-stale") {
        EXPECT_EQ(after.size(), committed.size());
    }
}

INSTANTIATE_TEST_SUITE_P(
    Faults, CorruptFiles,
    ::testing::Values(Damage{"truncated", false, true}, Damage{"header-zeroed", false, true},
                      Damage{"pages-flipped", false, true}, Damage{"not-a-database", false, true},
                      Damage{"wal-deleted", true, false}, Damage{"wal-garbled", true, false},
                      Damage{"shm-stale", true, false}),
    [](const auto& info) {
        std::string n = info.param.name;
        std::replace(n.begin(), n.end(), '-', '_');
        return n;
    });

}  // namespace
}  // namespace outpost::faults
