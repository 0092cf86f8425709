// MqttBroker's protocol fallback (MqttVersion::v5_or_3_1_1) and the texts of a refused MQTT 5
// CONNECT, against a server that does not speak MQTT 5.
//
// The server is a real mosquitto behind a gate of the test's own: the gate reads each client's
// CONNECT, answers one with protocol level 5 the way a 3.1.1-only server does (the 3.1.1 return
// code 1, as aedes and RabbitMQ answer, or the MQTT 5 reason 0x84) and closes; a CONNECT of
// level 4 is passed to mosquitto and the bytes are spliced both ways. The gate logs the level of
// every CONNECT it saw, so the tests check what went over the wire, not what the broker says.
// What arrives is judged by a mosquitto_sub (MQTT 5) on mosquitto itself: on 3.1.1 the
// outpost-id property and the headers must be missing.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "completions.hpp"
#include "connection_log.hpp"
#include "mqtt_broker_helpers.hpp"
#include "outpost/error.hpp"
#include "outpost/mqtt_broker.hpp"
#include "subscriber.hpp"
#include "testkit/mosquitto.hpp"

namespace outpost {
namespace {

using namespace std::chrono_literals;
using testing::Completions;
using testing::ConnectionLog;
using testing::Mosquitto;
using testing::Subscriber;

// How the gate answers an MQTT 5 CONNECT.
enum class Refusal {
    return_code_1,  // 20 02 00 01: an MQTT 3.1.1 CONNACK, "unacceptable protocol version"
    reason_0x84,    // 20 03 00 84 00: an MQTT 5 CONNACK, "unsupported protocol version"
};

class ProtocolGate {
  public:
    ProtocolGate(int upstream_port, Refusal refusal)
        : upstream_port_(upstream_port), refusal_(refusal) {
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        if (listen_fd_ < 0 ||
            ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            ::listen(listen_fd_, 16) != 0) {
            throw std::runtime_error("gate: cannot listen on 127.0.0.1");
        }
        socklen_t len = sizeof addr;
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
        acceptor_ = std::thread([this] { accept_loop(); });
    }
    ~ProtocolGate() {
        stop_ = true;
        ::shutdown(listen_fd_, SHUT_RDWR);
        acceptor_.join();
        for (std::thread& t : pipes_) {
            t.join();
        }
        ::close(listen_fd_);
    }
    ProtocolGate(const ProtocolGate&) = delete;
    ProtocolGate& operator=(const ProtocolGate&) = delete;

    std::string uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
    // The protocol level of each CONNECT seen, in order (4 = 3.1.1, 5 = MQTT 5).
    std::vector<int> levels() const {
        std::lock_guard lock(mutex_);
        return levels_;
    }

  private:
    void accept_loop() {
        while (!stop_) {
            pollfd p{listen_fd_, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) {
                continue;
            }
            const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) {
                continue;
            }
            pipes_.emplace_back([this, fd] { serve(fd); });
        }
    }

    // Reads one whole CONNECT packet into `packet`; false when the client goes first.
    bool read_connect(int fd, std::string& packet) {
        auto need = [&](std::size_t n) {
            while (packet.size() < n) {
                pollfd p{fd, POLLIN, 0};
                if (stop_ || ::poll(&p, 1, 100) < 0) {
                    return false;
                }
                if ((p.revents & POLLIN) == 0) {
                    continue;
                }
                char buf[4096];
                const ssize_t got = ::read(fd, buf, sizeof buf);
                if (got <= 0) {
                    return false;
                }
                packet.append(buf, static_cast<std::size_t>(got));
            }
            return true;
        };
        // Fixed header: type byte, then the remaining length (1-4 bytes, 7 bits each).
        std::size_t remaining = 0;
        std::size_t at = 1;
        for (int shift = 0;; shift += 7, ++at) {
            if (!need(at + 1) || shift > 21) {
                return false;
            }
            const auto b = static_cast<unsigned char>(packet[at]);
            remaining |= static_cast<std::size_t>(b & 0x7F) << shift;
            if ((b & 0x80) == 0) {
                break;
            }
        }
        return need(at + 1 + remaining);
    }

