#include "mqtt_proxy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace outpost::testing {

namespace {

sockaddr_in loopback(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

// Listens on 127.0.0.1:port (0 = any free one). SO_REUSEADDR: accept() binds the same port again
// while closed connections of it may still be in TIME_WAIT.
int listen_on(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw std::runtime_error("proxy: socket failed");
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr = loopback(port);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 64) != 0) {
        const std::string why = std::strerror(errno);
        ::close(fd);
        throw std::runtime_error("proxy: cannot listen on 127.0.0.1:" + std::to_string(port) +
                                 ": " + why);
    }
    return fd;
}

void nodelay(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void wake(int efd) {
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(efd, &one, sizeof one);
}

void drain(int efd) {
    std::uint64_t v = 0;
    [[maybe_unused]] const ssize_t n = ::read(efd, &v, sizeof v);
}

bool send_all(int fd, const std::string& data) {
    for (std::size_t off = 0; off < data.size();) {
        const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        off += static_cast<std::size_t>(n);
    }
    return true;
}

// Length of the fixed header and the remaining length of the packet at the start of `buf`;
// nullopt when it is not complete yet. Throws on a remaining length longer than 4 bytes.
std::optional<std::pair<std::size_t, std::size_t>> frame(const std::string& buf) {
    std::size_t remaining = 0;
    std::size_t multiplier = 1;
    for (std::size_t i = 1; i < 5; ++i) {
        if (i >= buf.size()) {
            return std::nullopt;
        }
        const auto b = static_cast<unsigned char>(buf[i]);
        remaining += (b & 0x7Fu) * multiplier;
        multiplier *= 128;
        if ((b & 0x80u) == 0) {
            if (buf.size() < i + 1 + remaining) {
                return std::nullopt;
            }
            return std::make_pair(i + 1, remaining);
        }
    }
    throw std::runtime_error("malformed remaining length");
}

std::size_t header_length(const std::string& bytes) {
    std::size_t i = 1;
    while (i < bytes.size() && i < 5 && (static_cast<unsigned char>(bytes[i]) & 0x80u) != 0) {
        ++i;
    }
    return i + 1;
}

int u16(const std::string& s, std::size_t at) {
    return (static_cast<unsigned char>(s[at]) << 8) | static_cast<unsigned char>(s[at + 1]);
}

}  // namespace

std::string WirePacket::body() const {
    const std::size_t h = header_length(bytes);
    return h <= bytes.size() ? bytes.substr(h) : std::string();
}

std::optional<std::string> WirePacket::topic() const {
    if (type != mqtt_packet::publish) {
        return std::nullopt;
    }
    const std::string b = body();
    if (b.size() < 2 || b.size() < 2 + static_cast<std::size_t>(u16(b, 0))) {
        return std::nullopt;
    }
    return b.substr(2, static_cast<std::size_t>(u16(b, 0)));
}

std::optional<int> WirePacket::packet_id() const {
    const std::string b = body();
    switch (type) {
        case mqtt_packet::publish: {
            if (qos() == 0 || b.size() < 2) {
                return std::nullopt;
            }
            const std::size_t at = 2 + static_cast<std::size_t>(u16(b, 0));
            if (b.size() < at + 2) {
                return std::nullopt;
            }
            return u16(b, at);
        }
        case mqtt_packet::puback:
        case mqtt_packet::pubrec:
        case mqtt_packet::pubrel:
        case mqtt_packet::pubcomp:
            if (b.size() < 2) {
                return std::nullopt;
            }
            return u16(b, 0);
        default:
            return std::nullopt;
    }
}

struct MqttProxy::Impl {
    struct Conn {
        int id = 0;
        std::array<int, 2> fds{-1, -1};  // [0] reads what goes to_broker (the client), [1] the
                                         // broker's socket
        int wake = -1;
        std::array<std::string, 2> in;
        std::array<std::deque<WirePacket>, 2> pending;
        bool cut = false;
    };

    int broker_port = 0;
    int port = 0;

    mutable std::mutex m;
    mutable std::condition_variable cv;
    bool stopping = false;
    bool want_listening = true;
    bool listening = false;
    int acceptor_wake = -1;
    std::thread acceptor;

