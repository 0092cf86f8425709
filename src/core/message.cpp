#include "outpost/message.hpp"

namespace outpost {

Message Message::text(std::string topic, std::string_view text) {
    Message m;
    m.topic = std::move(topic);
    const auto* p = reinterpret_cast<const std::byte*>(text.data());
    m.payload.assign(p, p + text.size());
    return m;
}

const char* to_string(RecordState state) noexcept {
    switch (state) {
        case RecordState::pending:
            return "pending";
        case RecordState::delivered:
            return "delivered";
        case RecordState::dead:
            return "dead";
        case RecordState::expired:
            return "expired";
    }
    return "unknown";
}

std::optional<RecordState> parse_record_state(std::string_view name) noexcept {
    for (RecordState s :
         {RecordState::pending, RecordState::delivered, RecordState::dead, RecordState::expired}) {
        if (name == to_string(s)) {
            return s;
        }
    }
    return std::nullopt;
}

}  // namespace outpost