    void serve(int client) {
        std::string packet;
        if (!read_connect(client, packet) || static_cast<unsigned char>(packet[0]) != 0x10) {
            ::close(client);
            return;
        }
        // After the fixed header: protocol name (2-byte length + "MQTT"), then the level.
        std::size_t at = 1;
        while (static_cast<unsigned char>(packet[at]) & 0x80) {
            ++at;
        }
        const std::size_t level_at = at + 1 + 2 + 4;
        const int level =
            level_at < packet.size() ? static_cast<unsigned char>(packet[level_at]) : -1;
        {
            std::lock_guard lock(mutex_);
            levels_.push_back(level);
        }
        if (level != 4) {
            const std::string connack = refusal_ == Refusal::return_code_1
                                            ? std::string("\x20\x02\x00\x01", 4)
                                            : std::string("\x20\x03\x00\x84\x00", 5);
            (void)!::write(client, connack.data(), connack.size());
            ::close(client);
            return;
        }
        const int up = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(static_cast<std::uint16_t>(upstream_port_));
        if (up < 0 || ::connect(up, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            ::write(up, packet.data(), packet.size()) != static_cast<ssize_t>(packet.size())) {
            ::close(client);
            if (up >= 0) {
                ::close(up);
            }
            return;
        }
        splice(client, up);
        ::close(client);
        ::close(up);
    }

    // Copies bytes both ways until either side closes or the gate stops.
    void splice(int a, int b) {
        pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
        char buf[16384];
        while (!stop_) {
            if (::poll(p, 2, 100) < 0) {
                return;
            }
            for (int i = 0; i < 2; ++i) {
                if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
                    continue;
                }
                const ssize_t got = ::read(p[i].fd, buf, sizeof buf);
                if (got <= 0) {
                    return;
                }
                const int to = p[1 - i].fd;
                for (ssize_t sent = 0; sent < got;) {
                    const ssize_t n = ::write(to, buf + sent, static_cast<std::size_t>(got - sent));
                    if (n <= 0) {
                        return;
                    }
                    sent += n;
                }
            }
        }
    }

    int upstream_port_;
    Refusal refusal_;
    int listen_fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread acceptor_;
    std::vector<std::thread> pipes_;  // only the acceptor adds; joined after it
    mutable std::mutex mutex_;
    std::vector<int> levels_;
};

Record record_with_header(std::int64_t id) {
    Record r = testing::make_record(id, "fallback/t", "reading " + std::to_string(id));
    r.message.headers = {{"site", "north"}};
    return r;
}

std::string what_of_connect(MqttBroker& broker) {
    try {
        broker.connect(10s);
    } catch (const BrokerError& e) {
        EXPECT_FALSE(e.transient()) << e.what();
        return e.what();
    }
    ADD_FAILURE() << "connected through a gate that refuses MQTT 5";
    return "";
}

std::size_t count_of(const std::string& text, const std::string& part) {
    std::size_t n = 0;
    for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) {
        ++n;
    }
    return n;
}

class Fallback : public ::testing::TestWithParam<Refusal> {};

TEST_P(Fallback, TheDefaultVersionFallsBackTo311AndStaysThere) {
    Mosquitto mosq;
    ProtocolGate gate(mosq.port(), GetParam());
    Subscriber sub(mosq.uri(), "fallback/#", 1, 5);
    MqttOptions o = testing::options_for(gate.uri());
    o.version = MqttVersion::v5_or_3_1_1;
    MqttBroker broker(o);
    EXPECT_EQ(broker.version(), MqttVersion::v5) << "the first attempt is MQTT 5";
    ConnectionLog changes;
    broker.set_connection_handler(changes.handler());

    broker.connect(10s);
    ASSERT_TRUE(broker.connected());
    EXPECT_EQ(broker.version(), MqttVersion::v3_1_1);
    EXPECT_EQ(gate.levels(), (std::vector<int>{5, 4})) << "one refused MQTT 5 CONNECT, then 3.1.1";
    const auto up = changes.wait_for(true, 2s);
    ASSERT_TRUE(up.has_value());
    EXPECT_NE(up->find("(MQTT 3.1.1: the server refused MQTT 5)"), std::string::npos) << *up;

    Completions done;
    broker.publish(record_with_header(1), done.callback_for(1));
    ASSERT_TRUE(done.wait_for(1, 10s));
    EXPECT_EQ(done.count(PublishResult::Status::delivered), 1u);
    ASSERT_TRUE(sub.wait_for_count(1, 10s));
    const testing::Received got = sub.messages().front();
    EXPECT_EQ(got.payload, "reading 1");
    EXPECT_TRUE(got.user_properties.empty()) << "MQTT 3.1.1 carries no properties";

    // A reconnect asks in 3.1.1 at once: no second refused handshake.
    broker.disconnect(1s);
    broker.connect(10s);
    EXPECT_TRUE(broker.connected());
    EXPECT_EQ(gate.levels(), (std::vector<int>{5, 4, 4}));
}

