// Test support: a Store that forwards to a real one and fails chosen calls, counts calls and the
// rows scans return. Fault switches (store_faults.hpp: Op, fail, fail_always, clear, calls,
// armed), not a mock: the real store still does the work.
#pragma once

#include <string>
#include <utility>

#include "outpost/store.hpp"
#include "store_faults.hpp"

namespace outpost::testing {

class FaultyStore final : public Store, public StoreFaults {
  public:
    explicit FaultyStore(Store& real) : real_(real) {}

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
    Store& real_;
};

}  // namespace outpost::testing
