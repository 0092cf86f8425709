#include "publish_ledger.hpp"

#include <algorithm>
#include <iterator>
#include <utility>
#include <vector>

namespace outpost::detail {

std::uint64_t PublishLedger::add(PublishCallback done, int qos, bool sent) {
    const std::uint64_t seq = ++next_seq_;
    outstanding_.emplace(seq, Entry{std::move(done), qos, sent});
    return seq;
}

std::optional<PublishLedger::Entry> PublishLedger::take(std::uint64_t seq) {
    auto it = outstanding_.find(seq);
    if (it == outstanding_.end()) {
        return std::nullopt;
    }
    std::optional<Entry> entry = std::move(it->second);
    outstanding_.erase(it);
    return entry;
}

PublishLedger::Batch PublishLedger::take_all() {
    // A swap, not a copy: the owner holds its lock here, the sorting happens in complete_all().
    Batch out;
    out.swap(outstanding_);
    return out;
}

std::optional<int> PublishLedger::qos_of(std::uint64_t seq) const {
    auto it = outstanding_.find(seq);
    if (it == outstanding_.end()) {
        return std::nullopt;
    }
    return it->second.qos;
}

bool PublishLedger::mark_sent(std::uint64_t seq) {
    auto it = outstanding_.find(seq);
    if (it == outstanding_.end()) {
        return false;
    }
    it->second.sent = true;
    return true;
}

void PublishLedger::complete(Entry& entry, const PublishResult& result) {
    if (entry.done) {
        entry.done(result);
    }
}

void PublishLedger::complete_all(Batch& batch, const PublishResult& result) noexcept {
    std::vector<std::pair<std::uint64_t, Entry>> ordered(std::make_move_iterator(batch.begin()),
                                                         std::make_move_iterator(batch.end()));
    std::sort(ordered.begin(), ordered.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& entry : ordered) {
        try {
            complete(entry.second, result);
        } catch (...) {
        }
    }
}

}  // namespace outpost::detail