TEST_P(Fallback, PinnedMqtt5IsRefusedWithWhatHappenedAndWhatToDo) {
    Mosquitto mosq;
    ProtocolGate gate(mosq.port(), GetParam());
    MqttBroker broker(testing::options_for(gate.uri(), MqttVersion::v5));
    const std::string what = what_of_connect(broker);
    EXPECT_NE(what.find("the server does not speak MQTT 5"), std::string::npos) << what;
    EXPECT_NE(what.find("connect with MQTT 3.1.1"), std::string::npos) << what;
    EXPECT_EQ(what.find("granted"), std::string::npos)
        << "code 1 read from MQTT 5's table: " << what;
    EXPECT_EQ(count_of(what, "cannot connect to"), 1u) << what;
    EXPECT_EQ(gate.levels(), (std::vector<int>{5})) << "pinned: no 3.1.1 attempt";
    EXPECT_FALSE(broker.connected());
    EXPECT_EQ(broker.version(), MqttVersion::v5);
}

TEST_P(Fallback, APasswordWithoutUserNameCannotFallBackAndSaysWhy) {
    Mosquitto mosq;
    ProtocolGate gate(mosq.port(), GetParam());
    MqttOptions o = testing::options_for(gate.uri());
    o.version = MqttVersion::v5_or_3_1_1;
    o.password = "secret";  // MQTT 5 allows it, 3.1.1 does not
    MqttBroker broker(o);
    const std::string what = what_of_connect(broker);
    EXPECT_NE(what.find("forbids a password without a user name"), std::string::npos) << what;
    EXPECT_EQ(what.find("secret"), std::string::npos) << what;
    EXPECT_EQ(gate.levels(), (std::vector<int>{5}));
}

INSTANTIATE_TEST_SUITE_P(Refusals, Fallback,
                         ::testing::Values(Refusal::return_code_1, Refusal::reason_0x84),
                         [](const ::testing::TestParamInfo<Refusal>& info) {
                             return info.param == Refusal::return_code_1 ? "ReturnCode1"
                                                                         : "Reason0x84";
                         });

TEST(MqttVersion, Pinned311NeverAsksForMqtt5) {
    Mosquitto mosq;
    ProtocolGate gate(mosq.port(), Refusal::return_code_1);
    MqttBroker broker(testing::options_for(gate.uri(), MqttVersion::v3_1_1));
    EXPECT_EQ(broker.version(), MqttVersion::v3_1_1);
    broker.connect(10s);
    EXPECT_TRUE(broker.connected());
    EXPECT_EQ(gate.levels(), (std::vector<int>{4}));
}

TEST(MqttVersion, TheDefaultStaysMqtt5WithAServerThatSpeaksIt) {
    Mosquitto mosq;
    Subscriber sub(mosq.uri(), "fallback/#", 1, 5);
    MqttOptions o = testing::options_for(mosq.uri());
    o.version = MqttOptions{}.version;
    ASSERT_EQ(o.version, MqttVersion::v5_or_3_1_1) << "the documented default";
    MqttBroker broker(o);
    broker.connect(10s);
    EXPECT_EQ(broker.version(), MqttVersion::v5);
    Completions done;
    broker.publish(record_with_header(1), done.callback_for(1));
    ASSERT_TRUE(done.wait_for(1, 10s));
    ASSERT_TRUE(sub.wait_for_count(1, 10s));
    EXPECT_EQ(sub.messages().front().property("site"), "north");
    EXPECT_EQ(sub.messages().front().property("outpost-id"), "uid-1");
}

}  // namespace
}  // namespace outpost