    bool held_all = false;
    std::array<std::optional<int>, 2> hold_type;
    std::array<bool, 2> held_dir{false, false};

    int accepted = 0;
    long read_count = 0;
    std::list<std::shared_ptr<Conn>> conns;
    std::vector<std::thread> threads;
    std::array<std::vector<WirePacket>, 2> log;

    void accept_loop(int listener);
    void serve(std::shared_ptr<Conn> c);
    void wake_all() {
        for (const auto& c : conns) {
            wake(c->wake);
        }
    }
};

void MqttProxy::Impl::accept_loop(int listener) {
    for (;;) {
        {
            std::unique_lock lock(m);
            if (stopping) {
                break;
            }
            if (!want_listening && listener >= 0) {
                ::close(listener);
                listener = -1;
                listening = false;
                cv.notify_all();
            } else if (want_listening && listener < 0) {
                try {
                    listener = listen_on(port);
                } catch (const std::exception&) {
                    // the port is taken by now: accept() reports it
                    want_listening = false;
                }
                listening = listener >= 0;
                cv.notify_all();
            }
        }
        std::array<pollfd, 2> p{pollfd{acceptor_wake, POLLIN, 0}, pollfd{listener, POLLIN, 0}};
        if (::poll(p.data(), listener >= 0 ? 2 : 1, -1) < 0) {
            continue;
        }
        if ((p[0].revents & POLLIN) != 0) {
            drain(acceptor_wake);
        }
        if (listener < 0 || (p[1].revents & POLLIN) == 0) {
            continue;
        }
        const int client = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) {
            continue;
        }
        const int upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in target = loopback(broker_port);
        if (upstream < 0 ||
            ::connect(upstream, reinterpret_cast<sockaddr*>(&target), sizeof target) != 0) {
            // The broker is not there: so is the proxy's far end, the client sees it at once.
            ::close(client);
            if (upstream >= 0) {
                ::close(upstream);
            }
            continue;
        }
        nodelay(client);
        nodelay(upstream);
        auto c = std::make_shared<Conn>();
        c->fds = {client, upstream};
        c->wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        std::lock_guard lock(m);
        c->id = ++accepted;
        conns.push_back(c);
        threads.emplace_back([this, c] { serve(c); });
    }
    if (listener >= 0) {
        ::close(listener);
    }
}

