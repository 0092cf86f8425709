// Test support: records every call of a MessageBroker's connection handler, for waiting on.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "outpost/broker.hpp"

namespace outpost::testing {

class ConnectionLog {
  public:
    ConnectionHandler handler() {
        return [this](bool up, const std::string& reason) {
            std::lock_guard lock(mutex_);
            events_.emplace_back(up, reason);
            cv_.notify_all();
        };
    }
    // Waits for a call with `up` among the calls after the first `from`; returns its reason, or
    // nullopt on timeout.
    std::optional<std::string> wait_for(bool up, std::chrono::milliseconds timeout,
                                        std::size_t from = 0) {
        std::unique_lock lock(mutex_);
        std::optional<std::string> reason;
        cv_.wait_for(lock, timeout, [&] {
            for (std::size_t i = from; i < events_.size(); ++i) {
                if (events_[i].first == up) {
                    reason = events_[i].second;
                    return true;
                }
            }
            return false;
        });
        return reason;
    }
    std::vector<std::pair<bool, std::string>> events() {
        std::lock_guard lock(mutex_);
        return events_;
    }
    std::size_t size() {
        std::lock_guard lock(mutex_);
        return events_.size();
    }

  private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<std::pair<bool, std::string>> events_;
};

}  // namespace outpost::testing
