// Test support: an MQTT subscriber that collects what arrives, with the MQTT 5 properties the
// tests check. Judges "received by a subscriber", the third done point.
//
// It is a `mosquitto_sub` child process, not a paho client in the test process: with paho-c
// 1.3.12 a second client in the same process makes every connect take 1-2 s (its network thread
// polls existing sockets for 1 s before it looks at a new one), which would distort the timing of
// the MqttBroker under test. Limitation of mosquitto_sub's output: user property values must not
// contain spaces, keys must not contain ':' (the tests' properties do neither).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace outpost::testing {

struct Received {
    std::string topic;
    std::string payload;
    int qos = 0;
    bool retained = false;
    std::vector<std::pair<std::string, std::string>> user_properties;  // in order
    std::optional<std::string> content_type;
    std::optional<int> expiry_interval;  // MQTT 5 message expiry, seconds (as forwarded)

    // The value of the first user property named `name`, if any.
    std::optional<std::string> property(const std::string& name) const;
};

class Subscriber {
  public:
    // Connects to `uri` (tcp://127.0.0.1:PORT or ssl://..., MQTT 5 unless `mqtt_version` says
    // 4) and subscribes to `filter` at `qos`; returns once the subscription is acknowledged.
    // For ssl:// it trusts `ca_file` without checking the host name. Throws std::runtime_error.
    Subscriber(std::string uri, std::string filter, int qos = 1, int mqtt_version = 5,
               std::string ca_file = {});
    ~Subscriber();  // SIGKILLs the mosquitto_sub process
    Subscriber(const Subscriber&) = delete;
    Subscriber& operator=(const Subscriber&) = delete;

    // Stops the current mosquitto_sub and starts a new one (after a broker restart); returns
    // once it is subscribed. Messages received so far are kept. Retries until `timeout`; throws
    // std::runtime_error after.
    void reconnect(std::chrono::milliseconds timeout = std::chrono::seconds(10));

    // Waits until at least `n` messages arrived in total; false on timeout.
    bool wait_for_count(std::size_t n, std::chrono::milliseconds timeout);
    // Waits until at least `n` distinct values of user property `name` arrived; false on timeout.
    bool wait_for_distinct(const std::string& name, std::size_t n,
                           std::chrono::milliseconds timeout);

    std::size_t count() const;
    std::vector<Received> messages() const;
    // How many times each value of user property `name` arrived.
    std::map<std::string, std::size_t> tally(const std::string& name) const;

  private:
    // Starts mosquitto_sub; true once it printed that it subscribed, false if it exited first or
    // `timeout` passed (then it is killed).
    bool start_once(std::chrono::milliseconds timeout);
    void stop_process();
    void read_loop(int fd, int generation);
    void handle_line(const std::string& line, int generation);

    std::string uri_;
    std::string filter_;
    int qos_;
    int version_;
    std::string ca_file_;
    std::string client_id_;

    int pid_ = -1;
    std::thread reader_;

    mutable std::mutex mutex_;
    std::condition_variable cv_;
    int generation_ = 0;       // which process the reader serves
    bool subscribed_ = false;  // the current process printed its SUBACK
    bool exited_ = false;      // the current process's output ended
    std::string diagnostics_;  // its last lines that were not messages
    std::vector<Received> received_;
    std::map<std::string, std::size_t> seen_;  // outpost-id -> arrivals
};

}  // namespace outpost::testing
