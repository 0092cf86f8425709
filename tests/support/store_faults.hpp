// Test support: the fault switches of a test Store (FaultyStore around a real store, FakeStore in
// memory), in one place so both fail the same way. A Store calls enter(op) first in each method;
// the switches decide whether that call throws. Thread-safe: a test may arm a switch while a
// dispatcher thread calls the store.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>

#include "outpost/error.hpp"

namespace outpost::testing {

class StoreFaults {
  public:
    // Every Store method that can fail, by name (release_lease never throws: not here).
    enum class Op {
        scan_pending,
        key_head,
        scan_arrivals,
        last_id,
        requeue_count,
        load_pending,
        apply,
        has_pending,
        next_expiry,
        expire_due,
        clamp_retry_times,
        purge_delivered,
        data_version,
        acquire_lease,
        renew_lease,
    };
    static constexpr Op kOps[] = {
        Op::scan_pending, Op::key_head,          Op::scan_arrivals,
        Op::last_id,      Op::requeue_count,     Op::load_pending,
        Op::apply,        Op::has_pending,       Op::next_expiry,
        Op::expire_due,   Op::clamp_retry_times, Op::purge_delivered,
        Op::data_version, Op::acquire_lease,     Op::renew_lease,
    };
    static const char* name(Op op) {
        static const char* const kNames[] = {
            "scan_pending", "key_head",          "scan_arrivals",
            "last_id",      "requeue_count",     "load_pending",
            "apply",        "has_pending",       "next_expiry",
            "expire_due",   "clamp_retry_times", "purge_delivered",
            "data_version", "acquire_lease",     "renew_lease",
        };
        return kNames[static_cast<int>(op)];
    }

    // The errors SqliteStore raises (src/sqlite/sqlite_error.cpp, rethrow_sqlite), with SQLite's
    // primary result codes: SQLITE_BUSY 5 (transient), SQLITE_FULL 13 (transient: the store
    // frees its reserve and deliveries free space), SQLITE_IOERR 10 (permanent).
    static StorageError busy_error() {
        return StorageError("injected: database is locked", true, kBusyCode);
    }
    static StorageError disk_full_error() {
        return StorageError("injected: the disk is full (database or disk is full)", true,
                            kFullCode);
    }
    static StorageError io_error() { return StorageError("injected: disk I/O error", false, 10); }
    static constexpr int kBusyCode = 5;
    static constexpr int kFullCode = 13;

    StoreFaults() = default;
    StoreFaults(const StoreFaults&) = delete;
    StoreFaults& operator=(const StoreFaults&) = delete;

    // The `nth` call (1-based, counted from now) of `op` and the `times - 1` after it throw
    // `error`: a StorageError, transient (busy) by default. Replaces an earlier switch of `op`.
    void fail(Op op, int nth = 1, int times = 1, StorageError error = busy_error()) {
        std::lock_guard lock(mutex_);
        faults_.insert_or_assign(op, Fault{calls_[op] + nth, calls_[op] + nth + times, error});
    }
    // Every later call of `op` throws until clear() (an I/O error by default).
    void fail_always(Op op, StorageError error = io_error()) { fail(op, 1, 1 << 30, error); }
    // Disarms every switch (the call counts stay).
    void clear() {
        std::lock_guard lock(mutex_);
        faults_.clear();
    }
    // Calls of `op` so far, failed ones included.
    int calls(Op op) const {
        std::lock_guard lock(mutex_);
        auto it = calls_.find(op);
        return it == calls_.end() ? 0 : it->second;
    }
    // Rows returned by scan_pending and scan_arrivals so far: what the dispatcher looked at.
    std::size_t rows_scanned() const {
        std::lock_guard lock(mutex_);
        return rows_;
    }
    // Whether some fault is still armed (not yet fired or still firing).
    bool armed() const {
        std::lock_guard lock(mutex_);
        for (const auto& [op, f] : faults_) {
            auto it = calls_.find(op);
            if ((it == calls_.end() ? 0 : it->second) < f.last) {
                return true;
            }
        }
        return false;
    }

  protected:
    ~StoreFaults() = default;

    // Counts a call of `op`; throws the armed error when this call is one it covers.
    void enter(Op op) {
        std::lock_guard lock(mutex_);
        const int n = ++calls_[op];
        auto it = faults_.find(op);
        if (it != faults_.end() && n >= it->second.first && n < it->second.last) {
            throw it->second.error;
        }
    }
    // Adds `n` to rows_scanned().
    void count_rows(std::size_t n) {
        std::lock_guard lock(mutex_);
        rows_ += n;
    }

  private:
    struct Fault {
        int first = 0;  // call numbers [first, last) throw
        int last = 0;
        StorageError error{"", false, 0};
    };

    mutable std::mutex mutex_;
    std::map<Op, int> calls_;
    std::map<Op, Fault> faults_;
    std::size_t rows_ = 0;
};

}  // namespace outpost::testing
