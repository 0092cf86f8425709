// outpost: the seam between the dispatcher and the outside world.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "outpost/message.hpp"

namespace outpost {

// How one publish ended.
// MQTT 5 PUBACK/PUBREC reason 0x10: accepted, but no subscription matched the topic.
inline constexpr int kNoMatchingSubscribers = 0x10;

struct PublishResult {
    enum class Status {
        delivered,        // the broker acknowledged (PUBACK/PUBCOMP, or handed to TCP for QoS 0);
                          // reason_code may be a success code the broker added (MQTT 5 PUBACK
                          // 0x10 "no matching subscribers": routed to nobody, still delivered)
        rejected,         // the broker refused this message (reason code >= 0x80, or a local
                          // refusal such as a packet too large): counts as an attempt
        connection_lost,  // the connection went away before an answer: never an attempt
    };
    Status status = Status::delivered;
    // For rejected: true when retrying cannot help (not authorized, topic name invalid, ...).
    // Both permanent and transient rejections count against RetryPolicy::max_attempts; the flag
    // is kept for reporting.
    bool permanent = false;
    // The broker's reason code (MQTT 5), or 0.
    int reason_code = 0;
    // Human-readable reason; kept as the record's last_error (rejected), reported (delivered).
    std::string reason;

    static PublishResult delivered_ok() { return {}; }
    // Acknowledged with a success code other than 0 (kNoMatchingSubscribers); the Dispatcher
    // counts the first as DispatcherStats::unrouted.
    static PublishResult delivered_with(int code, std::string why) {
        return {Status::delivered, false, code, std::move(why)};
    }
    static PublishResult rejected_with(int code, std::string why, bool permanent) {
        return {Status::rejected, permanent, code, std::move(why)};
    }
    static PublishResult lost(std::string why) {
        return {Status::connection_lost, false, 0, std::move(why)};
    }
};

using PublishCallback = std::function<void(const PublishResult&)>;
// Told about every change of the connection: `up` true when connected, false when lost (with
// the reason).
using ConnectionHandler = std::function<void(bool up, const std::string& reason)>;

// A message broker as the dispatcher sees it.
//
// Contract, for every implementation:
// - connect(), disconnect() and publish() are called from one thread at a time (the dispatcher's).
//   connected() may be called from any thread.
// - connect() blocks at most `timeout`, then either returns connected or throws BrokerError
//   (transient() says whether trying again later makes sense: a refused password does not).
// - publish() copies what it needs from `record` before returning and never blocks on the
//   network. It calls `done` exactly once, from any thread (possibly before publish() returns):
//   delivered, rejected, or connection_lost. If it cannot even start the publish because the
//   connection is down it calls done with connection_lost (or throws BrokerError).
// - When the connection drops, every outstanding publish completes with connection_lost (the
//   dispatcher also treats them so as soon as connected() turns false, and ignores late answers).
// - The implementation keeps no copy of messages beyond the publishes in flight: the outbox
//   table is the only store.
class MessageBroker {
  public:
    virtual ~MessageBroker() = default;

    virtual void connect(std::chrono::milliseconds timeout) = 0;
    // Disconnects, waiting at most `timeout` for outstanding acknowledgements. Never throws.
    virtual void disconnect(std::chrono::milliseconds timeout) noexcept = 0;
    virtual bool connected() const noexcept = 0;
    virtual void publish(const Record& record, PublishCallback done) = 0;
    // Installs the connection handler (replacing any earlier one). Called from any thread.
    virtual void set_connection_handler(ConnectionHandler handler) = 0;
};

}  // namespace outpost
