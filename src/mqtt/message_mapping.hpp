// Private: what MqttBroker sends for a Record, and how large that PUBLISH packet is. Both live
// here, side by side, because they must agree: local_refusal() (reason_codes.hpp) compares the
// size with the server's Maximum Packet Size, so a property added to to_message() must be
// counted by publish_packet_size() too.
//
// Both are pure functions of their arguments (no lock, no state), called by MqttBroker::publish()
// on the publishing thread (the dispatcher's). paho types are only forward-declared here:
// to_message()'s callers include <mqtt/message.h> (or <mqtt/async_client.h>) themselves.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "outpost/clock.hpp"
#include "outpost/message.hpp"

namespace mqtt {
class message;
}  // namespace mqtt

namespace outpost::mqtt_detail {

// The paho message for `record`: topic, payload, qos and retain; on MQTT 5 (`mqtt5`) also the
// headers as user properties, the user property `id_property` = record.uid (none when
// `id_property` is empty), the content type, and the message expiry interval (the seconds left
// until record.expires_at by `clock`'s wall time, rounded up, at least 1). Throws what paho
// throws (mqtt::exception) for a message it refuses to build.
std::shared_ptr<mqtt::message> to_message(const Record& record, bool mqtt5,
                                          const std::string& id_property, const Clock& clock);

// The size in bytes of the PUBLISH packet to_message() makes for `record` (MQTT 5 adds the
// properties), to compare with the server's maximum packet size.
std::size_t publish_packet_size(const Record& record, bool mqtt5, const std::string& id_property);

}  // namespace outpost::mqtt_detail
