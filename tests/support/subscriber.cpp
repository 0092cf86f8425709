#include "subscriber.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace outpost::testing {

namespace {

std::atomic<int> g_next_id{0};

// Splits on '\t', keeping empty fields.
std::vector<std::string> split_tabs(const std::string& line) {
    std::vector<std::string> out;
    std::size_t start = 0;
    for (;;) {
        const auto tab = line.find('\t', start);
        out.push_back(
            line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
        if (tab == std::string::npos) {
            return out;
        }
        start = tab + 1;
    }
}

std::string from_hex(const std::string& hex) {
    std::string out;
    out.reserve(hex.size() / 2);
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
        out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    }
    return out;
}

// "tcp://127.0.0.1:1234" -> {"127.0.0.1", "1234"}
std::pair<std::string, std::string> host_port(const std::string& uri) {
    const auto scheme = uri.find("://");
    const std::string rest = scheme == std::string::npos ? uri : uri.substr(scheme + 3);
    const auto colon = rest.rfind(':');
    if (colon == std::string::npos) {
        throw std::runtime_error("subscriber: no port in " + uri);
    }
    return {rest.substr(0, colon), rest.substr(colon + 1)};
}

}  // namespace

std::optional<std::string> Received::property(const std::string& name) const {
    for (const auto& [k, v] : user_properties) {
        if (k == name) {
            return v;
        }
    }
    return std::nullopt;
}

Subscriber::Subscriber(std::string uri, std::string filter, int qos, int mqtt_version,
                       std::string ca_file)
    : uri_(std::move(uri)),
      filter_(std::move(filter)),
      qos_(qos),
      version_(mqtt_version),
      ca_file_(std::move(ca_file)),
      client_id_("outpost-test-sub-" + std::to_string(::getpid()) + "-" +
                 std::to_string(g_next_id++)) {
    if (!start_once(std::chrono::seconds(10))) {
        std::lock_guard lock(mutex_);
        throw std::runtime_error("subscriber could not subscribe to " + uri_ + ": " + diagnostics_);
    }
}

Subscriber::~Subscriber() {
    stop_process();
}

bool Subscriber::start_once(std::chrono::milliseconds timeout) {
    const auto [host, port] = host_port(uri_);
    // Each message on one line: a marker, then tab-separated fields; the payload in hex so any
    // byte survives. Debug output (-d) tells when the subscription is acknowledged. stdbuf:
    // mosquitto_sub flushes after a message but not after "Subscribed" when writing to a pipe.
    std::vector<std::string> argv = {"stdbuf",
                                     "-oL",
                                     "mosquitto_sub",
                                     "-h",
                                     host,
                                     "-p",
                                     port,
                                     "-i",
                                     client_id_,
                                     "-q",
                                     std::to_string(qos_),
                                     "-t",
                                     filter_,
                                     "-V",
                                     version_ >= 5 ? "5" : "311",
                                     "-d",
                                     "-F",
                                     "MSG\t%t\t%q\t%r\t%C\t%E\t%x\t%P"};
    if (uri_.starts_with("ssl://") || uri_.starts_with("mqtts://")) {
        argv.insert(argv.end(), {"--cafile", ca_file_, "--insecure"});
    }
    std::vector<char*> args;
    for (auto& a : argv) {
        args.push_back(a.data());
    }
    args.push_back(nullptr);

    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        throw std::runtime_error("pipe failed");
    }
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
        throw std::runtime_error("fork failed");
    }
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) {
            ::_exit(126);
        }
        ::dup2(fds[1], 1);
        ::dup2(fds[1], 2);
        ::execvp(args[0], args.data());
        ::_exit(127);
    }
    ::close(fds[1]);
    int generation = 0;
    {
        std::lock_guard lock(mutex_);
        generation = ++generation_;
        subscribed_ = false;
        exited_ = false;
        pid_ = pid;
    }
    reader_ = std::thread([this, fd = fds[0], generation] { read_loop(fd, generation); });

    std::unique_lock lock(mutex_);
    const bool ok = cv_.wait_for(lock, timeout, [&] { return subscribed_ || exited_; });
    if (ok && subscribed_) {
        return true;
    }
    lock.unlock();
    stop_process();
    return false;
}

