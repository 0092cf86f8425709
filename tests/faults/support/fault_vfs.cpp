#include "fault_vfs.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <vector>

namespace outpost::faults::vfs {

namespace {

// One change made since the file's last sync: a write of `data` at `offset`, or (truncate) a
// resize to `offset`.
struct Change {
    bool truncate = false;
    sqlite3_int64 offset = 0;
    std::vector<unsigned char> data;
};

// What the process has not synced of one path, shared by every handle on it.
struct PathState {
    std::vector<Change> changes;
};

struct File {
    sqlite3_file base;
    sqlite3_file* real;  // the default VFS's file, allocated right after this struct
    std::string* path;   // null for files that are never buffered (temp files, -shm)
    bool buffered;
};

struct State {
    std::mutex mutex;
    sqlite3_vfs* real = nullptr;
    sqlite3_vfs vfs{};
    sqlite3_io_methods methods{};
    bool buffering = false;
    std::map<std::string, PathState> paths;
    std::uint64_t syncs = 0, writes = 0;
    // power cut
    CutAt cut_at = CutAt::never;
    std::uint64_t cut_nth = 0, cut_seed = 0;
    std::function<void(const CutStats&)> last_words;
    std::function<void(const std::string&)> synced_hook;
    // failure points
    bool armed = false;
    FailurePlan plan;
    std::uint64_t counted = 0, failed = 0;
};

State& st() {
    static State* s = new State;  // never destroyed: connections may outlive static teardown
    return *s;
}

File* as_file(sqlite3_file* f) {
    return reinterpret_cast<File*>(f);
}

// The failure of a counted call, or SQLITE_OK. Takes the lock itself.
int fault(Op op, int io_code) {
    State& s = st();
    std::lock_guard lock(s.mutex);
    if (!s.armed || (s.plan.ops & op) == 0) {
        return SQLITE_OK;
    }
    const std::uint64_t n = ++s.counted;
    if (n < s.plan.nth || (n > s.plan.nth && !s.plan.sticky)) {
        return SQLITE_OK;
    }
    ++s.failed;
    switch (s.plan.failure) {
        case Failure::disk_full:
            return SQLITE_FULL;
        case Failure::cant_open:
            return SQLITE_CANTOPEN;
        case Failure::io_error:
            break;
    }
    return op == op_open ? SQLITE_CANTOPEN : io_code;
}

// The size of `path` after its buffered changes, starting from the real size.
sqlite3_int64 effective_size(const PathState& p, sqlite3_int64 real_size) {
    sqlite3_int64 size = real_size;
    for (const Change& c : p.changes) {
        if (c.truncate) {
            size = c.offset;
        } else {
            size =
                std::max<sqlite3_int64>(size, c.offset + static_cast<sqlite3_int64>(c.data.size()));
        }
    }
    return size;
}

// Writes `c` to the real file `fd` (or garbage of its length).
void put(int fd, const Change& c, const unsigned char* bytes) {
    if (c.truncate) {
        if (::ftruncate(fd, c.offset) != 0) {
            return;
        }
        return;
    }
    std::size_t done = 0;
    while (done < c.data.size()) {
        const ssize_t n = ::pwrite(fd, bytes + done, c.data.size() - done,
                                   static_cast<off_t>(c.offset + static_cast<sqlite3_int64>(done)));
        if (n <= 0) {
            return;
        }
        done += static_cast<std::size_t>(n);
    }
}

// Writes every buffered change of `path` to the real file in order and forgets them.
void flush_path(const std::string& path, PathState& p) {
    if (p.changes.empty()) {
        return;
    }
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        for (const Change& c : p.changes) {
            put(fd, c, c.data.data());
        }
        ::close(fd);
    }
    p.changes.clear();
}

// The power goes: every buffered change of every path is written, dropped or garbled; the
// process ends. Called with the lock held.
[[noreturn]] void cut_now(State& s) {
    std::mt19937_64 rng(s.cut_seed);
    CutStats stats;
    for (auto& [path, p] : s.paths) {
        const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
        for (const Change& c : p.changes) {
            const auto fate = rng() % 8;  // 0-2 written, 3-5 dropped, 6-7 garbled
            if (fate < 3 || (c.truncate && fate >= 6)) {
                ++stats.written;
                if (fd >= 0) {
                    put(fd, c, c.data.data());
                }
            } else if (fate < 6) {
                ++stats.dropped;
            } else {
                ++stats.garbled;
                std::vector<unsigned char> junk(c.data.size());
                for (auto& b : junk) {
                    b = static_cast<unsigned char>(rng());
                }
                if (fd >= 0) {
                    put(fd, c, junk.data());
                }
            }
        }
        if (fd >= 0) {
            ::close(fd);
        }
    }
    if (s.last_words) {
        s.last_words(stats);
    }
    ::_exit(kCutExit);
}

// --- io methods ---

int x_close(sqlite3_file* f) {
    File* file = as_file(f);
    const int rc =
        file->real->pMethods != nullptr ? file->real->pMethods->xClose(file->real) : SQLITE_OK;
    delete file->path;  // the path's buffered changes stay: closing a file does not sync it
    file->path = nullptr;
    return rc;
}

int x_read(sqlite3_file* f, void* buf, int amt, sqlite3_int64 off) {
    if (const int rc = fault(op_read, SQLITE_IOERR_READ)) {
        return rc;
    }
    File* file = as_file(f);
    State& s = st();
    std::unique_lock lock(s.mutex);
    const auto it = file->path != nullptr ? s.paths.find(*file->path) : s.paths.end();
    if (it == s.paths.end() || it->second.changes.empty()) {
        lock.unlock();
        return file->real->pMethods->xRead(file->real, buf, amt, off);
    }
    int rc = file->real->pMethods->xRead(file->real, buf, amt, off);
    if (rc != SQLITE_OK && rc != SQLITE_IOERR_SHORT_READ) {
        return rc;
    }
    sqlite3_int64 real_size = 0;
    if (const int r = file->real->pMethods->xFileSize(file->real, &real_size); r != SQLITE_OK) {
        return r;
    }
    auto* out = static_cast<unsigned char*>(buf);
    const sqlite3_int64 end = off + amt;
    for (const Change& c : it->second.changes) {
        if (c.truncate) {
            if (c.offset < end) {
                const sqlite3_int64 from = std::max(c.offset, off);
                std::memset(out + (from - off), 0, static_cast<std::size_t>(end - from));
            }
            continue;
        }
        const sqlite3_int64 c_end = c.offset + static_cast<sqlite3_int64>(c.data.size());
        const sqlite3_int64 from = std::max(c.offset, off), to = std::min(c_end, end);
        if (from < to) {
            std::memcpy(out + (from - off), c.data.data() + (from - c.offset),
                        static_cast<std::size_t>(to - from));
        }
    }
    const sqlite3_int64 size = effective_size(it->second, real_size);
    if (size < end) {
        const sqlite3_int64 from = std::max(size, off);
        std::memset(out + (from - off), 0, static_cast<std::size_t>(end - from));
        return SQLITE_IOERR_SHORT_READ;
    }
    return SQLITE_OK;
}

int x_write(sqlite3_file* f, const void* buf, int amt, sqlite3_int64 off) {
    if (const int rc = fault(op_write, SQLITE_IOERR_WRITE)) {
        return rc;
    }
    File* file = as_file(f);
    State& s = st();
    std::unique_lock lock(s.mutex);
    if (!file->buffered || !s.buffering) {
        lock.unlock();
        return file->real->pMethods->xWrite(file->real, buf, amt, off);
    }
    ++s.writes;
    const auto* p = static_cast<const unsigned char*>(buf);
    s.paths[*file->path].changes.push_back({false, off, {p, p + amt}});
    if (s.cut_at == CutAt::write && s.writes == s.cut_nth) {
        cut_now(s);
    }
    return SQLITE_OK;
}

int x_truncate(sqlite3_file* f, sqlite3_int64 size) {
    if (const int rc = fault(op_truncate, SQLITE_IOERR_TRUNCATE)) {
        return rc;
    }
    File* file = as_file(f);
    State& s = st();
    std::unique_lock lock(s.mutex);
    if (!file->buffered || !s.buffering) {
        lock.unlock();
        return file->real->pMethods->xTruncate(file->real, size);
    }
    s.paths[*file->path].changes.push_back({true, size, {}});
    return SQLITE_OK;
}

int x_sync(sqlite3_file* f, int flags) {
    if (const int rc = fault(op_sync, SQLITE_IOERR_FSYNC)) {
        return rc;
    }
    File* file = as_file(f);
    State& s = st();
    std::function<void(const std::string&)> hook;
    {
        std::lock_guard lock(s.mutex);
        if (!file->buffered || !s.buffering) {
            (void)flags;
            return SQLITE_OK;  // no real fsync: the power here is simulated
        }
        ++s.syncs;
        if (s.cut_at == CutAt::sync && s.syncs == s.cut_nth) {
            cut_now(s);  // during the sync: none of it is known to be on disk
        }
        flush_path(*file->path, s.paths[*file->path]);
        hook = s.synced_hook;
    }
    if (hook) {
        hook(*file->path);
    }
    return SQLITE_OK;
}

int x_file_size(sqlite3_file* f, sqlite3_int64* size) {
    File* file = as_file(f);
    const int rc = file->real->pMethods->xFileSize(file->real, size);
    if (rc != SQLITE_OK || file->path == nullptr) {
        return rc;
    }
    State& s = st();
    std::lock_guard lock(s.mutex);
    const auto it = s.paths.find(*file->path);
    if (it != s.paths.end()) {
        *size = effective_size(it->second, *size);
    }
    return SQLITE_OK;
}

int x_lock(sqlite3_file* f, int level) {
    if (const int rc = fault(op_lock, SQLITE_IOERR_LOCK)) {
        return rc;
    }
    return as_file(f)->real->pMethods->xLock(as_file(f)->real, level);
}

int x_unlock(sqlite3_file* f, int level) {
    return as_file(f)->real->pMethods->xUnlock(as_file(f)->real, level);
}

int x_check_reserved(sqlite3_file* f, int* out) {
    return as_file(f)->real->pMethods->xCheckReservedLock(as_file(f)->real, out);
}

int x_file_control(sqlite3_file* f, int op, void* arg) {
    if (op == SQLITE_FCNTL_SIZE_HINT || op == SQLITE_FCNTL_CHUNK_SIZE) {
        return SQLITE_OK;  // the default VFS would grow the real file behind the buffer
    }
    return as_file(f)->real->pMethods->xFileControl(as_file(f)->real, op, arg);
}

int x_sector_size(sqlite3_file* f) {
    return as_file(f)->real->pMethods->xSectorSize(as_file(f)->real);
}

int x_device_characteristics(sqlite3_file* f) {
    return as_file(f)->real->pMethods->xDeviceCharacteristics(as_file(f)->real);
}

int x_shm_map(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
    return as_file(f)->real->pMethods->xShmMap(as_file(f)->real, region, size, extend, out);
}

int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
    return as_file(f)->real->pMethods->xShmLock(as_file(f)->real, offset, n, flags);
}

