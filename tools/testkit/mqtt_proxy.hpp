// Testkit: a loopback TCP proxy in front of a broker that understands MQTT framing, so one set of
// fault switches serves every real broker (mosquitto, aedes, RabbitMQ) without restarting it:
// refuse new connections (unreachable), hold packets (a broker that stops answering), cut every
// connection (a dropped link), and hold one direction at a chosen packet type (e.g. keep PUBCOMP
// from the client). It also logs every packet it saw in each direction, so a test can check what
// went over the wire (protocol level, properties, in-flight counts).
//
// Listens on a free port on 127.0.0.1 and connects to 127.0.0.1:broker_port; never another
// address. Forwards whole MQTT packets (fixed header + remaining length), so it must carry plain
// MQTT over TCP (no TLS, no websockets). One thread per connection, plus the acceptor.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace outpost::testing {

// MQTT control packet types (the high nibble of the first byte).
namespace mqtt_packet {
constexpr int connect = 1, connack = 2, publish = 3, puback = 4, pubrec = 5, pubrel = 6,
              pubcomp = 7, subscribe = 8, suback = 9, unsubscribe = 10, unsuback = 11, pingreq = 12,
              pingresp = 13, disconnect = 14, auth = 15;
}  // namespace mqtt_packet

enum class Direction { to_broker, to_client };

// One MQTT packet as the proxy read it.
struct WirePacket {
    int connection = 0;  // 1 for the first connection the proxy accepted, 2 for the next, ...
    long seq = 0;        // the order the proxy read packets in, over both directions: 1, 2, ...
    int type = 0;        // mqtt_packet::...
    int flags = 0;       // the low nibble of the first byte (PUBLISH: dup, qos, retain)
    std::string bytes;   // the whole packet, fixed header included

    // The bytes after the fixed header.
    std::string body() const;
    // PUBLISH: its QoS and topic; the packet identifier of PUBLISH (QoS > 0), PUBACK, PUBREC,
    // PUBREL, PUBCOMP. nullopt for other packets.
    int qos() const { return (flags >> 1) & 3; }
    std::optional<std::string> topic() const;
    std::optional<int> packet_id() const;
};

class MqttProxy {
  public:
    // Starts listening at once. Throws std::runtime_error when it cannot listen.
    explicit MqttProxy(int broker_port);
    ~MqttProxy();  // cuts every connection and joins its threads
    MqttProxy(const MqttProxy&) = delete;
    MqttProxy& operator=(const MqttProxy&) = delete;

    int port() const;
    // "tcp://127.0.0.1:PORT"
    std::string uri() const;

    // Closes the listening socket: a new connect is refused (ECONNREFUSED) until accept(). The
    // connections already made stay.
    void refuse();
    // Listens again, on the same port.
    void accept();

    // Stops forwarding in both directions: packets are still read (and logged) but wait in the
    // proxy, as if the broker hung. release() forwards them, in order.
    void hold();
    // One direction forwards up to (not including) the next packet of `type`, then waits like
    // hold() until release(). The packet is logged when it arrives.
    void hold_at(Direction direction, int type);
    // Ends every hold; what waited is forwarded.
    void release();

    // Closes every connection, both sides (the client sees EOF, the broker sees the client go),
    // dropping what waited; returns once they are closed. New connections are still accepted.
    void cut();

    // Every packet read so far in `direction`, in the order read.
    std::vector<WirePacket> packets(Direction direction) const;
    // Waits until at least `count` packets of `type` were read in `direction`; false on timeout.
    bool wait_for(Direction direction, int type, std::size_t count,
                  std::chrono::milliseconds timeout) const;
    // Connections accepted so far.
    int connections() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace outpost::testing
