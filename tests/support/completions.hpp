// Test support: records every completion of a MessageBroker's publishes by record id, for
// waiting on and for checking "done exactly once". The callbacks it hands out may run on any
// thread (a broker's library threads, or the caller's before publish() returns); every method
// is thread-safe. It must outlive the broker whose publishes it records: declare it before the
// broker (the broker's destructor may still complete publishes).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "outpost/broker.hpp"

namespace outpost::testing {

class Completions {
  public:
    // The callback to give publish() for the record `id`.
    PublishCallback callback_for(std::int64_t id) {
        return [this, id](const PublishResult& r) {
            std::lock_guard lock(mutex_);
            got_[id].push_back(r);
            cv_.notify_all();
        };
    }
    // Waits until `n` distinct ids completed; false on timeout.
    bool wait_for(std::size_t n, std::chrono::milliseconds timeout) {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, timeout, [&] { return got_.size() >= n; });
    }
    // The first result of `id`; a test failure (and a connection_lost "missing") when none came.
    PublishResult get(std::int64_t id) {
        std::lock_guard lock(mutex_);
        auto it = got_.find(id);
        if (it == got_.end()) {
            ADD_FAILURE() << "no result for " << id;
            return PublishResult::lost("missing");
        }
        return it->second.front();
    }
    // How many ids completed first with `status`.
    std::size_t count(PublishResult::Status status) {
        std::lock_guard lock(mutex_);
        return static_cast<std::size_t>(std::count_if(got_.begin(), got_.end(), [&](const auto& e) {
            return e.second.front().status == status;
        }));
    }
    // How many distinct ids completed.
    std::size_t size() {
        std::lock_guard lock(mutex_);
        return got_.size();
    }
    // How many completions came for an id that had completed already.
    int duplicates() {
        std::lock_guard lock(mutex_);
        int n = 0;
        for (const auto& [id, results] : got_) {
            n += static_cast<int>(results.size()) - 1;
        }
        return n;
    }
    // Ids completed more than once.
    std::vector<std::int64_t> repeated() {
        std::lock_guard lock(mutex_);
        std::vector<std::int64_t> out;
        for (const auto& [id, results] : got_) {
            if (results.size() != 1) {
                out.push_back(id);
            }
        }
        return out;
    }

  private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::map<std::int64_t, std::vector<PublishResult>> got_;
};

}  // namespace outpost::testing