void MqttProxy::Impl::serve(std::shared_ptr<Conn> c) {
    char buf[65536];
    bool open = true;
    while (open) {
        std::array<pollfd, 3> p{pollfd{c->fds[0], POLLIN, 0}, pollfd{c->fds[1], POLLIN, 0},
                                pollfd{c->wake, POLLIN, 0}};
        if (::poll(p.data(), p.size(), -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if ((p[2].revents & POLLIN) != 0) {
            drain(c->wake);
        }
        for (int d = 0; d < 2 && open; ++d) {
            if ((p[d].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
                continue;
            }
            const ssize_t n = ::recv(c->fds[d], buf, sizeof buf, 0);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                open = false;
                break;
            }
            c->in[d].append(buf, static_cast<std::size_t>(n));
            try {
                while (auto f = frame(c->in[d])) {
                    const std::size_t len = f->first + f->second;
                    WirePacket pkt;
                    pkt.connection = c->id;
                    pkt.type = (static_cast<unsigned char>(c->in[d][0]) >> 4) & 0x0F;
                    pkt.flags = static_cast<unsigned char>(c->in[d][0]) & 0x0F;
                    pkt.bytes = c->in[d].substr(0, len);
                    c->in[d].erase(0, len);
                    std::lock_guard lock(m);
                    pkt.seq = ++read_count;
                    log[d].push_back(pkt);
                    c->pending[d].push_back(std::move(pkt));
                    cv.notify_all();
                }
            } catch (const std::exception&) {
                open = false;  // not MQTT: this proxy cannot carry it
            }
        }
        // Forward what may go, packet by packet, in order.
        for (int d = 0; d < 2 && open; ++d) {
            const int to = c->fds[1 - d];
            for (;;) {
                std::string out;
                {
                    std::lock_guard lock(m);
                    if (c->cut || c->pending[d].empty() || held_all || held_dir[d]) {
                        break;
                    }
                    if (hold_type[d] && *hold_type[d] == c->pending[d].front().type) {
                        hold_type[d].reset();
                        held_dir[d] = true;
                        break;
                    }
                    out = std::move(c->pending[d].front().bytes);
                    c->pending[d].pop_front();
                }
                if (!send_all(to, out)) {
                    open = false;
                    break;
                }
            }
        }
        std::lock_guard lock(m);
        if (c->cut) {
            open = false;
        }
    }
    std::lock_guard lock(m);
    for (int fd : c->fds) {
        ::shutdown(fd, SHUT_RDWR);
        ::close(fd);
    }
    ::close(c->wake);
    conns.remove(c);
    cv.notify_all();
}

MqttProxy::MqttProxy(int broker_port) : impl_(std::make_unique<Impl>()) {
    impl_->broker_port = broker_port;
    const int listener = listen_on(0);
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
    impl_->port = ntohs(addr.sin_port);
    impl_->listening = true;
    impl_->acceptor_wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    Impl* impl = impl_.get();
    impl_->acceptor = std::thread([impl, listener] { impl->accept_loop(listener); });
}

MqttProxy::~MqttProxy() {
    {
        std::lock_guard lock(impl_->m);
        impl_->stopping = true;
    }
    wake(impl_->acceptor_wake);
    impl_->acceptor.join();
    cut();
    std::vector<std::thread> threads;
    {
        std::lock_guard lock(impl_->m);
        threads.swap(impl_->threads);
    }
    for (auto& t : threads) {
        t.join();
    }
    ::close(impl_->acceptor_wake);
}

int MqttProxy::port() const {
    return impl_->port;
}

std::string MqttProxy::uri() const {
    return "tcp://127.0.0.1:" + std::to_string(impl_->port);
}

void MqttProxy::refuse() {
    std::unique_lock lock(impl_->m);
    impl_->want_listening = false;
    wake(impl_->acceptor_wake);
    impl_->cv.wait(lock, [&] { return !impl_->listening; });
}

void MqttProxy::accept() {
    std::unique_lock lock(impl_->m);
    impl_->want_listening = true;
    wake(impl_->acceptor_wake);
    impl_->cv.wait(lock, [&] { return impl_->listening || !impl_->want_listening; });
    if (!impl_->listening) {
        throw std::runtime_error("proxy: port " + std::to_string(impl_->port) +
                                 " was taken while it refused connections");
    }
}

void MqttProxy::hold() {
    std::lock_guard lock(impl_->m);
    impl_->held_all = true;
}

void MqttProxy::hold_at(Direction direction, int type) {
    std::lock_guard lock(impl_->m);
    impl_->hold_type[static_cast<int>(direction)] = type;
}

void MqttProxy::release() {
    std::lock_guard lock(impl_->m);
    impl_->held_all = false;
    impl_->held_dir = {false, false};
    impl_->hold_type = {std::nullopt, std::nullopt};
    impl_->wake_all();
}

void MqttProxy::cut() {
    std::unique_lock lock(impl_->m);
    for (const auto& c : impl_->conns) {
        c->cut = true;
        for (int fd : c->fds) {
            ::shutdown(fd, SHUT_RDWR);
        }
        wake(c->wake);
    }
    impl_->cv.wait(lock, [&] { return impl_->conns.empty(); });
}

std::vector<WirePacket> MqttProxy::packets(Direction direction) const {
    std::lock_guard lock(impl_->m);
    return impl_->log[static_cast<int>(direction)];
}

bool MqttProxy::wait_for(Direction direction, int type, std::size_t count,
                         std::chrono::milliseconds timeout) const {
    std::unique_lock lock(impl_->m);
    return impl_->cv.wait_for(lock, timeout, [&] {
        std::size_t n = 0;
        for (const auto& p : impl_->log[static_cast<int>(direction)]) {
            n += p.type == type ? 1 : 0;
        }
        return n >= count;
    });
}

int MqttProxy::connections() const {
    std::lock_guard lock(impl_->m);
    return impl_->accepted;
}

}  // namespace outpost::testing
