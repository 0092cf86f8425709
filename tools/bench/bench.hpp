// outpost-bench: shared pieces of the scenarios.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace outpost::bench {

// One line of the report. For rates `ratio` = outpost / baseline; for times and memory it is
// baseline / outpost, so higher is better everywhere.
struct Result {
    std::string scenario;
    double outpost = 0;
    std::optional<double> baseline;
    std::optional<double> ratio;
    std::string unit;
    std::string goal;         // human text of the goal
    std::optional<bool> met;  // std::nullopt when there is no goal ("reported")
    std::string note;         // how it was measured (sizes, settings)
};

struct Config {
    bool quick = false;
    // The fleet group: its 200 devices spread over this many processes (default one each, as in
    // a fleet), and the broker outage in ms (default 20 s, 10 s with --quick).
    int fleet_processes = 200;
    std::optional<long> fleet_outage_ms;
    std::string broker_uri;  // the bench's own mosquitto
    int broker_port = 0;
    std::function<void()> stop_broker;  // for the idle scenario
    std::function<void()> start_broker;
    std::string self_exe;  // this binary, for child-process measurements
    std::string footprint_library;
    std::string footprint_app;
};

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The median of `v` (v must not be empty).
double median(std::vector<double> v);

// A 200-byte payload whose first bytes carry `i`.
std::string payload_for(std::uint64_t i, std::size_t size = 200);

// Creates a database at `path` holding `n` pending outpost records of 200 bytes, fast.
void prefill(const std::string& path, std::uint64_t n, const std::string& topic = "bench/drain");

// Peak resident set of this process in KiB (VmHWM).
long peak_rss_kib();

// Scenarios. Each appends its result lines.
void enqueue_scenarios(const Config& c, std::vector<Result>& out);
void drain_scenarios(const Config& c, std::vector<Result>& out);
void latency_scenario(const Config& c, std::vector<Result>& out);
void backlog_scenario(const Config& c, std::vector<Result>& out);
void idle_scenario(const Config& c, std::vector<Result>& out);
void flash_scenarios(const Config& c, std::vector<Result>& out);
void footprint_scenario(const Config& c, std::vector<Result>& out);
void fleet_scenarios(const Config& c, std::vector<Result>& out);

// Child mode (run through self_exe): drains the outbox at `db` to `uri` with the dispatcher
// (MqttOptions::id_property = `id_property`) and prints "<messages/s> <peak RSS KiB>" on stdout.
// Returns the exit code.
int drain_child(const std::string& db, const std::string& uri, std::uint64_t expected,
                const std::string& id_property);

// Child mode of the fleet scenarios: `devices` dispatchers in this process on files in `dir`, told
// "add" and "quit" on stdin, reporting on stdout (fleet.cpp). Returns the exit code.
int fleet_child(const std::string& uri, const std::string& dir, int process, double jitter,
                int devices, std::chrono::milliseconds reconnect_max);

// A TCP proxy on a free loopback port that forwards to 127.0.0.1:target_port, holding every
// chunk back `one_way` in each direction (a link with 2 x one_way round trip).
class DelayProxy {
  public:
    DelayProxy(int target_port, std::chrono::milliseconds one_way);
    ~DelayProxy();
    DelayProxy(const DelayProxy&) = delete;
    DelayProxy& operator=(const DelayProxy&) = delete;
    int port() const { return port_; }
    std::string uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

  private:
    struct Impl;
    Impl* impl_;
    int port_;
};

// The raw baselines, without any database.
struct RawPublisher {
    // Publishes `n` 200-byte QoS 1 messages to `uri` with at most `window` unacknowledged;
    // returns messages per second. With `id_property` non-empty each message carries a user
    // property of that name with a 36-character id of its own, as MqttBroker sends a uid.
    static double drain(const std::string& uri, std::uint64_t n, std::size_t window,
                        const std::string& id_property = "");
    // Publishes one message every `interval` and waits for its PUBACK; returns the round trips
    // in milliseconds.
    static std::vector<double> round_trips(const std::string& uri, std::size_t n,
                                           std::chrono::milliseconds interval);
};

// The go-outbox way: select pending, publish and wait, update each row in its own statement.
// Returns messages per second. `synchronous` is applied to its connection.
double naive_drain(const std::string& db, const std::string& uri, std::uint64_t n,
                   const std::string& synchronous);

// outpost's dispatcher draining `n` pending records at `db`, with MqttOptions::id_property =
// `id_property` (empty: the same packets as the raw publisher); returns messages per second.
double outpost_drain(const std::string& db, const std::string& uri, std::uint64_t n,
                     std::size_t window, const std::string& synchronous,
                     const std::string& id_property);

}  // namespace outpost::bench
