#include "record_json.hpp"

namespace outpost::cli {

using json = nlohmann::json;

std::string dump(const json& j, int indent) {
    return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

json optional_json(const std::optional<std::int64_t>& v) {
    return v ? json(*v) : json(nullptr);
}

json record_json(const Record& r) {
    json headers = json::array();
    for (const Header& h : r.message.headers) {
        headers.push_back({{"name", h.name}, {"value", h.value}});
    }
    return {
        {"id", r.id},
        {"uid", r.uid},
        {"state", to_string(r.state)},
        {"topic", r.message.topic},
        {"key", r.message.key ? json(*r.message.key) : json(nullptr)},
        {"qos", r.message.qos},
        {"retain", r.message.retain},
        {"priority", r.message.priority},
        {"headers", headers},
        {"content_type", r.message.content_type ? json(*r.message.content_type) : json(nullptr)},
        {"payload_bytes", r.message.payload.size()},
        {"created_at", r.created_at},
        {"expires_at", optional_json(r.expires_at)},
        {"attempts", r.attempts},
        {"next_attempt_at", r.next_attempt_at},
        {"done_at", optional_json(r.done_at)},
        {"last_error", r.last_error.empty() ? json(nullptr) : json(r.last_error)},
    };
}

}  // namespace outpost::cli
