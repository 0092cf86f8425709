// make-db-seeds OUTDIR: writes the seeds of fuzz_db, real small outbox files made by the library
// itself, so the mutations start from the structures it reads: records in every state (with
// key, headers, content type and ttl), a lease, a requeue. Two shapes: 512-byte pages in
// rollback-journal mode (small: every page is worth mutating) and the default 4096-byte pages
// left in WAL mode (checkpointed), as a device's file is.
#include <SQLiteCpp/Database.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "outpost/outbox.hpp"
#include "outpost/sqlite_store.hpp"

namespace {

void make(const std::string& path, int page_size, bool wal) {
    for (const char* suffix : {"", "-wal", "-shm", "-outpost-reserve"}) {
        std::filesystem::remove(path + suffix);
    }
    {
        SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        db.exec("PRAGMA page_size = " + std::to_string(page_size));
        outpost::Outbox outbox(db);
        for (int i = 0; i < 6; ++i) {
            outpost::Message m = outpost::Message::text("seed/" + std::to_string(i % 3),
                                                        "payload " + std::to_string(i));
            if (i % 2 == 0) {
                m.key = "key-" + std::to_string(i % 4);
            }
            if (i == 1) {
                m.headers = {{"origin", "seed"}, {"n", "1"}};
                m.content_type = "text/plain";
            }
            if (i == 2) {
                m.ttl = std::chrono::hours(1);
            }
            m.priority = i == 3 ? 5 : 0;
            m.qos = i % 3;
            outbox.add(m);
        }
        outpost::SqliteStore store(path);
        store.acquire_lease({"seed-owner", "seed-host", 1, 1000, 1000, 4'000'000'000'000});
        store.apply({{outpost::Outcome::Kind::delivered, 1, 0, 0, {}, 2000},
                     {outpost::Outcome::Kind::dead, 2, 5, 0, "rejected", 2000},
                     {outpost::Outcome::Kind::dead, 3, 5, 0, "rejected", 2000},
                     {outpost::Outcome::Kind::retry, 4, 1, 3000, "timeout", 2000}},
                    true);
        outbox.requeue(3);
    }
    {
        SQLite::Database db(path, SQLite::OPEN_READWRITE);
        db.exec(wal ? "PRAGMA wal_checkpoint(TRUNCATE)" : "PRAGMA journal_mode = DELETE");
    }
    for (const char* suffix : {"-wal", "-shm", "-outpost-reserve"}) {
        std::filesystem::remove(path + suffix);
    }
    std::printf("%s: %ju bytes\n", path.c_str(),
                static_cast<std::uintmax_t>(std::filesystem::file_size(path)));
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: make-db-seeds OUTDIR\n");
        return 2;
    }
    const std::filesystem::path dir = argv[1];
    std::filesystem::create_directories(dir);
    make((dir / "outbox-512.db").string(), 512, false);
    make((dir / "outbox-4096-wal.db").string(), 4096, true);
    return 0;
}
