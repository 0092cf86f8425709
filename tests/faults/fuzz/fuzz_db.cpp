// Fuzz target: opening a mutated database file. The bytes are written as an outbox file (seeded
// with real small outbox files, make_db_seeds.cpp), then each way the project opens one uses it:
// the file check of `outpost check` (Admin::check), a read-only Admin (stats, a salvage-mode
// walk of the records, the lease), the dispatcher's SqliteStore (scan, load, expire, mark
// delivered), an Outbox on the app's connection (add, requeue), and (with the tools) the outpost
// command's own check, stats, list, show and export run on it, output discarded. Each must work
// or throw a typed outpost::Error (the command also a UsageError); anything else, an escaping
// std::exception included, is a defect.
//
// A check that calls the file clean must have found it SQLite with a clean integrity_check.
#include <SQLiteCpp/Database.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <typeinfo>
#include <vector>

#include "fuzz_support.hpp"
#include "outpost/admin.hpp"
#include "outpost/error.hpp"
#include "outpost/outbox.hpp"
#include "outpost/sqlite_store.hpp"
#ifdef OUTPOST_FUZZ_CLI
#include "command.hpp"
#include "program.hpp"
#endif

namespace {

using outpost::fuzz::require;

constexpr std::int64_t kNow = 1'700'000'000'000;  // a fixed wall time: runs repeat exactly

// Runs `step`; a typed outpost::Error is a fine outcome, any other exception a defect.
// With OUTPOST_FUZZ_TIMING set, prints how long each step took: what makes a slow input slow.
template <class F>
void step(const char* name, F&& f) {
    static const bool timing = std::getenv("OUTPOST_FUZZ_TIMING") != nullptr;
    const auto start = std::chrono::steady_clock::now();
    struct Report {
        const char* name;
        std::chrono::steady_clock::time_point start;
        ~Report() {
            if (timing) {
                std::fprintf(
                    stderr, "%s: %lld ms\n", name,
                    static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                               std::chrono::steady_clock::now() - start)
                                               .count()));
            }
        }
    } report{name, start};
    try {
        f();
    } catch (const outpost::Error&) {
    } catch (const std::exception& e) {
        outpost::fuzz::fail(std::string(name) + " threw a " + typeid(e).name() +
                            " that is not an outpost::Error: " + e.what());
    }
}

void check(const std::string& path) {
    const outpost::CheckReport r = outpost::Admin::check(path);
    if (r.clean()) {
        require(r.sqlite_ok && r.integrity_ok, "check() called a file clean it could not check");
    }
}

void admin(const std::string& path) {
    outpost::Admin a(path);
    (void)a.stats(3);
    (void)a.lease();
    (void)a.get(1);
}

// Apart from admin(): on a damaged file stats() throws, and the walk must run all the same.
void admin_walk(const std::string& path) {
    outpost::Admin a(path);
    outpost::RecordFilter f;
    f.skip_unreadable = true;
    f.limit = 0;  // all: a walk that cannot end on some file is a defect to find
    std::size_t unreadable = 0;
    a.for_each(
        f, [](const outpost::Record&) { return true; }, &unreadable);
}

void store(const std::string& path) {
    outpost::SqliteStore s(path, {std::chrono::milliseconds(100), "NORMAL"});
    const std::vector<outpost::PendingRef> refs = s.scan_pending({}, 16);
    std::vector<std::int64_t> ids;
    for (const outpost::PendingRef& r : refs) {
        ids.push_back(r.id);
        (void)(r.key ? s.key_head(*r.key) : std::nullopt);
    }
    const outpost::LoadedRecords loaded = s.load_pending(ids);
    (void)s.has_pending();
    (void)s.next_expiry();
    (void)s.last_id();
    (void)s.requeue_count();
    (void)s.scan_arrivals(0, s.last_id(), -1, 16);
    (void)s.expire_due(kNow, {});
    std::vector<outpost::Outcome> outcomes;
    for (const outpost::Record& r : loaded.records) {
        outcomes.push_back({outpost::Outcome::Kind::delivered, r.id, 0, 0, {}, kNow});
    }
    for (const outpost::UnreadableRecord& r : loaded.unreadable) {
        outcomes.push_back({outpost::Outcome::Kind::dead, r.id, 1, 0, r.reason, kNow});
    }
    s.apply(outcomes, true);
    (void)s.purge_delivered(kNow);
    (void)s.counts();
}

