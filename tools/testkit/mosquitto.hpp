// Testkit (tests and outpost-bench): a real mosquitto broker per test or run, on a free loopback
// port, in its own temp dir.
//
// Never a fixed port, never a non-loopback address (also_listen_on: only inside a network
// namespace of the test's own). The broker is a child process of the test
// (it dies with the test process, PR_SET_PDEATHSIG), started from a generated configuration;
// start() returns once it accepts TCP connections. restart() keeps the port, so clients
// configured with uri() find it again.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "temp_dir.hpp"

namespace outpost::testing {

struct MosquittoOptions {
    // `persistence true` with the database in the broker's temp dir. Default false.
    bool persistence = false;
    // ACL file contents (mosquitto acl_file syntax). Default empty = no ACL.
    std::string acl;
    // user -> password; written with mosquitto_passwd. When not empty, anonymous clients are
    // refused. Default none.
    std::vector<std::pair<std::string, std::string>> users;
    // TLS listener instead of the plain one: PEM files for the server. Default empty = plain.
    std::string tls_ca_file;
    std::string tls_cert_file;
    std::string tls_key_file;
    // More configuration lines, appended as they are.
    std::string extra_config;
    // More addresses the listener binds, on the same port (e.g. a veth address inside a
    // network namespace the test made; only addresses of the test's own). Default none.
    std::vector<std::string> also_listen_on;
};

class Mosquitto {
  public:
    static constexpr const char* kBinary = "/usr/sbin/mosquitto";

    // Picks a free port and starts the broker. Throws std::runtime_error (with the broker's log)
    // if it does not accept connections within 10 s.
    explicit Mosquitto(MosquittoOptions options = {});
    ~Mosquitto();  // SIGKILL
    Mosquitto(const Mosquitto&) = delete;
    Mosquitto& operator=(const Mosquitto&) = delete;

    int port() const { return port_; }
    // "tcp://127.0.0.1:PORT" (or ssl:// for a TLS listener).
    std::string uri() const;
    const std::filesystem::path& dir() const { return dir_.path(); }
    bool running() const { return pid_ > 0; }
    pid_t pid() const { return pid_; }

    // Starts it (again) on the same port; returns once it accepts connections.
    void start();
    // SIGTERM, then waits for the exit (SIGKILL after 5 s).
    void stop();
    // SIGKILL, then waits for the exit: no goodbye to clients, no persistence save.
    void kill();
    // stop() then start(): same port, same configuration.
    void restart();

    // The broker's log so far (all runs).
    std::string log() const;

    // True when the broker's log mentions `text` (e.g. "denied PUBLISH").
    bool log_contains(const std::string& text) const {
        return log().find(text) != std::string::npos;
    }

  private:
    void write_config() const;

    MosquittoOptions options_;
    TempDir dir_;
    int port_ = 0;
    pid_t pid_ = -1;
};

// Returns a TCP port on 127.0.0.1 that was free a moment ago (bound with port 0, then closed).
int free_loopback_port();

// True when something accepts a TCP connection on 127.0.0.1:port now.
bool loopback_accepts(int port);

// Starts argv (argv[0] looked up in PATH) as a child process, stdout and stderr appended to
// `log_file`; with `die_with_parent` it gets SIGKILL when the test process dies
// (PR_SET_PDEATHSIG). Only async-signal-safe calls between fork and exec: the test process has
// paho threads running. Throws std::runtime_error when fork fails.
pid_t spawn_child(const std::vector<std::string>& argv, const std::string& log_file,
                  bool die_with_parent);

// SIGTERM to the child `pid`, then waits up to `grace` for its exit (SIGKILL after); sets `pid`
// to -1. Nothing when `pid` <= 0.
void stop_child(pid_t& pid, std::chrono::milliseconds grace);
// SIGKILL to the child `pid`, then waits for its exit; sets `pid` to -1. Nothing when `pid` <= 0.
void kill_child(pid_t& pid);

// Runs a command (argv[0] is looked up in PATH), output appended to `log_file`. Throws
// std::runtime_error naming the command when it does not exit with status 0.
void run_command(const std::vector<std::string>& argv, const std::string& log_file);

// A throwaway PKI made with the openssl command in `dir`: a CA, a server certificate for
// 127.0.0.1/localhost signed by it, and an unrelated second CA (to be refused).
struct TestPki {
    std::string ca_file;      // the CA that signed the server certificate
    std::string server_cert;  // CN=127.0.0.1, SAN IP:127.0.0.1, DNS:localhost
    std::string server_key;
    std::string other_ca_file;  // a CA that signed nothing here
};
TestPki make_test_pki(const std::filesystem::path& dir);

}  // namespace outpost::testing
