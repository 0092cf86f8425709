// `outpost add`: enqueue a message by hand, with the checks of the app's Outbox::add.
#include <cstddef>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "command.hpp"
#include "duration.hpp"
#include "outpost/admin.hpp"
#include "record_json.hpp"

namespace outpost::cli {

namespace {

using json = nlohmann::json;

struct AddArgs {
    std::string topic;
    std::optional<std::string> payload;
    std::optional<std::string> payload_file;
    std::optional<std::string> key;
    int qos = 1;
    int priority = 0;
    bool retain = false;
    std::optional<std::string> ttl;
    std::vector<std::string> headers;
    std::optional<std::string> content_type;
};

std::string read_payload_file(const std::string& path) {
    if (path == "-") {
        std::ostringstream all;
        all << std::cin.rdbuf();
        if (std::cin.bad()) {
            throw std::runtime_error("reading the payload from stdin failed");
        }
        return all.str();
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw std::runtime_error("cannot open payload file " + path);
    }
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) {
        throw std::runtime_error("reading payload file " + path + " failed");
    }
    return data;
}

int run_add(const Common& common, const AddArgs& args) {
    Message m;
    m.topic = args.topic;
    std::string payload;
    if (args.payload) {
        payload = *args.payload;
    } else if (args.payload_file) {
        payload = read_payload_file(*args.payload_file);
    }
    const auto* p = reinterpret_cast<const std::byte*>(payload.data());
    m.payload.assign(p, p + payload.size());
    m.key = args.key;
    m.qos = args.qos;
    m.priority = args.priority;
    m.retain = args.retain;
    m.content_type = args.content_type;
    if (args.ttl) {
        m.ttl = parse_duration(*args.ttl);
    }
    for (const std::string& h : args.headers) {
        const std::size_t eq = h.find('=');
        if (eq == std::string::npos || eq == 0) {
            throw UsageError("--header '" + h + "' is not NAME=VALUE");
        }
        m.headers.push_back({h.substr(0, eq), h.substr(eq + 1)});
    }
    Admin admin = open_admin(common, false);
    const std::int64_t id = admin.add(m);
    if (common.json) {
        std::cout << dump(json{{"id", id}}) << '\n';
    } else {
        std::cout << id << '\n';
    }
    return kExitOk;
}

Run setup_add(CLI::App& cmd, const Common& common) {
    auto args = std::make_shared<AddArgs>();
    cmd.add_option("--topic", args->topic, "MQTT topic (no wildcards)")->required()->type_name("T");
    CLI::Option* payload = cmd.add_option_function<std::string>(
        "--payload", [args](const std::string& v) { args->payload = v; }, "Payload text");
    payload->type_name("TEXT");
    CLI::Option* payload_file = cmd.add_option_function<std::string>(
        "--payload-file", [args](const std::string& v) { args->payload_file = v; },
        "Read the payload (any bytes) from file F, or from stdin when F is -");
    payload_file->type_name("F");
    payload->excludes(payload_file);
    cmd.add_option_function<std::string>(
           "--key", [args](const std::string& v) { args->key = v; },
           "Ordering key: same key = delivered in commit order")
        ->type_name("K");
    cmd.add_option("--qos", args->qos, "MQTT QoS")
        ->check(CLI::Range(0, 2))
        ->type_name("N")
        ->capture_default_str();
    cmd.add_option("--priority", args->priority, "Higher is sent first")
        ->type_name("N")
        ->capture_default_str();
    cmd.add_flag("--retain", args->retain, "Set the MQTT retain flag");
    cmd.add_option_function<std::string>(
           "--ttl", [args](const std::string& v) { args->ttl = v; },
           "Expire the message if not delivered within this time")
        ->check(duration_validator())
        ->type_name("DURATION");
    cmd.add_option("--header", args->headers,
                   "MQTT 5 user property; repeat for more (dropped on MQTT 3.1.1)")
        ->type_name("NAME=VALUE")
        ->allow_extra_args(false);
    cmd.add_option_function<std::string>(
           "--content-type", [args](const std::string& v) { args->content_type = v; },
           "MQTT 5 content type")
        ->type_name("TYPE");
    cmd.footer(
        "The message is checked and stored as the app's Outbox::add would (same validation;\n"
        "the app's quota is its own setting and not applied here). Prints the new record's\n"
        "id (--json: {\"id\": N}).\n"
        "Without --payload or --payload-file the payload is empty.\n"
        "Examples:\n"
        "  outpost add --db app.db --topic sensors/pump-7 --payload '{\"rpm\":1200}' --key pump-7\n"
        "  outpost add --db app.db --topic fw/blob --payload-file image.bin --qos 2 --ttl 7d\n"
        "  echo hello | outpost add --db app.db --topic t --payload-file - --header origin=manual");
    return [&common, args] { return run_add(common, *args); };
}

}  // namespace

extern const Command kAddCommand{"add", "Enqueue a message by hand; prints its id", setup_add};

}  // namespace outpost::cli
