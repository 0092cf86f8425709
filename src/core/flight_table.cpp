#include "flight_table.hpp"

#include <algorithm>

namespace outpost::detail {

bool CompletionInbox::push(Completion c) {
    completions_.push_back(std::move(c));
    if (outstanding_ > 0) {  // a late answer to a given-up publish may come after a reset
        --outstanding_;
    }
    const std::size_t n = completions_.size();
    const bool wake = outstanding_ == 0 || n >= std::max<std::size_t>(1, (outstanding_ + n) / 4);
    due_ = due_ || wake;
    return wake;
}

std::vector<Completion> CompletionInbox::take() {
    std::vector<Completion> out;
    out.swap(completions_);
    due_ = false;
    return out;
}

void CompletionInbox::discard() {
    completions_.clear();
    due_ = false;
}

FlightTable::FlightTable(const RetryPolicy& retry, std::chrono::milliseconds ack_timeout,
                         const Clock& clock)
    : retry_(retry), ack_timeout_(ack_timeout), clock_(clock) {}

const Flight* FlightTable::find(std::int64_t id) const {
    auto it = flights_.find(id);
    return it == flights_.end() ? nullptr : &it->second;
}

std::vector<std::int64_t> FlightTable::ids() const {
    std::vector<std::int64_t> out;
    out.reserve(flights_.size());
    for (const auto& [id, f] : flights_) {
        out.push_back(id);
    }
    return out;
}

std::uint64_t FlightTable::launch(PendingRef ref, std::uint32_t attempts, bool alone) {
    const std::uint64_t s = ++seq_;
    ref.attempts = attempts;
    const auto now = clock_.now();
    const std::int64_t id = ref.id;
    Flight& f = flights_[id];
    f = Flight{s, std::move(ref), now, now + ack_timeout_, std::nullopt};
    f.alone = alone;
    f.after_ack = acked_seq_ > 0;
    ++sent_;
    return s;
}

void FlightTable::decide(PendingRef ref, Outcome outcome) {
    const std::int64_t id = ref.id;
    Flight f;
    f.ref = std::move(ref);
    f.outcome = std::move(outcome);
    flights_.emplace(id, std::move(f));
}

Outcome FlightTable::failure(std::int64_t id, const PendingRef& ref, const std::string& why) {
    const std::uint32_t attempts = ref.attempts + 1;
    const std::int64_t now = clock_.wall_ms();
    if (auto at = retry_.next_attempt_at(attempts, now, unit_(rng_))) {
        return {Outcome::Kind::retry, id, attempts, *at, why, now};
    }
    return {Outcome::Kind::dead, id, attempts, 0, why, now};
}

FlightTable::Collected FlightTable::collect(const std::vector<Completion>& answers,
                                            bool connected) {
    Collected out;
    for (const Completion& c : answers) {
        auto it = flights_.find(c.id);
        if (it == flights_.end() || it->second.seq != c.seq || it->second.outcome) {
            continue;  // a late answer to a publish we already gave up on
        }
        Flight& f = it->second;
        switch (c.result.status) {
            case PublishResult::Status::delivered:
                acked_seq_ = std::max(acked_seq_, f.seq);
                // The notice is kept for the Dispatcher's report of unrouted deliveries.
                f.outcome =
                    Outcome{Outcome::Kind::delivered,
                            c.id,
                            f.ref.attempts,
                            0,
                            c.result.reason_code == kNoMatchingSubscribers ? c.result.reason : "",
                            clock_.wall_ms()};
                break;
            case PublishResult::Status::rejected:
                acked_seq_ = std::max(acked_seq_, f.seq);
                f.outcome =
                    failure(c.id, f.ref,
                            c.result.reason.empty() ? "rejected by the broker" : c.result.reason);
                break;
            case PublishResult::Status::connection_lost:
                out.lost.emplace_back(c.id, std::move(f));
                flights_.erase(it);
                --sent_;
                continue;
        }
        --sent_;
        ++out.decided;
    }
    if (connected) {
        const auto now = clock_.now();
        for (auto& [id, f] : flights_) {
            if (!f.outcome && f.deadline <= now) {
                f.outcome = failure(
                    id, f.ref,
                    "no acknowledgement within " + std::to_string(ack_timeout_.count()) + " ms");
                f.seq = 0;  // ignore the answer if it ever comes
                --sent_;
                ++out.decided;
            }
        }
    }
    return out;
}

std::unordered_set<std::uint64_t> FlightTable::answered(const std::vector<Completion>& queued) {
    std::unordered_set<std::uint64_t> out;
    for (const Completion& c : queued) {
        auto it = flights_.find(c.id);
        if (c.result.status != PublishResult::Status::connection_lost && it != flights_.end() &&
            it->second.seq == c.seq) {
            out.insert(c.seq);
            acked_seq_ = std::max(acked_seq_, c.seq);
        }
    }
    return out;
}

std::vector<std::pair<std::int64_t, Flight>> FlightTable::drop_undecided() {
    std::vector<std::pair<std::int64_t, Flight>> dropped;
    for (auto it = flights_.begin(); it != flights_.end();) {
        if (!it->second.outcome) {
            dropped.emplace_back(it->first, std::move(it->second));
            it = flights_.erase(it);
        } else {
            ++it;
        }
    }
    sent_ = 0;
    return dropped;
}

std::vector<Outcome> FlightTable::decided() const {
    std::vector<Outcome> out;
    for (const auto& [id, f] : flights_) {
        if (f.outcome) {
            out.push_back(*f.outcome);
        }
    }
    return out;
}

std::optional<PendingRef> FlightTable::settle(std::int64_t id) {
    auto it = flights_.find(id);
    if (it == flights_.end()) {
        return std::nullopt;
    }
    PendingRef ref = std::move(it->second.ref);
    flights_.erase(it);
    return ref;
}

std::optional<Clock::time_point> FlightTable::next_deadline(Clock::time_point now,
                                                            Clock::duration retry_pause) const {
    std::optional<Clock::time_point> t;
    for (const auto& [id, f] : flights_) {
        // An outcome waiting to be written after a storage error: try again soon, without
        // spinning on a disk that stays full.
        const Clock::time_point at = f.outcome ? now + retry_pause : f.deadline;
        t = std::min(t.value_or(at), at);
    }
    return t;
}

void FlightTable::clear() {
    flights_.clear();
    sent_ = 0;
}

}  // namespace outpost::detail