void Subscriber::stop_process() {
    int pid = -1;
    {
        std::lock_guard lock(mutex_);
        pid = pid_;
        pid_ = -1;
    }
    if (pid > 0) {
        ::kill(pid, SIGKILL);
        int status = 0;
        ::waitpid(pid, &status, 0);
    }
    if (reader_.joinable()) {
        reader_.join();  // the pipe reaches EOF once the process is gone
    }
}

void Subscriber::read_loop(int fd, int generation) {
    std::string buffer;
    char chunk[65536];
    for (;;) {
        const ssize_t n = ::read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        buffer.append(chunk, static_cast<std::size_t>(n));
        std::size_t start = 0;
        for (;;) {
            const auto nl = buffer.find('\n', start);
            if (nl == std::string::npos) {
                break;
            }
            handle_line(buffer.substr(start, nl - start), generation);
            start = nl + 1;
        }
        buffer.erase(0, start);
    }
    ::close(fd);
    {
        std::lock_guard lock(mutex_);
        if (generation == generation_) {
            exited_ = true;
        }
    }
    cv_.notify_all();
}

void Subscriber::handle_line(const std::string& line, int generation) {
    if (!line.starts_with("MSG\t")) {
        std::lock_guard lock(mutex_);
        if (generation == generation_ && line.starts_with("Subscribed")) {
            subscribed_ = true;
        }
        if (!line.starts_with("Client ")) {
            diagnostics_ = line;
        }
        cv_.notify_all();
        return;
    }
    const auto f = split_tabs(line);
    if (f.size() < 8) {
        return;
    }
    Received r;
    r.topic = f[1];
    r.qos = std::stoi(f[2]);
    r.retained = f[3] == "1";
    if (!f[4].empty()) {
        r.content_type = f[4];
    }
    if (!f[5].empty()) {
        r.expiry_interval = std::stoi(f[5]);
    }
    r.payload = from_hex(f[6]);
    std::size_t start = 0;
    const std::string& props = f[7];
    while (start < props.size()) {
        auto space = props.find(' ', start);
        if (space == std::string::npos) {
            space = props.size();
        }
        const std::string kv = props.substr(start, space - start);
        const auto colon = kv.find(':');
        if (colon != std::string::npos) {
            r.user_properties.emplace_back(kv.substr(0, colon), kv.substr(colon + 1));
        }
        start = space + 1;
    }
    {
        std::lock_guard lock(mutex_);
        if (auto id = r.property("outpost-id")) {
            ++seen_[*id];
        }
        received_.push_back(std::move(r));
    }
    cv_.notify_all();
}

void Subscriber::reconnect(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    stop_process();
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (start_once(std::max(left, std::chrono::milliseconds(100)))) {
            return;
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            std::lock_guard lock(mutex_);
            throw std::runtime_error("subscriber reconnect to " + uri_ +
                                     " failed: " + diagnostics_);
        }
        // mosquitto_sub exited at once (connection refused): the broker is not listening yet,
        // and a closed port has nothing to wait on.
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

bool Subscriber::wait_for_count(std::size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return received_.size() >= n; });
}

bool Subscriber::wait_for_distinct(const std::string& name, std::size_t n,
                                   std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    if (name == "outpost-id") {
        return cv_.wait_for(lock, timeout, [&] { return seen_.size() >= n; });
    }
    return cv_.wait_for(lock, timeout, [&] {
        std::map<std::string, int> distinct;
        for (const auto& r : received_) {
            if (auto v = r.property(name)) {
                distinct[*v] = 1;
            }
        }
        return distinct.size() >= n;
    });
}

std::size_t Subscriber::count() const {
    std::lock_guard lock(mutex_);
    return received_.size();
}

std::vector<Received> Subscriber::messages() const {
    std::lock_guard lock(mutex_);
    return received_;
}

std::map<std::string, std::size_t> Subscriber::tally(const std::string& name) const {
    std::lock_guard lock(mutex_);
    if (name == "outpost-id") {
        return seen_;
    }
    std::map<std::string, std::size_t> out;
    for (const auto& r : received_) {
        if (auto v = r.property(name)) {
            ++out[*v];
        }
    }
    return out;
}

}  // namespace outpost::testing