void x_shm_barrier(sqlite3_file* f) {
    as_file(f)->real->pMethods->xShmBarrier(as_file(f)->real);
}

int x_shm_unmap(sqlite3_file* f, int del) {
    return as_file(f)->real->pMethods->xShmUnmap(as_file(f)->real, del);
}

// No memory-mapped reads: they would bypass the buffered changes.
int x_fetch(sqlite3_file*, sqlite3_int64, int, void** out) {
    *out = nullptr;
    return SQLITE_OK;
}

int x_unfetch(sqlite3_file*, sqlite3_int64, void*) {
    return SQLITE_OK;
}

// --- vfs methods ---

int x_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
    State& s = st();
    File* file = as_file(f);
    file->base.pMethods = nullptr;
    file->real = reinterpret_cast<sqlite3_file*>(file + 1);
    file->path = nullptr;
    file->buffered = false;
    if (const int rc = fault(op_open, SQLITE_CANTOPEN)) {
        return rc;
    }
    const int rc = s.real->xOpen(s.real, name, file->real, flags, out_flags);
    if (rc != SQLITE_OK) {
        return rc;
    }
    const bool persistent =
        (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL)) != 0;
    if (name != nullptr && persistent) {
        file->path = new std::string(name);
        file->buffered = true;
    }
    file->base.pMethods = &s.methods;
    return SQLITE_OK;
}

