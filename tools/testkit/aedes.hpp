// Testkit: a real aedes broker (Node, MQTT 3.1/3.1.1 only) per test or suite, on a free loopback
// port, in its own temp dir; the same shape as mosquitto.hpp.
//
// The broker is tools/testkit/aedes-broker.mjs run by `node`, with aedes from the directory
// tools/install-deps.sh installs it into (`npm install --prefix /usr/local/lib/outpost-test-brokers
// aedes@1.2.0`; aedes 1.2.0 needs Node >= 20). meson finds both at configure time and compiles
// their paths in; available() says whether it did. A child process of the test (it dies with the
// test process, PR_SET_PDEATHSIG); start() returns once it accepts TCP connections and printed its
// ready line; start() after stop() or kill() uses the same port.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "temp_dir.hpp"

namespace outpost::testing {

struct AedesOptions {
    // Publishes to topics matching one of these MQTT filters are refused by the broker's
    // authorizePublish (what an ACL does in aedes: it closes the client's connection). Default
    // none.
    std::vector<std::string> deny_publish;
};

class Aedes {
  public:
    // True when meson found node and aedes (then the constructor can start one).
    static bool available();
    // The aedes version meson found ("1.2.0"), or empty.
    static std::string version();

    // Picks a free port and starts the broker. Throws std::runtime_error (with the broker's log)
    // when aedes is not available or it does not accept connections within 20 s.
    explicit Aedes(AedesOptions options = {});
    ~Aedes();  // SIGKILL
    Aedes(const Aedes&) = delete;
    Aedes& operator=(const Aedes&) = delete;

    int port() const { return port_; }
    // "tcp://127.0.0.1:PORT"
    std::string uri() const;
    const std::filesystem::path& dir() const { return dir_.path(); }
    bool running() const { return pid_ > 0; }
    pid_t pid() const { return pid_; }

    // Starts it (again) on the same port; returns once it accepts connections.
    void start();
    // SIGTERM (aedes closes its clients), then waits for the exit (SIGKILL after 5 s).
    void stop();
    // SIGKILL, then waits for the exit.
    void kill();
    void restart() {
        stop();
        start();
    }

    // The broker's output so far (all runs): the ready line and one line per client event (written
    // as node gets to it: a client can see its connection closed before the line is there).
    std::string log() const;
    bool log_contains(const std::string& text) const {
        return log().find(text) != std::string::npos;
    }

  private:
    AedesOptions options_;
    TempDir dir_;
    int port_ = 0;
    pid_t pid_ = -1;
};

}  // namespace outpost::testing
