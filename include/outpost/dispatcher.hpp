// outpost: the dispatcher, which forwards pending records to a broker.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "outpost/broker.hpp"
#include "outpost/clock.hpp"
#include "outpost/retry_policy.hpp"
#include "outpost/store.hpp"

namespace outpost {

// Something that happened in the dispatcher, for logs and metrics.
struct DispatchEvent {
    enum class Kind {
        delivered,        // record acknowledged; detail: the broker's notice, if any (e.g.
                          // "PUBACK reason 0x10 no matching subscribers")
        retry_scheduled,  // record failed, will be tried again at next_attempt_at
        dead,             // record reached the retry cap
        expired,          // record's ttl passed before delivery
        connected,        // broker connection up
        disconnected,     // broker connection down (or a connect attempt failed)
        lease_lost,       // another dispatcher took the lease over; dispatching stopped
        error,            // a storage error; the dispatcher retries after the poll interval
    };
    Kind kind;
    std::int64_t record_id = 0;        // record events
    std::uint32_t attempts = 0;        // retry_scheduled, dead
    std::int64_t next_attempt_at = 0;  // retry_scheduled
    std::string detail;                // reason, error text
};

const char* to_string(DispatchEvent::Kind kind) noexcept;

// Called on the dispatcher thread: keep it short, never call back into the dispatcher.
using EventHandler = std::function<void(const DispatchEvent&)>;

// The longest duration any option accepts: 100 years (leave a feature off for "never").
inline constexpr std::chrono::milliseconds kMaxDuration{std::chrono::hours(24 * 365 * 100)};

struct DispatcherOptions {
    // Publishes in flight at once. Default 100; 1..65535.
    std::size_t window = 100;
    // Retry cap and backoff for message-specific failures.
    RetryPolicy retry;
    // A publish unanswered this long while connected counts as a failed attempt. Default 60 s:
    // above MqttBroker's half-open detection (1.5 x keepalive + 1 s, 46 s at its default 30 s
    // keepalive), so a link that dies silently is seen as a lost connection (which burns no
    // attempt) before the publishes on it time out. Keep it above that when you change either.
    std::chrono::milliseconds ack_timeout{std::chrono::seconds(60)};
    // How often to look for records committed by other processes (PRAGMA data_version). Records
    // added in this process wake the dispatcher at once. Default 500 ms.
    std::chrono::milliseconds poll_interval{500};
    // Reconnect backoff: from initial to max, doubling, with reconnect_jitter. Defaults 500 ms
    // and 60 s.
    std::chrono::milliseconds reconnect_initial{500};
    std::chrono::milliseconds reconnect_max{std::chrono::seconds(60)};
    // How much of each reconnect delay a random draw may take away: the delay is scaled by
    // 1 - reconnect_jitter x u, u uniform in [0, 1] and drawn per dispatcher. Default 0.5 (each
    // wait falls in the upper half of the backoff step); within [0, 1]. A fleet that lost the
    // same broker at the same instant would otherwise retry in lockstep and reach it, when it
    // comes back, all in the same moment; the random share lets every device drift off that
    // common schedule. 0 only for tests and single devices that want the exact delays.
    double reconnect_jitter = 0.5;
    // The time allowed for one connect attempt. Default 10 s.
    std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
    // Keep delivered records this long (then purge them). 0 = delete on acknowledgement.
    std::chrono::milliseconds retention{0};
    // A lease not renewed for this long may be taken over. Default 30 s; renewed every third.
    std::chrono::milliseconds lease_ttl{std::chrono::seconds(30)};
    // Completions written per transaction, at most. Default 1000.
    std::size_t max_batch = 1000;
    // Told about deliveries, retries, dead and expired records, connection changes.
    EventHandler on_event;

    // Throws InvalidConfig naming the field when a value is out of range.
    void validate() const;
};

// Counters since the dispatcher was made. A snapshot; safe to call from any thread.
struct DispatcherStats {
    std::uint64_t published = 0;  // publishes handed to the broker
    std::uint64_t delivered = 0;
    // Of those, acknowledged with MQTT 5 PUBACK 0x10 "no matching subscribers": the broker had
    // no subscriber for them, so nobody received them unless it keeps messages for later ones
    // (a persistent session's queue counts as a subscriber). Watch it: a nonzero count usually
    // means the consumer is down or subscribes to other topics.
    std::uint64_t unrouted = 0;
    std::uint64_t retries = 0;  // failed attempts that were rescheduled
    std::uint64_t dead = 0;
    std::uint64_t expired = 0;
    std::uint64_t connection_losses = 0;  // publishes that came back with connection_lost
    std::uint64_t reconnects = 0;         // successful connects
    std::size_t in_flight = 0;
    bool connected = false;
    bool running = false;
    std::string last_error;
};

// Forwards pending records, in dispatch order, through a MessageBroker.
//
// Threading: start() runs the loop on one thread of its own; run_once() runs one step on the
// caller's thread instead (for tests; never mix the two). stats(), wake(), drain() and stop() are
// safe from any thread. The Store and the broker are used from the dispatching thread only.
//
// Ordering: higher priority first, then commit order. At most one record per ordering key is in
// flight, and a key whose earliest pending record waits for its retry time holds back its later
// records, so first deliveries within a key (and a priority) keep commit order across retries,
// reconnects and restarts. Records without a key have no such bound and fill the window freely.
// When a key's head record goes dead, the key's later records flow on: a poison message must not
// stall a sensor's stream for ever. If the dead record is requeued it is delivered late, out of
// order; that is the one exception, and it only follows an explicit requeue.
class Dispatcher {
  public:
    // The store and broker must outlive the dispatcher. Acquires nothing until start() or the
    // first run_once().
    Dispatcher(Store& store, MessageBroker& broker, DispatcherOptions options = {},
               const Clock& clock = SystemClock::instance());
    ~Dispatcher();  // stop() with its default deadline
    Dispatcher(const Dispatcher&) = delete;
    Dispatcher& operator=(const Dispatcher&) = delete;

    // Takes the lease (throws LeaseHeld if another dispatcher has it) and starts the thread.
    // Returns once the thread runs. Throws Error if called twice without stop().
    void start();
    // Stops claiming, waits up to `deadline` for in-flight acknowledgements, writes what came
    // back, disconnects, releases the lease and joins the thread. Idempotent; never throws.
    // The deadline is real time, whatever Clock the dispatcher was given.
    void stop(std::chrono::milliseconds deadline = std::chrono::seconds(5)) noexcept;

    // One step without a thread: connect if needed (one attempt, when due), apply completions,
    // expire, publish what the window allows. Takes the lease on first use. Returns the number of
    // completions applied plus publishes made (0 = nothing happened).
    std::size_t run_once();

    // Wakes the loop at once and has it look at every pending record again (new records were
    // committed, or dead ones requeued). Outbox does this by itself for commits made in this
    // process.
    void wake() noexcept;

    // Waits until no record is pending and none is in flight (true), or the timeout passed
    // (false). Needs start().
    bool drain(std::chrono::milliseconds timeout);

    DispatcherStats stats() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace outpost
