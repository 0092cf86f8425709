// JSON output of the `outpost` command: records as list --json, show --json and export write
// them.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>

#include "outpost/message.hpp"

namespace outpost::cli {

// `j` as text; invalid UTF-8 in a stored string (a last_error from a broker, say) is replaced
// and never aborts the output.
std::string dump(const nlohmann::json& j, int indent = -1);

// The value, or null.
nlohmann::json optional_json(const std::optional<std::int64_t>& v);

// Every field of a record except the payload itself.
nlohmann::json record_json(const Record& r);

inline std::span<const std::byte> payload_of(const Record& r) {
    return r.message.payload;
}

}  // namespace outpost::cli
