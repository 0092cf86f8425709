// outpost: the MQTT broker adapter (paho-mqtt-cpp underneath, never visible here).
//
// Include it explicitly: `#include <outpost/mqtt_broker.hpp>`. It is built only when the library
// was configured with MQTT support (meson option `mqtt`, found paho-mqtt-cpp); outpost.hpp does
// not include it, so code that only captures messages never needs paho.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "outpost/broker.hpp"
#include "outpost/clock.hpp"

namespace outpost {

enum class MqttVersion : int {
    v3_1_1 = 4,  // MQTT 3.1.1: no properties; headers, content type and expiry are dropped
    v5 = 5,      // MQTT 5: user properties, content type, message expiry, reason codes
    // MQTT 5, or MQTT 3.1.1 with a server that does not speak 5. A server that answers an
    // MQTT 5 CONNECT with "unacceptable protocol version" (the MQTT 3.1.1 return code 1, as aedes
    // does, or the MQTT 5 reason 0x84), or a tcp:// server that closes it without a CONNACK (as
    // RabbitMQ 3 does; confirmed by a CONNECT of MqttBroker's own, so a timeout or a refused port
    // never counts), is asked again at once, within the same connect(), with MQTT 3.1.1. If that
    // connects, this MqttBroker speaks 3.1.1 to every server of its list until it is destroyed
    // (no refused handshake at each reconnect); if not, the next attempt is MQTT 5 again.
    // On 3.1.1 there are no reason codes (a rejected publish is a dropped connection or
    // nothing), no properties (headers, content type, expiry and the outpost-id property are
    // not sent) and no CONNACK limits. MqttBroker::version() and the connection handler's text
    // ("... (MQTT 3.1.1: the server refused MQTT 5)") say which one is spoken. A password
    // without a user name cannot fall back (3.1.1 forbids it): that server's error says so.
    v5_or_3_1_1 = 0,
};

// TLS settings, used for `ssl://`, `mqtts://` and `wss://` server URIs (ignored for others).
// The server's certificate chain and host name are verified unless `insecure` is set.
struct MqttTls {
    // PEM file of trusted CA certificates. Default empty: the system's default trust store.
    std::string ca_file;
    // Directory of trusted CA certificates (OpenSSL hashed names). Default empty: none.
    std::string ca_path;
    // Client certificate chain (PEM) for mutual TLS. Default empty: no client certificate.
    std::string cert_file;
    // The client's private key (PEM). Default empty: the key is in cert_file (if any). Setting it
    // without cert_file is an error.
    std::string key_file;
    // Password of an encrypted key_file. Default empty: the key is not encrypted.
    std::string key_password;
    // true = accept any server certificate and host name. Default false. For a lab only: it
    // turns TLS into encryption without authentication.
    bool insecure = false;
};

// The message the broker publishes for this client when its connection dies without a clean
// disconnect (MQTT last will).
struct MqttWill {
    std::string topic;    // required; no '+', '#' or NUL
    std::string payload;  // default empty
    int qos = 0;          // 0, 1 or 2; default 0
    bool retain = false;  // default false
};

struct MqttOptions {
    // Server URIs, tried in this order on every connect() until one accepts: failover.
    // Forms: tcp://host:port or mqtt://host:port (plain), ssl://host:port or mqtts://host:port
    // (TLS), ws:// and wss:// (websockets). Required: no default.
    std::vector<std::string> servers;
    // MQTT client identifier. Required: no default. Unique per device: a broker disconnects an
    // older connection that uses the same id.
    std::string client_id;
    // Protocol version. Default v5_or_3_1_1: MQTT 5, falling back to 3.1.1 with a server that
    // does not speak 5 (see MqttVersion). v5 pins MQTT 5: such a server is then an error
    // (BrokerError, not transient) saying so.
    MqttVersion version = MqttVersion::v5_or_3_1_1;
    // Keepalive: the broker drops the connection after 1.5 x this without traffic; the client
    // pings when idle. The client also watches the link: after half of it without any answer
    // from the server it probes (an UNSUBSCRIBE of a filter it never subscribed), and after
    // 1.5 x this without any answer the connection counts as lost (publishes in flight complete
    // with connection_lost): a half-open link is noticed within 1.5 keepalives + 1 s. So choose
    // it above the time the link needs to carry the largest payload. Default 30 s; 0 (off) or
    // 1 s .. 65,535 s.
    std::chrono::seconds keepalive{30};
    // Start a new session on each connect (MQTT 5 clean start, MQTT 3.1.1 clean session).
    // Default true. outpost keeps no client-side session state (the outbox table re-sends what
    // was not acknowledged), so false only keeps broker-side state such as subscriptions.
    bool clean_start = true;
    // User name and password. Default none. MQTT 3.1.1 forbids a password without a user name.
    std::optional<std::string> username;
    std::optional<std::string> password;
    // TLS for ssl:// and mqtts:// servers. Default: verification on, system trust store.
    MqttTls tls;
    // The time allowed for one server's TCP, TLS and MQTT handshake. Default 10 s; at least
    // 1 s (paho counts whole seconds: rounded up). connect(timeout) bounds the whole attempt over
    // all servers: each server gets min(connect_timeout, timeout / number of servers).
    std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
    // Last will. Default none.
    std::optional<MqttWill> will;
    // MQTT 5: the name of the user property that carries record.uid, so consumers can drop the
    // duplicates at-least-once delivery makes. Default "outpost-id". Empty: no id is sent (paho
    // copies every property several times per message; outpost-bench's drain-qos1-id line gives
    // the price). Ignored on MQTT 3.1.1.
    std::string id_property = "outpost-id";

