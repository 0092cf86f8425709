// A delay proxy: this kernel has no netem, so latency is added in user space. Each direction of
// each connection has a reader that timestamps chunks and a writer that sends each chunk once
// its time has come; TCP_NODELAY on both sides so nothing else holds data back.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "bench.hpp"

namespace outpost::bench {

namespace {

struct Pipe {
    std::mutex m;
    std::condition_variable cv;
    std::deque<std::pair<Clock::time_point, std::string>> chunks;
    bool closed = false;
};

void nodelay(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Copies from `from` to `to`, each chunk `delay` late. Returns when either side closes.
void relay(int from, int to, std::chrono::milliseconds delay, const std::atomic<bool>& stop) {
    auto pipe = std::make_shared<Pipe>();
    std::thread writer([pipe, to] {
        while (true) {
            std::unique_lock lock(pipe->m);
            pipe->cv.wait(lock, [&] { return pipe->closed || !pipe->chunks.empty(); });
            if (pipe->chunks.empty()) {
                break;
            }
            auto [due, data] = std::move(pipe->chunks.front());
            pipe->chunks.pop_front();
            lock.unlock();
            std::this_thread::sleep_until(due);
            for (std::size_t off = 0; off < data.size();) {
                const ssize_t n = ::send(to, data.data() + off, data.size() - off, MSG_NOSIGNAL);
                if (n <= 0) {
                    return;
                }
                off += static_cast<std::size_t>(n);
            }
        }
        ::shutdown(to, SHUT_WR);
    });
    char buf[65536];
    while (!stop) {
        pollfd p{from, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) {
            continue;
        }
        const ssize_t n = ::recv(from, buf, sizeof buf, 0);
        if (n <= 0) {
            break;
        }
        std::lock_guard lock(pipe->m);
        pipe->chunks.emplace_back(Clock::now() + delay,
                                  std::string(buf, static_cast<std::size_t>(n)));
        pipe->cv.notify_one();
    }
    {
        std::lock_guard lock(pipe->m);
        pipe->closed = true;
    }
    pipe->cv.notify_one();
    writer.join();
}

}  // namespace

struct DelayProxy::Impl {
    int listener = -1;
    std::atomic<bool> stop{false};
    std::thread acceptor;
    std::mutex m;
    std::vector<std::thread> relays;
    std::vector<int> fds;
};

DelayProxy::DelayProxy(int target_port, std::chrono::milliseconds one_way) : impl_(new Impl) {
    impl_->listener = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (::bind(impl_->listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(impl_->listener, 16) != 0 ||
        ::getsockname(impl_->listener, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        throw std::runtime_error("delay proxy: cannot listen on 127.0.0.1");
    }
    port_ = ntohs(a.sin_port);
    Impl* impl = impl_;
    impl_->acceptor = std::thread([impl, target_port, one_way] {
        while (!impl->stop) {
            pollfd p{impl->listener, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) {
                continue;
            }
            const int client = ::accept(impl->listener, nullptr, nullptr);
            if (client < 0) {
                continue;
            }
            const int upstream = ::socket(AF_INET, SOCK_STREAM, 0);
            sockaddr_in t{};
            t.sin_family = AF_INET;
            t.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            t.sin_port = htons(static_cast<std::uint16_t>(target_port));
            if (::connect(upstream, reinterpret_cast<sockaddr*>(&t), sizeof t) != 0) {
                ::close(client);
                ::close(upstream);
                continue;
            }
            nodelay(client);
            nodelay(upstream);
            std::lock_guard lock(impl->m);
            impl->fds.push_back(client);
            impl->fds.push_back(upstream);
            impl->relays.emplace_back([impl, client, upstream, one_way] {
                relay(client, upstream, one_way, impl->stop);
            });
            impl->relays.emplace_back([impl, client, upstream, one_way] {
                relay(upstream, client, one_way, impl->stop);
            });
        }
    });
}

DelayProxy::~DelayProxy() {
    impl_->stop = true;
    impl_->acceptor.join();
    for (int fd : impl_->fds) {
        ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : impl_->relays) {
        t.join();
    }
    for (int fd : impl_->fds) {
        ::close(fd);
    }
    ::close(impl_->listener);
    delete impl_;
}

}  // namespace outpost::bench
