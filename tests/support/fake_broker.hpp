// Test support: a scriptable MessageBroker with fault switches and a log of what it was given.
#pragma once

#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "outpost/broker.hpp"
#include "outpost/error.hpp"

namespace outpost::testing {

class FakeBroker final : public MessageBroker {
  public:
    // --- switches (any thread) ---

    // connect() fails while unreachable (BrokerError, transient unless set_refusing).
    void set_reachable(bool up) {
        std::lock_guard lock(mutex_);
        reachable_ = up;
    }
    // connect() fails with a non-transient error (a refused password).
    void set_refusing(bool refuse) {
        std::lock_guard lock(mutex_);
        refusing_ = refuse;
    }
    // The next `n` publishes are rejected with `reason`.
    void reject_next(int n, std::string reason = "PUBACK reason 0x97 quota exceeded",
                     bool permanent = false, int code = 0x97) {
        std::lock_guard lock(mutex_);
        for (int i = 0; i < n; ++i) {
            script_.push_back(PublishResult::rejected_with(code, reason, permanent));
        }
    }
    // The next `n` publishes are acknowledged with MQTT 5's PUBACK 0x10 "no matching
    // subscribers" (delivered, with the notice).
    void unroute_next(int n) {
        std::lock_guard lock(mutex_);
        for (int i = 0; i < n; ++i) {
            script_.push_back(PublishResult::delivered_with(
                kNoMatchingSubscribers, "PUBACK reason 0x10 no matching subscribers"));
        }
    }
    // Publishes to `topic` are always rejected (a topic the broker's ACL denies).
    void deny_topic(std::string topic) {
        std::lock_guard lock(mutex_);
        denied_.push_back(std::move(topic));
    }
    // A publish to `topic` makes the broker drop the connection instead of answering (mosquitto
    // does so for a control character in a topic, QoS above its maximum, ...).
    void disconnect_on_topic(std::string topic) {
        std::lock_guard lock(mutex_);
        disconnecting_.push_back(std::move(topic));
    }
    // With auto-ack off, acknowledgements are held until ack()/ack_all() (delayed acks).
    void set_auto_ack(bool on) {
        std::lock_guard lock(mutex_);
        auto_ack_ = on;
    }
    // Acknowledges the oldest `n` held publishes (delivered). Returns how many it acknowledged.
    std::size_t ack(std::size_t n) {
        std::vector<PublishCallback> run;
        {
            std::lock_guard lock(mutex_);
            while (n-- > 0 && !held_.empty()) {
                run.push_back(std::move(held_.front()));
                held_.pop_front();
            }
        }
        for (auto& cb : run) {
            cb(PublishResult::delivered_ok());
        }
        return run.size();
    }
    std::size_t ack_all() { return ack(static_cast<std::size_t>(-1)); }
    // The connection drops: every held publish completes with connection_lost.
    void drop_connection(const std::string& why = "broker went away") {
        std::deque<PublishCallback> run;
        ConnectionHandler handler;
        {
            std::lock_guard lock(mutex_);
            connected_ = false;
            run.swap(held_);
            handler = handler_;
        }
        for (auto& cb : run) {
            cb(PublishResult::lost(why));
        }
        if (handler) {
            handler(false, why);
        }
    }

    // --- observations ---
    std::vector<Record> log() const {
        std::lock_guard lock(mutex_);
        return log_;
    }
    std::size_t published() const {
        std::lock_guard lock(mutex_);
        return log_.size();
    }
    std::size_t held() const {
        std::lock_guard lock(mutex_);
        return held_.size();
    }
    int connect_calls() const {
        std::lock_guard lock(mutex_);
        return connect_calls_;
    }
    std::vector<std::string> topics() const {
        std::lock_guard lock(mutex_);
        std::vector<std::string> out;
        for (const Record& r : log_) {
            out.push_back(r.message.topic);
        }
        return out;
    }

    // --- MessageBroker ---
    // Like MqttBroker (the contract suite, tests/integration/broker_contract_test.cpp, holds
    // both to it): the handler hears of every connect and of a disconnect that ended one.
    void connect(std::chrono::milliseconds) override {
        ConnectionHandler handler;
        {
            std::lock_guard lock(mutex_);
            ++connect_calls_;
            if (refusing_) {
                throw BrokerError("fake broker: not authorized", false, 0x87);
            }
            if (!reachable_) {
                throw BrokerError("fake broker: connection refused", true);
            }
            if (connected_) {
                return;
            }
            connected_ = true;
            handler = handler_;
        }
        if (handler) {
            handler(true, "connected to the fake broker");
        }
    }
    void disconnect(std::chrono::milliseconds) noexcept override {
        std::deque<PublishCallback> run;
        ConnectionHandler handler;
        {
            std::lock_guard lock(mutex_);
            if (connected_) {
                handler = handler_;
            }
            connected_ = false;
            run.swap(held_);
        }
        for (auto& cb : run) {
            cb(PublishResult::lost("disconnected"));
        }
        if (handler) {
            handler(false, "disconnected from the fake broker");
        }
    }
    bool connected() const noexcept override {
        std::lock_guard lock(mutex_);
        return connected_;
    }
    void publish(const Record& record, PublishCallback done) override {
        PublishResult result;
        bool poisoned = false;
        {
            std::lock_guard lock(mutex_);
            if (!connected_) {
                result = PublishResult::lost("not connected");
            } else {
                log_.push_back(record);
                for (const std::string& t : disconnecting_) {
                    if (record.message.topic == t) {
                        held_.push_back(std::move(done));
                        poisoned = true;
                    }
                }
                for (const std::string& t : denied_) {
                    if (record.message.topic == t) {
                        script_.push_front(PublishResult::rejected_with(
                            0x87, "PUBACK reason 0x87 not authorized", true));
                    }
                }
                if (poisoned) {
                    // below, outside the lock: every held publish is lost with the connection
                } else if (!script_.empty()) {
                    result = script_.front();
                    script_.pop_front();
                } else if (!auto_ack_) {
                    held_.push_back(std::move(done));
                    return;
                }
            }
        }
        if (poisoned) {
            drop_connection("the broker closed the connection");
            return;
        }
        done(result);
    }
    void set_connection_handler(ConnectionHandler handler) override {
        std::lock_guard lock(mutex_);
        handler_ = std::move(handler);
    }

  private:
    mutable std::mutex mutex_;
    bool reachable_ = true;
    bool refusing_ = false;
    bool connected_ = false;
    bool auto_ack_ = true;
    int connect_calls_ = 0;
    std::deque<PublishResult> script_;
    std::vector<std::string> denied_;
    std::vector<std::string> disconnecting_;
    std::deque<PublishCallback> held_;
    std::vector<Record> log_;
    ConnectionHandler handler_;
};

}  // namespace outpost::testing
