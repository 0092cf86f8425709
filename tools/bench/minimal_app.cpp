// The smallest useful app linking outpost: capture one message and dispatch it. Built for the
// footprint scenario of outpost-bench (its stripped size is what a device pays for outpost).
#include <SQLiteCpp/SQLiteCpp.h>

#include <cstdio>

#include "outpost/mqtt_broker.hpp"
#include "outpost/outpost.hpp"

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s DB BROKER_URI\n", argv[0]);
        return 2;
    }
    try {
        SQLite::Database db(argv[1], SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        outpost::Outbox outbox(db);
        outbox.add(outpost::Message::text("minimal/hello", "hello"));
        outpost::SqliteStore store(argv[1]);
        outpost::MqttOptions options;
        options.servers = {argv[2]};
        options.client_id = "outpost-minimal";
        outpost::MqttBroker broker(options);
        outpost::Dispatcher dispatcher(store, broker);
        dispatcher.start();
        return dispatcher.drain(std::chrono::seconds(10)) ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "minimal: %s\n", e.what());
        return 1;
    }
}
