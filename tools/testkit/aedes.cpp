#include "aedes.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "mosquitto.hpp"  // free_loopback_port, spawn_child, loopback_accepts

// Set by tools/testkit/meson.build when it found node and aedes; empty otherwise.
#ifndef OUTPOST_TESTKIT_NODE
#define OUTPOST_TESTKIT_NODE ""
#endif
#ifndef OUTPOST_TESTKIT_AEDES_DIR
#define OUTPOST_TESTKIT_AEDES_DIR ""
#endif
#ifndef OUTPOST_TESTKIT_AEDES_VERSION
#define OUTPOST_TESTKIT_AEDES_VERSION ""
#endif
#ifndef OUTPOST_TESTKIT_AEDES_SCRIPT
#define OUTPOST_TESTKIT_AEDES_SCRIPT ""
#endif

namespace outpost::testing {

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

}  // namespace

bool Aedes::available() {
    return std::string(OUTPOST_TESTKIT_NODE).size() > 0 &&
           std::string(OUTPOST_TESTKIT_AEDES_DIR).size() > 0;
}

std::string Aedes::version() {
    return OUTPOST_TESTKIT_AEDES_VERSION;
}

Aedes::Aedes(AedesOptions options) : options_(std::move(options)) {
    if (!available()) {
        throw std::runtime_error(
            "aedes is not available: meson found no node >= 20 or no aedes (tools/install-deps.sh "
            "installs it)");
    }
    port_ = free_loopback_port();
    start();
}

Aedes::~Aedes() {
    kill();
}

std::string Aedes::uri() const {
    return "tcp://127.0.0.1:" + std::to_string(port_);
}

void Aedes::start() {
    if (pid_ > 0) {
        throw std::runtime_error("aedes already running");
    }
    std::vector<std::string> argv = {OUTPOST_TESTKIT_NODE, OUTPOST_TESTKIT_AEDES_SCRIPT,
                                     OUTPOST_TESTKIT_AEDES_DIR, std::to_string(port_)};
    for (const auto& filter : options_.deny_publish) {
        argv.insert(argv.end(), {"--deny", filter});
    }
    pid_ = spawn_child(argv, dir_.file("aedes.log"), true);
    // Node starts in well under a second; 20 s for a loaded CI machine.
    const auto deadline = steady::now() + 20s;
    while (steady::now() < deadline) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            throw std::runtime_error("aedes exited at start:\n" + log());
        }
        // The ready line too: the kernel accepts on the listening socket before node has run
        // the listen callback that prints it.
        if (loopback_accepts(port_) &&
            log_contains(" ready on 127.0.0.1:" + std::to_string(port_))) {
            return;
        }
        std::this_thread::sleep_for(10ms);  // polling a port: there is nothing to wait on
    }
    kill();
    throw std::runtime_error("aedes did not accept connections within 20 s:\n" + log());
}

void Aedes::stop() {
    stop_child(pid_, 5s);
}

void Aedes::kill() {
    kill_child(pid_);
}

std::string Aedes::log() const {
    std::ifstream in(dir_.file("aedes.log"));
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

}  // namespace outpost::testing
