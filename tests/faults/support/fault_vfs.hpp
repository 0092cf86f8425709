// Fault suite: a test-only SQLite VFS over the default one, for power cuts and failing calls.
//
// Power loss: while buffering is on, every write (and truncate) of a main database, WAL or
// journal file since that file's last xSync stays in memory, per path (so every connection of
// the process sees the same file, as it would through the page cache); reads, xFileSize and
// xTruncate see those buffered changes. xSync writes the buffer to the real file (without a real
// fsync: the power here is simulated, and a real one would only slow the sweep). At the chosen
// sync or write the power is cut: each buffered change is written (3/8), dropped (3/8) or
// garbled (1/4, random bytes over its range), as SQLite's own crash test does, and the process
// _exit()s at once with kCutExit. The WAL index (-shm, xShmMap) is memory, never buffered: SQLite
// rebuilds it when the next process opens the file first. Not simulated: directory entries (a
// file's creation and an unlink are durable at once) and a write that lands while the file's new
// size is lost. No xSync of this VFS calls a real fsync, buffering on or off.
//
// Failure points: the N-th counted call (open, read, write, sync, lock, truncate) since arm()
// fails with an I/O error, a full disk or can't-open, once or from then on.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace outpost::faults::vfs {

inline constexpr const char* kName = "outpost-fault";
inline constexpr int kCutExit = 86;  // the exit status of a process whose power was cut

// Registers the VFS over the current default (once per process); with make_default, every
// connection opened afterwards without a VFS name uses it (outpost's own included).
void install(bool make_default);

// --- failure points ---
enum Op : unsigned {
    op_open = 1,
    op_read = 2,
    op_write = 4,
    op_sync = 8,
    op_lock = 16,
    op_truncate = 32,
};
enum class Failure {
    io_error,   // the call's SQLITE_IOERR_* (open: SQLITE_CANTOPEN)
    disk_full,  // SQLITE_FULL
    cant_open,  // SQLITE_CANTOPEN (meant for op_open)
};
struct FailurePlan {
    unsigned ops = 0;       // which calls are counted (Op bits)
    std::uint64_t nth = 0;  // the counted call that fails first, from 1
    Failure failure = Failure::io_error;
    bool sticky = false;  // false: that call only; true: it and every counted call after it
};
// Starts counting calls from 0 with `plan`.
void arm(const FailurePlan& plan);
// No call fails any more; the counts stay readable.
void disarm();
std::uint64_t counted_calls();  // counted calls since the last arm()
std::uint64_t failed_calls();   // calls failed since the last arm()

// --- power loss ---
struct CutStats {
    std::uint64_t written = 0, dropped = 0, garbled = 0;
};
// Buffering on/off. Turning it off writes out what is buffered first.
void set_buffering(bool on);
enum class CutAt { never, sync, write };
// Cuts the power at the nth xSync (CutAt::sync, counting every buffered file's syncs) or the
// nth xWrite (CutAt::write, the write itself still buffered) from now, the fates drawn from
// `seed`. `last_words` runs just before _exit (report the fates down a pipe).
void cut_power_at(CutAt at, std::uint64_t nth, std::uint64_t seed,
                  std::function<void(const CutStats&)> last_words = {});
// Called after each completed xSync of a buffered file, with the file's path (outside the
// VFS's lock: it may write to a pipe, never call SQLite).
void on_synced(std::function<void(const std::string& path)> hook);
std::uint64_t syncs();   // xSync calls on buffered files since the process started
std::uint64_t writes();  // xWrite calls on buffered files since the process started

}  // namespace outpost::faults::vfs
