#include "mosquitto.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace outpost::testing {

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

sockaddr_in loopback(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

}  // namespace

bool loopback_accepts(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    sockaddr_in addr = loopback(port);
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
}

// fork + exec with stdout/stderr appended to `log_file`. Only async-signal-safe calls happen in
// the child: the test process has paho threads running.
pid_t spawn_child(const std::vector<std::string>& argv, const std::string& log_file,
                  bool die_with_parent) {
    std::vector<char*> args;
    for (const auto& a : argv) {
        args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
        throw std::runtime_error(std::string("fork failed: ") + std::strerror(errno));
    }
    if (pid == 0) {
        if (die_with_parent) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) {
                ::_exit(126);
            }
        }
        const int fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            ::close(fd);
        }
        ::execvp(args[0], args.data());
        ::_exit(127);
    }
    return pid;
}

int free_loopback_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw std::runtime_error("socket failed");
    }
    sockaddr_in addr = loopback(0);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        throw std::runtime_error(std::string("bind 127.0.0.1:0 failed: ") + std::strerror(errno));
    }
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    return ntohs(addr.sin_port);
}

void run_command(const std::vector<std::string>& argv, const std::string& log_file) {
    const pid_t pid = spawn_child(argv, log_file, true);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::string cmd;
        for (const auto& a : argv) {
            cmd += (cmd.empty() ? "" : " ") + a;
        }
        throw std::runtime_error("command failed: " + cmd + "\n" + read_file(log_file));
    }
}

TestPki make_test_pki(const std::filesystem::path& dir) {
    const std::string d = dir.string() + "/";
    const std::string log = d + "openssl.log";
    TestPki pki{d + "ca.crt", d + "server.crt", d + "server.key", d + "other-ca.crt"};
    {
        std::ofstream ext(d + "server.ext");
        ext << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    }
    run_command({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                 d + "ca.key", "-out", pki.ca_file, "-days", "2", "-subj", "/CN=outpost test CA"},
                log);
    run_command({"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", pki.server_key,
                 "-out", d + "server.csr", "-subj", "/CN=127.0.0.1"},
                log);
    run_command({"openssl", "x509", "-req", "-in", d + "server.csr", "-CA", pki.ca_file, "-CAkey",
                 d + "ca.key", "-CAcreateserial", "-out", pki.server_cert, "-days", "2", "-extfile",
                 d + "server.ext"},
                log);
    run_command(
        {"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d + "other-ca.key",
         "-out", pki.other_ca_file, "-days", "2", "-subj", "/CN=outpost unrelated CA"},
        log);
    return pki;
}

Mosquitto::Mosquitto(MosquittoOptions options) : options_(std::move(options)) {
    port_ = free_loopback_port();
    if (!options_.users.empty()) {
        const std::string pw = dir_.file("passwd");
        std::ofstream(pw).close();
        for (const auto& [user, password] : options_.users) {
            run_command({"mosquitto_passwd", "-b", pw, user, password}, dir_.file("passwd.log"));
        }
    }
    if (!options_.acl.empty()) {
        std::ofstream(dir_.file("acl")) << options_.acl;
    }
    write_config();
    start();
}

Mosquitto::~Mosquitto() {
    kill_child(pid_);
}

std::string Mosquitto::uri() const {
    const bool tls = !options_.tls_cert_file.empty();
    return std::string(tls ? "ssl" : "tcp") + "://127.0.0.1:" + std::to_string(port_);
}

void Mosquitto::write_config() const {
    std::ofstream conf(dir_.file("mosquitto.conf"));
    // Started as root, mosquitto 2 switches to user `mosquitto`, which cannot read this 0700
    // temp dir: stay root then.
    if (::geteuid() == 0) {
        conf << "user root\n";
    }
    conf << "log_dest stderr\n"
         << "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
         << "connection_messages true\n"
         << "set_tcp_nodelay true\n"
         // Test subscribers must not lose messages to the default queue cap of 1,000 (and "0 =
         // unlimited" makes mosquitto 2.0.11 drop the connection of a denied QoS 2 publisher).
         << "max_queued_messages 10000000\n";
    if (options_.persistence) {
        conf << "persistence true\npersistence_location " << dir_.path().string() << "/\n";
    } else {
        conf << "persistence false\n";
    }
    conf << "listener " << port_ << " 127.0.0.1\n";
    if (!options_.tls_cert_file.empty()) {
        conf << "cafile " << options_.tls_ca_file << "\n"
             << "certfile " << options_.tls_cert_file << "\n"
             << "keyfile " << options_.tls_key_file << "\n";
    }
    // After the TLS lines, which belong to the listener above them: these stay plain.
    for (const auto& address : options_.also_listen_on) {
        conf << "listener " << port_ << " " << address << "\n";
    }
    if (options_.users.empty()) {
        conf << "allow_anonymous true\n";
    } else {
        conf << "allow_anonymous false\npassword_file " << dir_.file("passwd") << "\n";
    }
    if (!options_.acl.empty()) {
        conf << "acl_file " << dir_.file("acl") << "\n";
    }
    conf << options_.extra_config << "\n";
}

void Mosquitto::start() {
    if (pid_ > 0) {
        throw std::runtime_error("mosquitto already running");
    }
    pid_ =
        spawn_child({kBinary, "-c", dir_.file("mosquitto.conf")}, dir_.file("mosquitto.log"), true);
    const auto deadline = steady::now() + 10s;
    while (steady::now() < deadline) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            throw std::runtime_error("mosquitto exited at start:\n" + log());
        }
        if (loopback_accepts(port_)) {
            return;
        }
        std::this_thread::sleep_for(10ms);  // polling a port: there is nothing to wait on
    }
    kill();
    throw std::runtime_error("mosquitto did not accept connections within 10 s:\n" + log());
}

void Mosquitto::stop() {
    stop_child(pid_, 5s);
}

void Mosquitto::kill() {
    kill_child(pid_);
}

void stop_child(pid_t& pid, std::chrono::milliseconds grace) {
    if (pid <= 0) {
        return;
    }
    ::kill(pid, SIGTERM);
    const auto deadline = steady::now() + grace;
    int status = 0;
    while (steady::now() < deadline) {
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            pid = -1;
            return;
        }
        std::this_thread::sleep_for(5ms);  // waitpid has no timeout
    }
    kill_child(pid);
}

void kill_child(pid_t& pid) {
    if (pid <= 0) {
        return;
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid = -1;
}

void Mosquitto::restart() {
    stop();
    start();
}

std::string Mosquitto::log() const {
    return read_file(dir_.file("mosquitto.log"));
}

}  // namespace outpost::testing