    // Throws InvalidConfig naming the field when a value is out of range. Does not touch the
    // file system or the network (files named in `tls` are checked by connect()).
    void validate() const;
};

// The reason-code text MqttBroker uses in errors and rejections, e.g. 0x87 -> "not authorized".
// "unknown" for a code MQTT 5 does not define.
const char* mqtt_reason_name(int reason_code) noexcept;

// A MessageBroker on MQTT 3.1.1 or 5 (paho-mqtt-cpp).
//
// Everything in the MessageBroker contract holds; in particular:
// - connect() tries options.servers one at a time, in order, each with its share of the time
//   left (at most connect_timeout), and returns once one accepted (with the protocol fallback
//   of MqttVersion::v5_or_3_1_1 per server), or throws BrokerError within `timeout`, its text
//   naming each server tried and why it failed. transient() is false when retrying cannot help
//   without a change of configuration (if any server said so): bad user name or password, not
//   authorized, banned, unsupported protocol version, client id rejected, TLS certificate
//   verification failed, unreadable TLS files, an invalid server URI. It is true for an
//   unreachable, refusing, busy or slow server. code() holds the CONNACK code (MQTT 3.1.1: 1-5;
//   MQTT 5: reason code) or paho's negative error code. Connecting while connected does nothing. paho's automatic reconnect is never
//   used: reconnecting (with backoff) is the caller's job, as is the Dispatcher's.
// - publish() hands the message to paho and returns; done runs on a paho thread (or at once on
//   the caller's thread when the connection is down). With 8 or more QoS 1/2 publishes in
//   flight, the message is queued instead and paho's receive thread sends it when the next
//   acknowledgement arrives (order is kept; one thread less contends for paho's lock). QoS 0
//   is delivered once paho wrote it to the socket; QoS 1 on PUBACK; QoS 2 on PUBCOMP. An
//   MQTT 5 acknowledgement with a reason code >= 0x80 is a rejection, text "PUBACK reason 0x87
//   not authorized" (PUBREC for QoS 2); permanent for not authorized (0x87), topic name
//   invalid (0x90), packet too large (0x95) and payload format invalid (0x99), transient for the
//   others (quota exceeded 0x97, ...).
// - Local refusals: a publish the server would answer by closing the connection is never sent.
//   It completes at once (on the caller's thread) as rejected, permanent, with the reason code
//   the server would have used and a reason naming the rule: QoS above the CONNACK's Maximum QoS
//   (0x9B qos not supported), retain when the CONNACK said Retain Available 0 (0x9A retain not
//   supported), a topic that is empty, has a wildcard, is not well-formed UTF-8 or holds a code
//   point MQTT forbids (U+0000, the controls U+0001..U+001F and U+007F..U+009F, the
//   noncharacters; 0x90 topic name invalid), on MQTT 5 a header, content type or record.uid (the
//   id property) breaking the same string rules (0x81 malformed packet), and a packet above the
//   CONNACK's Maximum Packet Size (0x95 packet too large). add() already refuses such strings;
//   this catches records that never went through it (an older version, a hand-edited file).
//   MQTT 3.1.1 has no Maximum QoS, Retain Available or Maximum Packet Size in its CONNACK: on
//   3.1.1, QoS 2 and retained messages are sent as given, and a server that does not support
//   them drops the connection (mosquitto's `max_qos`, `retain_available false`), which the
//   publish and the others in flight see as connection_lost. Use MQTT 5 with such a server.
// - MQTT 5 mapping: headers become user properties, plus the user property `outpost-id` (named
//   by options.id_property; none when empty) = record.uid; content_type becomes the content type;
//   expires_at becomes the message expiry interval (the seconds left, rounded up, at least 1, also
//   for an already expired record). MQTT 3.1.1 sends topic, payload, qos and retain only.
// - No persistence and no offline buffer in paho: a message exists in memory only while its
//   publish is in flight. Publishing while disconnected completes with connection_lost at once.
// - When the connection drops (or the broker sends DISCONNECT), connected() turns false, every
//   outstanding publish completes with connection_lost, then the connection handler is told.
//   The handler is also told (true) after each successful connect() and (false) after
//   disconnect(). Callbacks (done, handler) never run with an internal lock held: they may call
//   connected(); they must not call connect(), disconnect() or the destructor, nor wait for the
//   thread that does.
// - disconnect() returns only once no callback runs on a paho thread any more (after a lost
//   connection, paho's thread may still be completing publishes or telling the handler), and
//   none comes after it until the next connect() or publish(): what the callbacks point to may
//   be freed as soon as it returns.
// - The destructor disconnects (up to 1 s for acknowledgements) and completes whatever is still
//   outstanding with connection_lost.
class MqttBroker final : public MessageBroker {
  public:
    // Throws InvalidConfig (options.validate()). Does not connect. `clock` gives the wall time
    // for message expiry intervals; it must outlive the broker.
    explicit MqttBroker(MqttOptions options, const Clock& clock = SystemClock::instance());
    ~MqttBroker() override;
    MqttBroker(const MqttBroker&) = delete;
    MqttBroker& operator=(const MqttBroker&) = delete;

    void connect(std::chrono::milliseconds timeout) override;
    void disconnect(std::chrono::milliseconds timeout) noexcept override;
    bool connected() const noexcept override;
    void publish(const Record& record, PublishCallback done) override;
    void set_connection_handler(ConnectionHandler handler) override;

    // The URI of the server currently (or last) connected to; empty before the first connect.
    std::string server() const;
    // The protocol of the current (or last) connection: v5 or v3_1_1, never v5_or_3_1_1.
    // Before the first connect, the one the first attempt will use.
    MqttVersion version() const noexcept;
    const MqttOptions& options() const noexcept;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace outpost
