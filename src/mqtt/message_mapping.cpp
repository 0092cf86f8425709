#include "message_mapping.hpp"

#include <mqtt/message.h>
#include <mqtt/properties.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

namespace outpost::mqtt_detail {

namespace {

std::size_t varint_size(std::size_t n) {
    std::size_t bytes = 1;
    while (n >= 128) {
        n /= 128;
        ++bytes;
    }
    return bytes;
}

}  // namespace

std::shared_ptr<mqtt::message> to_message(const Record& r, bool mqtt5,
                                          const std::string& id_property, const Clock& clock) {
    const Message& m = r.message;
    auto msg = mqtt::make_message(m.topic, m.payload.data(), m.payload.size(), m.qos, m.retain);
    if (!mqtt5) {
        return msg;
    }
    // Every property added here is counted by publish_packet_size() below.
    mqtt::properties props;
    for (const Header& h : m.headers) {
        props.add(mqtt::property(mqtt::property::USER_PROPERTY, h.name, h.value));
    }
    if (!id_property.empty()) {
        props.add(mqtt::property(mqtt::property::USER_PROPERTY, id_property, r.uid));
    }
    if (m.content_type) {
        props.add(mqtt::property(mqtt::property::CONTENT_TYPE, *m.content_type));
    }
    if (r.expires_at) {
        // Seconds left, rounded up, at least 1: an interval of 0 is not "expired" in MQTT,
        // and the dispatcher already filtered what expired before it claimed the record.
        const std::int64_t left_ms = *r.expires_at - clock.wall_ms();
        std::int64_t secs = left_ms <= 0 ? 1 : (left_ms + 999) / 1000;
        secs = std::clamp<std::int64_t>(secs, 1, std::numeric_limits<std::int32_t>::max());
        props.add(mqtt::property(mqtt::property::MESSAGE_EXPIRY_INTERVAL,
                                 static_cast<std::int32_t>(secs)));
    }
    if (!props.empty()) {
        msg->set_properties(std::move(props));
    }
    return msg;
}

std::size_t publish_packet_size(const Record& record, bool mqtt5, const std::string& id_property) {
    const Message& m = record.message;
    std::size_t remaining = 2 + m.topic.size() + (m.qos > 0 ? 2 : 0) + m.payload.size();
    if (mqtt5) {
        // The properties to_message() adds: user properties, the id property, content type,
        // message expiry interval. No topic alias.
        std::size_t props = 0;
        for (const Header& h : m.headers) {
            props += 1 + 2 + h.name.size() + 2 + h.value.size();
        }
        if (!id_property.empty()) {
            props += 1 + 2 + id_property.size() + 2 + record.uid.size();
        }
        if (m.content_type) {
            props += 1 + 2 + m.content_type->size();
        }
        if (record.expires_at) {
            props += 1 + 4;
        }
        remaining += varint_size(props) + props;
    }
    return 1 + varint_size(remaining) + remaining;
}

}  // namespace outpost::mqtt_detail
