// `outpost sync`: its options and help. The work is in sync.cpp, built only with MQTT support;
// without it the command is still listed, with the same options, and says it is unavailable.
#include <iostream>
#include <memory>

#include "command.hpp"
#include "sync.hpp"

namespace outpost::cli {

#ifndef OUTPOST_CLI_HAVE_MQTT
int run_sync(const Common&, const SyncArgs&) {
    std::cerr << "outpost: error: sync is unavailable: this outpost was built without MQTT "
                 "support (paho-mqtt-cpp)\n";
    return kExitFailure;
}
#endif

namespace {

Run setup_sync(CLI::App& cmd, const Common& common) {
    auto args = std::make_shared<SyncArgs>();
    cmd.add_option("--broker", args->brokers,
                   "Broker URI: mqtt://host:1883, mqtts://host:8883, ssl://, tcp://, ws://, "
                   "wss://; repeat for failover")
        ->required()
        ->type_name("URI")
        ->allow_extra_args(false);
    cmd.add_option("--client-id", args->client_id,
                   "MQTT client id (default: outpost-sync-HOST-PID); never reuse the app's")
        ->type_name("ID");
    cmd.add_option_function<std::string>(
           "--username", [args](const std::string& v) { args->username = v; }, "MQTT username")
        ->type_name("U");
    cmd.add_option_function<std::string>(
           "--password-file", [args](const std::string& v) { args->password_file = v; },
           "Read the MQTT password from file F (its first line); never printed")
        ->type_name("F");
    cmd.add_option_function<std::string>(
           "--ca-file", [args](const std::string& v) { args->ca_file = v; },
           "CA certificates (PEM) to verify the broker; default: the system's")
        ->type_name("F");
    cmd.add_option_function<std::string>(
           "--cert-file", [args](const std::string& v) { args->cert_file = v; },
           "Client certificate (PEM) for TLS client authentication")
        ->type_name("F");
    cmd.add_option_function<std::string>(
           "--key-file", [args](const std::string& v) { args->key_file = v; },
           "Private key (PEM) of the client certificate")
        ->type_name("F");
    cmd.add_option("--mqtt-version", args->mqtt_version,
                   "MQTT protocol: 3 (3.1.1) or 5. Default: 5, or 3.1.1 with a broker that "
                   "answers 5 with \"unacceptable protocol version\"")
        ->check(CLI::IsMember({3, 5}))
        ->type_name("3|5");
    cmd.add_option("--timeout", args->timeout,
                   "Give up after this long with records pending (exit 3)")
        ->check(duration_validator())
        ->type_name("DURATION")
        ->capture_default_str();
    cmd.add_option("--window", args->window, "Publishes in flight at once")
        ->check(CLI::Range(1, 65535))
        ->type_name("N")
        ->capture_default_str();
    cmd.add_option("--progress", args->progress, "auto: a bar on a terminal, plain lines otherwise")
        ->check(CLI::IsMember({"auto", "bar", "lines", "none"}))
        ->type_name("auto|bar|lines|none")
        ->capture_default_str();
    cmd.footer(
        "The catch-up of a device that was offline. Exit codes:\n"
        "  0  every record pending at the start was delivered (acknowledged by the broker)\n"
        "  4  nothing is left pending, but records went dead (the retry cap: the broker rejected\n"
        "     them) or expired (their ttl) during the sync; stderr says how many and the\n"
        "     command to list them (outpost list --db FILE --state dead)\n"
        "  3  --timeout passed with records still pending (also when some went dead)\n"
        "  1  error: broker refused for good, lease held by another dispatcher, interrupted\n"
        "Refuses while another dispatcher (the app's) holds the lease. Shows a progress bar\n"
        "(count, rate, ETA) on a terminal, plain lines on stderr otherwise; --json writes JSON\n"
        "Lines to stdout: progress, then {\"event\":\"done\",\"result\":...} with result drained "
        "(0),\n"
        "drained_with_failures (4), timeout (3), interrupted or lease_lost (1).\n"
        "Broker options may come from --config FILE, section [sync]:\n"
        "  [sync]\n"
        "  broker = \"mqtts://broker.example:8883\"\n"
        "  username = \"device-42\"\n"
        "  password-file = \"/etc/app/mqtt.pass\"\n"
        "Example: outpost --config /etc/app/outpost.toml sync --db app.db --timeout 30m");
    return [&common, args] { return run_sync(common, *args); };
}

}  // namespace

extern const Command kSyncCommand{"sync",
#ifdef OUTPOST_CLI_HAVE_MQTT
                                  "Deliver the pending records to an MQTT broker, then exit",
#else
                                  "Unavailable: this outpost was built without MQTT support "
                                  "(paho-mqtt-cpp).",
#endif
                                  setup_sync};

}  // namespace outpost::cli
