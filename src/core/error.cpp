#include "outpost/error.hpp"

namespace outpost {

const char* to_string(ErrorKind kind) noexcept {
    switch (kind) {
        case ErrorKind::invalid_message:
            return "invalid_message";
        case ErrorKind::invalid_config:
            return "invalid_config";
        case ErrorKind::storage:
            return "storage";
        case ErrorKind::schema:
            return "schema";
        case ErrorKind::broker:
            return "broker";
        case ErrorKind::outbox_full:
            return "outbox_full";
        case ErrorKind::lease_held:
            return "lease_held";
        case ErrorKind::not_found:
            return "not_found";
    }
    return "unknown";
}

}  // namespace outpost
