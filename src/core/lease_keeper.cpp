#include "lease_keeper.hpp"

#include <algorithm>
#include <cstdio>
#include <random>

#include "outpost/error.hpp"
#include "outpost/process.hpp"

namespace outpost::detail {

namespace {

std::string random_token() {
    std::mt19937_64 rng{std::random_device{}()};
    char out[33];
    std::snprintf(out, sizeof out, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                  static_cast<unsigned long long>(rng()));
    return out;
}

}  // namespace

LeaseKeeper::LeaseKeeper(Store& store, const Clock& clock, std::chrono::milliseconds ttl,
                         Clock::duration retry_pause)
    : store_(store), clock_(clock), ttl_(ttl), retry_pause_(retry_pause) {
    const ProcessIdentity me = this_process();
    lease_.owner = random_token();
    lease_.host = me.host;
    lease_.pid = me.pid;
}

void LeaseKeeper::take() {
    const std::int64_t now = clock_.wall_ms();
    lease_.started_at = ever_ ? lease_.started_at : now;
    lease_.heartbeat_at = now;
    lease_.expires_at = now + ttl_.count();
    store_.acquire_lease(lease_);  // throws LeaseHeld
    held_ = true;
    ever_ = true;
    next_heartbeat_ = clock_.now() + ttl_ / 3;
}

LeaseKeeper::Change LeaseKeeper::keep() {
    if (clock_.now() < next_heartbeat_) {
        return Change::none;
    }
    // Until the store answers: a store that throws is asked again after a pause, not in a spin.
    next_heartbeat_ = clock_.now() + std::min<Clock::duration>(ttl_ / 3, retry_pause_);
    if (!held_) {
        try {
            take();
            return Change::taken;
        } catch (const LeaseHeld&) {
            next_heartbeat_ = clock_.now() + ttl_ / 3;
        }
        return Change::none;
    }
    const std::int64_t now = clock_.wall_ms();
    if (store_.renew_lease(lease_.owner, now, now + ttl_.count())) {
        next_heartbeat_ = clock_.now() + ttl_ / 3;
        return Change::none;
    }
    held_ = false;
    next_heartbeat_ = clock_.now() + ttl_ / 3;
    return Change::lost;
}

void LeaseKeeper::release() noexcept {
    if (held_) {
        store_.release_lease(lease_.owner);
        held_ = false;
    }
}

}  // namespace outpost::detail
