// Private: disk space for the outbox file, so a full partition never wedges the dispatcher.
//
// The failure it prevents (issue 10, item 11): on a small partition the WAL grew to fill it
// before SQLite's auto-checkpoint (1,000 pages) ever ran; then no connection could write a mark,
// and a checkpoint, which copies WAL pages into the main file, needed space that the WAL held.
// Three rules, all sized from the size of the file system (read once, never per commit):
//  - the WAL is checkpointed every wal_limit pages: 1/32 of the file system, between 16 and
//    SQLite's usual 1,000 pages (so a file on a large disk checkpoints exactly as before), and
//    journal_size_limit brings a WAL that grew past it back to that size;
//  - the store keeps a reserve file (reserve_bytes: twice the WAL limit and 64 KiB) next to the
//    database; when one of its writes fails with SQLITE_FULL it deletes the reserve, checkpoints
//    and tries again, so it can always record deliveries (which free records);
//  - once space is short the store returns freed pages to the file system (incremental vacuum,
//    when the file has auto_vacuum = INCREMENTAL) and truncates the WAL, and it makes the
//    reserve again when there is room for it.
#pragma once

#include <cstdint>
#include <string>

namespace outpost::detail {

struct DiskSpace {
    std::uint64_t total = 0;  // bytes of the file system
    std::uint64_t free = 0;   // bytes an unprivileged writer may still use
    bool known = false;       // false when statvfs failed (then no rule applies)
};

// statvfs of the directory holding `db_path`.
DiskSpace disk_space(const std::string& db_path);

// WAL pages between checkpoints for a file system of `total` bytes (see above).
int wal_limit_pages(std::uint64_t total, int page_size);

// The size of the store's reserve file for a WAL limit of `wal_limit_bytes`.
std::uint64_t reserve_bytes(std::uint64_t wal_limit_bytes);

// The reserve file's path: the database's path + "-outpost-reserve".
std::string reserve_path(const std::string& db_path);

// Creates the reserve file of `bytes` (allocated, not sparse). False when there is no room (then
// no file is left behind).
bool make_reserve(const std::string& path, std::uint64_t bytes);

}  // namespace outpost::detail