void outbox(const std::string& path) {
    std::unique_ptr<SQLite::Database> db;
    try {
        db = std::make_unique<SQLite::Database>(path, SQLite::OPEN_READWRITE);
    } catch (const SQLite::Exception&) {
        return;  // the app's own open, not outpost's
    }
    outpost::Outbox o(*db);
    outpost::Message m = outpost::Message::text("fuzz/db", "payload");
    m.key = "k";
    (void)o.add(m);
    (void)o.requeue_all_dead();
    (void)o.counts();
}

#ifdef OUTPOST_FUZZ_CLI
// `outpost ARGS --db path`, parsed and run as main() would, stdout and stderr discarded.
void command(const std::string& path, std::vector<std::string> args) {
    args.insert(args.begin(), "outpost");
    args.insert(args.end(), {"--db", path});
    std::vector<char*> argv;
    for (std::string& a : args) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    outpost::cli::Program program;
    program.app().parse(static_cast<int>(args.size()), argv.data());  // the args are fixed
    std::ostringstream out;
    std::streambuf* const cout = std::cout.rdbuf(out.rdbuf());
    std::streambuf* const cerr = std::cerr.rdbuf(out.rdbuf());
    try {
        (void)(*program.parsed_run())();
    } catch (const outpost::cli::UsageError&) {
    } catch (...) {
        std::cout.rdbuf(cout);
        std::cerr.rdbuf(cerr);
        throw;
    }
    std::cout.rdbuf(cout);
    std::cerr.rdbuf(cerr);
}
#endif

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string path = (outpost::fuzz::scratch_dir() / "outbox.db").string();
    for (const char* suffix : {"", "-wal", "-shm", "-journal", "-outpost-reserve"}) {
        std::error_code ec;
        std::filesystem::remove(path + suffix, ec);
    }
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
        require(static_cast<bool>(out.flush()), "writing the database file");
    }
    step("Admin::check", [&] { check(path); });
    step("Admin", [&] { admin(path); });
    // The walk may make 100,000 failing lookups on a damaged file (by design: salvage.cpp), a
    // second or more a run: the fuzzer walks a quarter of its inputs (picked by their bytes, so
    // a kept input replays the same), the replay test every kept input.
#ifdef OUTPOST_FUZZ_REPLAY
    const bool walk = true;
#else
    std::uint32_t hash = 2166136261u;  // FNV-1a
    for (std::size_t i = 0; i < size; ++i) {
        hash = (hash ^ data[i]) * 16777619u;
    }
    const bool walk = hash % 4 == 0;
#endif
    if (walk) {
        step("Admin salvage walk", [&] { admin_walk(path); });
    }
#ifdef OUTPOST_FUZZ_CLI
    step("outpost check", [&] { command(path, {"check", "--json"}); });
    step("outpost stats", [&] { command(path, {"stats"}); });
    step("outpost list", [&] { command(path, {"list", "--json", "--limit", "20"}); });
    step("outpost show", [&] { command(path, {"show", "1"}); });
    // Without --skip-unreadable: its salvage walk may look up 100,000 ids on a damaged file
    // (by design, salvage.cpp), seconds a run; the Admin step walks in salvage mode already.
    step("outpost export", [&] { command(path, {"export", "--state", "all"}); });
#endif
    step("SqliteStore", [&] { store(path); });
    step("Outbox", [&] { outbox(path); });
    return 0;
}
