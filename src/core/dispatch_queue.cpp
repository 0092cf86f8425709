#include "dispatch_queue.hpp"

#include <algorithm>

namespace outpost::detail {

DispatchQueue::DispatchQueue(std::size_t window)
    : due_capacity_(std::max<std::size_t>(4096, 16 * window)),
      scan_budget_(std::max<std::size_t>(256, 2 * window)) {}

void DispatchQueue::reset() {
    cursor_ = DispatchCursor{};
    at_end_ = false;
    arrivals_due_ = true;
    waiting_keys_.clear();
    waiting_ids_.clear();
    freed_.clear();
    dues_ = {};
    forgotten_due_.reset();
}

void DispatchQueue::wait_for(const PendingRef& r, std::int64_t at) {
    if (r.key) {
        waiting_keys_[*r.key] = at;
    } else {
        waiting_ids_.insert(r.id);
    }
    if (dues_.size() < due_capacity_) {
        dues_.push({at, r});
    } else {
        // No room: a pass from the top finds it when it is due.
        forgotten_due_ = std::min(forgotten_due_.value_or(at), at);
    }
}

std::optional<std::int64_t> DispatchQueue::next_due() const {
    std::optional<std::int64_t> t = forgotten_due_;
    if (!dues_.empty()) {
        t = std::min(t.value_or(dues_.top().at), dues_.top().at);
    }
    return t;
}

bool DispatchQueue::has_more(std::int64_t now) const {
    return !freed_.empty() || arrivals_due_ || !at_end_ ||
           (!dues_.empty() && dues_.top().at <= now);
}

void DispatchQueue::pick(Store& store, std::int64_t now, std::size_t room,
                         const std::function<bool(std::int64_t)>& in_flight,
                         std::int64_t suspect_id, Picked& out) {
    // Keyless records taken by this pick: no busy key stops a second source (a due retry, then
    // the forward pass) from handing out the same record twice.
    std::unordered_set<std::int64_t> taken_ids;
    auto left = [&] { return room - std::min(room, out.send.size()); };
    auto consider = [&](const PendingRef& r) {
        if (in_flight(r.id) || taken_ids.count(r.id) != 0 ||
            (!r.key && waiting_ids_.count(r.id) != 0)) {
            return;  // taken, or waiting in dues_
        }
        if (r.key && (busy_keys_.count(*r.key) != 0 || waiting_keys_.count(*r.key) != 0)) {
            return;  // asked again when the key is free or due
        }
        if (r.expires_at && *r.expires_at <= now) {
            if (r.key) {
                busy_keys_.insert(*r.key);  // freed once the outcome is written
            } else {
                taken_ids.insert(r.id);
            }
            out.expired.push_back(r);
            return;
        }
        if (r.next_attempt_at > now) {
            wait_for(r, r.next_attempt_at);
            return;
        }
        if (r.key) {
            busy_keys_.insert(*r.key);  // one per key within this pick too
        } else {
            taken_ids.insert(r.id);  // and one per keyless record
        }
        if (r.id == suspect_id) {
            out.held = r;  // sent alone, see PoisonSuspect
            return;
        }
        out.send.push_back(r);
    };
    auto head_of = [&](const std::string& key) {
        if (std::optional<PendingRef> head = store.key_head(key)) {
            consider(*head);
        }
    };

    if (forgotten_due_ && *forgotten_due_ <= now) {
        reset();  // dues_ had no room for some: look at everything again
    }
    // 1. Waits that are over: keyed heads and keyless records.
    while (!dues_.empty() && dues_.top().at <= now && left() > 0) {
        const Due d = dues_.top();
        dues_.pop();
        if (d.ref.key) {
            auto w = waiting_keys_.find(*d.ref.key);
            if (w == waiting_keys_.end() || w->second != d.at) {
                continue;  // a stale entry: the key was rescheduled or forgotten
            }
            waiting_keys_.erase(w);
            head_of(*d.ref.key);
        } else if (waiting_ids_.erase(d.ref.id) != 0) {
            consider(d.ref);
        }
    }
    // 2. Keys that became free: their head, wherever it lies.
    while (!freed_.empty() && left() > 0) {
        const std::string key = *freed_.begin();
        freed_.erase(freed_.begin());
        head_of(key);
    }
    // 3. Arrivals that lie before the pass position (a higher priority than the cursor's); the
    // others lie ahead of it and the pass reaches them.
    if (arrivals_due_ && left() > 0) {
        const std::int64_t upto = store.last_id();
        std::vector<PendingRef> refs;
        if (!cursor_.at_start && upto > seen_id_) {
            refs = store.scan_arrivals(seen_id_, upto, cursor_.priority, left() + 1);
        }
        std::int64_t done_upto = upto;
        if (refs.size() > left()) {
            refs.pop_back();
            done_upto = refs.back().id;  // the rest next pick
        } else {
            arrivals_due_ = false;
        }
        std::stable_sort(refs.begin(), refs.end(), [](const PendingRef& a, const PendingRef& b) {
            return a.priority > b.priority;
        });
        for (const PendingRef& r : refs) {
            if (r.key) {
                head_of(*r.key);  // an earlier record of its key goes first
            } else {
                consider(r);
            }
        }
        seen_id_ = std::max(seen_id_, done_upto);
        at_end_ = false;  // the others lie ahead of the cursor
    }
    // 4. The forward pass, at most scan_budget_ rows per pick (the loop comes back at once
    // while the pass has not reached the end).
    std::size_t examined = 0;
    while (left() > 0 && !at_end_ && examined < scan_budget_) {
        const std::size_t want = std::max<std::size_t>(left(), 32);
        const std::vector<PendingRef> refs = store.scan_pending(cursor_, want);
        if (refs.size() < want) {
            at_end_ = true;
        }
        for (const PendingRef& r : refs) {
            if (left() == 0) {
                at_end_ = false;  // more may follow; come back from here
                break;
            }
            // seen_id_ stays: ids below this one may lie behind the cursor at a higher
            // priority, committed since the last arrivals check.
            cursor_ = DispatchCursor{r.priority, r.id, false};
            ++examined;
            consider(r);
        }
    }
}

}  // namespace outpost::detail
