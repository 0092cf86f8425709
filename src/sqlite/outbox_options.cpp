// OutboxOptions: the capture side's settings, checked once when an Outbox opens.
#include <string>

#include "outpost/error.hpp"
#include "outpost/outbox.hpp"

namespace outpost {

void OutboxOptions::validate() const {
    if (max_payload_bytes > kMaxMqttPayload) {
        throw InvalidConfig("OutboxOptions::max_payload_bytes is " +
                                std::to_string(max_payload_bytes) +
                                "; MQTT carries at most 268435455 bytes",
                            "max_payload_bytes");
    }
    if (busy_timeout.count() < 0) {
        throw InvalidConfig("OutboxOptions::busy_timeout must not be negative", "busy_timeout");
    }
    if (quota_refresh.count() < 0) {
        throw InvalidConfig("OutboxOptions::quota_refresh must not be negative", "quota_refresh");
    }
    if (when_full != WhenFull::refuse && when_full != WhenFull::drop_oldest) {
        throw InvalidConfig("OutboxOptions::when_full must be WhenFull::refuse or drop_oldest",
                            "when_full");
    }
    if (when_full == WhenFull::drop_oldest && max_pending == 0 && max_pending_bytes == 0) {
        throw InvalidConfig(
            "OutboxOptions::when_full is drop_oldest but there is no quota (max_pending and "
            "max_pending_bytes are 0)",
            "when_full");
    }
}

}  // namespace outpost
