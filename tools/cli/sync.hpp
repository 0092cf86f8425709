// `outpost sync`: its options (cmd_sync.cpp declares them) and its work (sync.cpp, built only
// with MQTT support, OUTPOST_CLI_HAVE_MQTT).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "command.hpp"

namespace outpost::cli {

struct SyncArgs {
    std::vector<std::string> brokers;
    std::string client_id;
    std::optional<std::string> username;
    std::optional<std::string> password_file;
    std::optional<std::string> ca_file;
    std::optional<std::string> cert_file;
    std::optional<std::string> key_file;
    int mqtt_version = 0;  // 0: not given (MQTT 5, or 3.1.1 with a broker that refuses 5)
    std::string timeout = "10m";
    std::size_t window = 100;
    std::string progress = "auto";
};

// Delivers the pending records of common.db to the brokers, then returns the exit code.
int run_sync(const Common& common, const SyncArgs& args);

}  // namespace outpost::cli