int x_delete(sqlite3_vfs*, const char* name, int sync_dir) {
    State& s = st();
    {
        std::lock_guard lock(s.mutex);
        s.paths.erase(name);
    }
    return s.real->xDelete(s.real, name, sync_dir);
}

int x_access(sqlite3_vfs*, const char* name, int flags, int* out) {
    return st().real->xAccess(st().real, name, flags, out);
}

int x_full_pathname(sqlite3_vfs*, const char* name, int n, char* out) {
    return st().real->xFullPathname(st().real, name, n, out);
}

void* x_dl_open(sqlite3_vfs*, const char* name) {
    return st().real->xDlOpen(st().real, name);
}
void x_dl_error(sqlite3_vfs*, int n, char* out) {
    st().real->xDlError(st().real, n, out);
}
void (*x_dl_sym(sqlite3_vfs*, void* h, const char* sym))(void) {
    return st().real->xDlSym(st().real, h, sym);
}
void x_dl_close(sqlite3_vfs*, void* h) {
    st().real->xDlClose(st().real, h);
}
int x_randomness(sqlite3_vfs*, int n, char* out) {
    return st().real->xRandomness(st().real, n, out);
}
int x_sleep(sqlite3_vfs*, int us) {
    return st().real->xSleep(st().real, us);
}
int x_current_time(sqlite3_vfs*, double* out) {
    return st().real->xCurrentTime(st().real, out);
}
int x_get_last_error(sqlite3_vfs*, int n, char* out) {
    return st().real->xGetLastError(st().real, n, out);
}
int x_current_time_int64(sqlite3_vfs*, sqlite3_int64* out) {
    return st().real->xCurrentTimeInt64(st().real, out);
}

}  // namespace

