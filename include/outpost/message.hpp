// outpost: what the app sends (Message) and what the outbox stores (Record).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outpost {

// The longest Message::ttl add() accepts: 100 years (of 365.2425 days). Longer means "never":
// leave ttl unset for that.
inline constexpr std::chrono::milliseconds kMaxTtl = std::chrono::years(100);

// The largest payload MQTT can carry (its remaining-length limit): 268,435,455 bytes.
inline constexpr std::size_t kMaxMqttPayload = 268435455;

// One MQTT 5 user property. Both strings must be valid UTF-8 without the code points MQTT
// forbids (see Message::topic).
struct Header {
    std::string name;
    std::string value;
    friend bool operator==(const Header&, const Header&) = default;
};

// A message the app wants delivered. A plain value: copy it, build it field by field.
struct Message {
    // Required; <= 65,535 bytes; no '+' or '#'; well-formed UTF-8 without the code points MQTT
    // forbids in strings (a broker may drop the connection over them): U+0000, the controls
    // U+0001..U+001F and U+007F..U+009F, and the noncharacters U+FDD0..U+FDEF, U+xFFFE, U+xFFFF.
    // The same rules hold for headers and content_type.
    std::string topic;
    std::vector<std::byte> payload;  // any bytes, up to OutboxOptions::max_payload_bytes
    // Ordering key: same key = delivered in commit order. Never sent: UTF-8 without NUL is enough.
    std::optional<std::string> key;
    int qos = 1;          // 0, 1 or 2
    bool retain = false;  // MQTT retain flag
    int priority = 0;     // higher goes first; equal priority = commit order
    // Expires this long after add(): more than 0, at most kMaxTtl. Unset (default) = never.
    std::optional<std::chrono::milliseconds> ttl;
    std::vector<Header> headers;              // MQTT 5 user properties (dropped on MQTT 3.1.1)
    std::optional<std::string> content_type;  // MQTT 5 content type

    // Convenience: a message whose payload is the bytes of `text`.
    static Message text(std::string topic, std::string_view text);
    // The payload viewed as characters (no copy, no UTF-8 check).
    std::string_view payload_view() const noexcept {
        return {reinterpret_cast<const char*>(payload.data()), payload.size()};
    }

    friend bool operator==(const Message&, const Message&) = default;
};

enum class RecordState : int {
    pending = 0,    // waiting to be sent (or waiting for its retry time)
    delivered = 1,  // acknowledged by the broker; kept only while retention asks for it
    dead = 2,       // reached RetryPolicy::max_attempts; never sent again until requeued
    expired = 3,    // its ttl passed before it was delivered
};

// "pending", "delivered", "dead", "expired".
const char* to_string(RecordState state) noexcept;
// The inverse of to_string; std::nullopt for anything else.
std::optional<RecordState> parse_record_state(std::string_view name) noexcept;

// A stored message. Times are wall-clock milliseconds since the Unix epoch (int64 everywhere:
// time_t is 32-bit on some device ABIs).
struct Record {
    std::int64_t id = 0;  // row id: commit order within the database file
    std::string uid;      // stable unique id (UUID text), sent as the `outpost-id` property
    RecordState state = RecordState::pending;
    Message message;
    std::uint32_t attempts = 0;              // message-specific failures so far
    std::int64_t created_at = 0;             // when add() ran
    std::int64_t next_attempt_at = 0;        // not sent before this time (0 = at once)
    std::optional<std::int64_t> expires_at;  // created_at + ttl
    std::optional<std::int64_t> done_at;     // when it became delivered, dead or expired
    std::string last_error;                  // the last rejection or timeout, empty if none
};

// What validate() holds a message to beyond MQTT's own rules.
struct MessageLimits {
    // Largest payload accepted. Default 1 MiB; at most kMaxMqttPayload makes sense.
    std::size_t max_payload_bytes = 1 << 20;
};

// Throws InvalidMessage naming the first rule `message` breaks: what Outbox::add() checks
// (with its OutboxOptions::max_payload_bytes) before anything touches the database.
void validate(const Message& message, const MessageLimits& limits = {});

}  // namespace outpost
