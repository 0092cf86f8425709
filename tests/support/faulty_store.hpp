// Test support: a Store that forwards to a real one and fails chosen calls, counts calls and the
// rows scans return. Fault switches, not a mock: the real store still does the work.
#pragma once

#include <map>
#include <mutex>
#include <string>

#include "outpost/error.hpp"
#include "outpost/store.hpp"

namespace outpost::testing {

class FaultyStore final : public Store {
  public:
    // Every Store method that can fail, by name.
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

    explicit FaultyStore(Store& real) : real_(real) {}

    // The `nth` call (1-based, counted from now) of `op` and the `times - 1` after it throw
    // `error`: a StorageError, transient (busy) by default.
    void fail(Op op, int nth = 1, int times = 1,
              StorageError error = StorageError("injected: database is locked", true, 5)) {
        std::lock_guard lock(mutex_);
        faults_.insert_or_assign(op, Fault{calls_[op] + nth, calls_[op] + nth + times, error});
    }
    // Every later call of `op` throws until clear().
    void fail_always(Op op,
                     StorageError error = StorageError("injected: disk I/O error", false, 10)) {
        fail(op, 1, 1 << 30, error);
    }
    void clear() {
        std::lock_guard lock(mutex_);
        faults_.clear();
    }
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

    std::vector<PendingRef> scan_pending(const DispatchCursor& after, std::size_t limit) override {
        enter(Op::scan_pending);
        auto out = real_.scan_pending(after, limit);
        count_rows(out.size());
        return out;
    }
    std::optional<PendingRef> key_head(const std::string& key) override {
        enter(Op::key_head);
        return real_.key_head(key);
    }
    std::vector<PendingRef> scan_arrivals(std::int64_t after_id, std::int64_t upto_id,
                                          int above_priority, std::size_t limit) override {
        enter(Op::scan_arrivals);
        auto out = real_.scan_arrivals(after_id, upto_id, above_priority, limit);
        count_rows(out.size());
        return out;
    }
    std::int64_t last_id() override {
        enter(Op::last_id);
        return real_.last_id();
    }
    std::int64_t requeue_count() override {
        enter(Op::requeue_count);
        return real_.requeue_count();
    }
    LoadedRecords load_pending(const std::vector<std::int64_t>& ids) override {
        enter(Op::load_pending);
        return real_.load_pending(ids);
    }
    void apply(const std::vector<Outcome>& outcomes, bool keep_delivered) override {
        enter(Op::apply);
        real_.apply(outcomes, keep_delivered);
    }
    bool has_pending() override {
        enter(Op::has_pending);
        return real_.has_pending();
    }
    std::optional<std::int64_t> next_expiry() override {
        enter(Op::next_expiry);
        return real_.next_expiry();
    }
    std::vector<std::int64_t> expire_due(std::int64_t now_ms,
                                         const std::vector<std::int64_t>& in_flight) override {
        enter(Op::expire_due);
        return real_.expire_due(now_ms, in_flight);
    }
    std::size_t clamp_retry_times(std::int64_t now_ms, std::int64_t horizon_ms) override {
        enter(Op::clamp_retry_times);
        return real_.clamp_retry_times(now_ms, horizon_ms);
    }
    std::size_t purge_delivered(std::int64_t before_ms) override {
        enter(Op::purge_delivered);
        return real_.purge_delivered(before_ms);
    }
    std::int64_t data_version() override {
        enter(Op::data_version);
        return real_.data_version();
    }
    void acquire_lease(const LeaseInfo& mine) override {
        enter(Op::acquire_lease);
        real_.acquire_lease(mine);
    }
    bool renew_lease(const std::string& owner, std::int64_t heartbeat_at,
                     std::int64_t expires_at) override {
        enter(Op::renew_lease);
        return real_.renew_lease(owner, heartbeat_at, expires_at);
    }
    void release_lease(const std::string& owner) noexcept override { real_.release_lease(owner); }
    void set_wake_handler(std::function<void(bool rescan)> wake) override {
        real_.set_wake_handler(std::move(wake));
    }

  private:
    struct Fault {
        int first = 0;  // call numbers [first, last) throw
        int last = 0;
        StorageError error{"", false, 0};
    };

    void enter(Op op) {
        std::lock_guard lock(mutex_);
        const int n = ++calls_[op];
        auto it = faults_.find(op);
        if (it != faults_.end() && n >= it->second.first && n < it->second.last) {
            throw it->second.error;
        }
    }
    void count_rows(std::size_t n) {
        std::lock_guard lock(mutex_);
        rows_ += n;
    }

    Store& real_;
    mutable std::mutex mutex_;
    std::map<Op, int> calls_;
    std::map<Op, Fault> faults_;
    std::size_t rows_ = 0;
};

}  // namespace outpost::testing