void install(bool make_default) {
    State& s = st();
    std::lock_guard lock(s.mutex);
    if (s.real == nullptr) {
        s.real = sqlite3_vfs_find(nullptr);
        if (s.real == nullptr || s.real->iVersion < 2) {
            throw std::runtime_error("fault VFS: no default VFS of version 2 or more");
        }
        s.methods = sqlite3_io_methods{3,
                                       &x_close,
                                       &x_read,
                                       &x_write,
                                       &x_truncate,
                                       &x_sync,
                                       &x_file_size,
                                       &x_lock,
                                       &x_unlock,
                                       &x_check_reserved,
                                       &x_file_control,
                                       &x_sector_size,
                                       &x_device_characteristics,
                                       &x_shm_map,
                                       &x_shm_lock,
                                       &x_shm_barrier,
                                       &x_shm_unmap,
                                       &x_fetch,
                                       &x_unfetch};
        sqlite3_vfs& v = s.vfs;
        v.iVersion = 2;
        v.szOsFile = static_cast<int>(sizeof(File)) + s.real->szOsFile;
        v.mxPathname = s.real->mxPathname;
        v.zName = kName;
        v.xOpen = &x_open;
        v.xDelete = &x_delete;
        v.xAccess = &x_access;
        v.xFullPathname = &x_full_pathname;
        v.xDlOpen = &x_dl_open;
        v.xDlError = &x_dl_error;
        v.xDlSym = &x_dl_sym;
        v.xDlClose = &x_dl_close;
        v.xRandomness = &x_randomness;
        v.xSleep = &x_sleep;
        v.xCurrentTime = &x_current_time;
        v.xGetLastError = &x_get_last_error;
        v.xCurrentTimeInt64 = &x_current_time_int64;
        if (sqlite3_vfs_register(&v, make_default ? 1 : 0) != SQLITE_OK) {
            throw std::runtime_error("fault VFS: sqlite3_vfs_register failed");
        }
        return;
    }
    if (make_default) {
        sqlite3_vfs_register(&s.vfs, 1);
    }
}

void arm(const FailurePlan& plan) {
    State& s = st();
    std::lock_guard lock(s.mutex);
    s.plan = plan;
    s.counted = 0;
    s.failed = 0;
    s.armed = true;
}

void disarm() {
    State& s = st();
    std::lock_guard lock(s.mutex);
    s.armed = false;
}

std::uint64_t counted_calls() {
    State& s = st();
    std::lock_guard lock(s.mutex);
    return s.counted;
}

std::uint64_t failed_calls() {
    State& s = st();
    std::lock_guard lock(s.mutex);
    return s.failed;
}

void set_buffering(bool on) {
    State& s = st();
    std::lock_guard lock(s.mutex);
    if (!on) {
        for (auto& [path, p] : s.paths) {
            flush_path(path, p);
        }
    }
    s.buffering = on;
}

void cut_power_at(CutAt at, std::uint64_t nth, std::uint64_t seed,
                  std::function<void(const CutStats&)> last_words) {
    State& s = st();
    std::lock_guard lock(s.mutex);
    s.cut_at = at;
    s.cut_nth = nth + (at == CutAt::sync ? s.syncs : s.writes);
    s.cut_seed = seed;
    s.last_words = std::move(last_words);
}

void on_synced(std::function<void(const std::string& path)> hook) {
    State& s = st();
    std::lock_guard lock(s.mutex);
    s.synced_hook = std::move(hook);
}

std::uint64_t syncs() {
    State& s = st();
    std::lock_guard lock(s.mutex);
    return s.syncs;
}

std::uint64_t writes() {
    State& s = st();
    std::lock_guard lock(s.mutex);
    return s.writes;
}

}  // namespace outpost::faults::vfs
