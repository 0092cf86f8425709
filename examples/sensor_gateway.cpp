// sensor_gateway: a small device app that stores sensor readings in its own SQLite table and
// adds the MQTT message for each reading in the same transaction, while a Dispatcher forwards
// the outbox to a broker. Stop the broker while it runs: readings keep being stored, and the
// backlog is sent when the broker is back.
//
//   sensor_gateway --broker tcp://127.0.0.1:1883 --db gateway.db --count 3000 --interval-ms 2
//
// Exits 0 once every message is delivered (or 1 if --drain-s passes first).
#include <SQLiteCpp/SQLiteCpp.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "outpost/mqtt_broker.hpp"
#include "outpost/outpost.hpp"

namespace {

struct Args {
    std::string broker = "tcp://127.0.0.1:1883";
    std::string db = "gateway.db";
    std::string client_id = "sensor-gateway";
    int count = 1000;
    int interval_ms = 5;
    int reconnect_ms = 1000;
    int drain_s = 120;
};

[[noreturn]] void usage(const char* self) {
    std::fprintf(stderr,
                 "usage: %s [--broker URI] [--db PATH] [--client-id ID] [--count N]\n"
                 "          [--interval-ms MS] [--reconnect-ms MS] [--drain-s S]\n",
                 self);
    std::exit(2);
}

Args parse(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (i + 1 >= argc) {
            usage(argv[0]);
        }
        const std::string value = argv[++i];
        if (flag == "--broker") {
            a.broker = value;
        } else if (flag == "--db") {
            a.db = value;
        } else if (flag == "--client-id") {
            a.client_id = value;
        } else if (flag == "--count") {
            a.count = std::atoi(value.c_str());
        } else if (flag == "--interval-ms") {
            a.interval_ms = std::atoi(value.c_str());
        } else if (flag == "--reconnect-ms") {
            a.reconnect_ms = std::atoi(value.c_str());
        } else if (flag == "--drain-s") {
            a.drain_s = std::atoi(value.c_str());
        } else {
            usage(argv[0]);
        }
    }
    return a;
}

void print_progress(const char* what, int added, const outpost::DispatcherStats& s,
                    const outpost::StoreCounts& c) {
    std::printf(
        "%-9s added %5d  delivered %5llu  pending %5llu  broker %-4s  reconnects %llu%s%s\n", what,
        added, static_cast<unsigned long long>(s.delivered),
        static_cast<unsigned long long>(c.pending), s.connected ? "up" : "down",
        static_cast<unsigned long long>(s.reconnects),
        s.connected || s.last_error.empty() ? "" : "  last error: ",
        s.connected ? "" : s.last_error.c_str());
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    const Args args = parse(argc, argv);
    try {
        // The app's own database and table. The outbox lives in the same file.
        SQLite::Database db(args.db, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        db.exec(
            "CREATE TABLE IF NOT EXISTS readings (id INTEGER PRIMARY KEY, sensor TEXT NOT NULL, "
            "value REAL NOT NULL, taken_at INTEGER NOT NULL)");
        outpost::Outbox outbox(db);

        // The dispatcher side: its own connection to the file, the broker, the thread.
        outpost::SqliteStore store(args.db);
        outpost::MqttOptions mqtt;
        mqtt.servers = {args.broker};
        mqtt.client_id = args.client_id;
        outpost::MqttBroker broker(mqtt);
        outpost::DispatcherOptions options;
        options.reconnect_initial = std::chrono::milliseconds(args.reconnect_ms);
        options.reconnect_max = std::chrono::milliseconds(args.reconnect_ms);
        options.connect_timeout = std::chrono::seconds(2);
        outpost::Dispatcher dispatcher(store, broker, options);
        dispatcher.start();

        const char* sensors[] = {"kitchen", "cellar", "attic"};
        SQLite::Statement insert(db,
                                 "INSERT INTO readings (sensor, value, taken_at) VALUES (?, ?, ?)");
        for (int i = 0; i < args.count; ++i) {
            const char* sensor = sensors[i % 3];
            const double value = 20.0 + 5.0 * std::sin(i / 50.0) + (i % 3);
            const auto now = outpost::SystemClock::instance().wall_ms();

            // The point of the outbox: the reading and its message commit together.
            SQLite::Transaction tx(db);
            insert.reset();
            insert.bind(1, sensor);
            insert.bind(2, value);
            insert.bind(3, static_cast<std::int64_t>(now));
            insert.exec();
            char payload[128];
            std::snprintf(payload, sizeof payload,
                          "{\"sensor\":\"%s\",\"seq\":%d,\"value\":%.2f,\"at\":%lld}", sensor, i,
                          value, static_cast<long long>(now));
            outpost::Message m = outpost::Message::text(std::string("gateway/") + sensor, payload);
            m.key = sensor;  // per-sensor order
            m.content_type = "application/json";
            m.headers = {{"unit", "celsius"}};
            outbox.add(m);
            tx.commit();

            if ((i + 1) % 250 == 0) {
                print_progress("progress", i + 1, dispatcher.stats(), outbox.counts());
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(args.interval_ms));
        }

        std::printf("all %d readings stored; draining the outbox (up to %d s)\n", args.count,
                    args.drain_s);
        const bool drained = dispatcher.drain(std::chrono::seconds(args.drain_s));
        const auto stats = dispatcher.stats();
        const auto counts = outbox.counts();
        print_progress(drained ? "drained" : "timeout", args.count, stats, counts);
        dispatcher.stop();
        std::printf(
            "outbox stats: published %llu, delivered %llu, retries %llu, dead %llu, expired "
            "%llu, lost with connection %llu, reconnects %llu; records pending %llu, dead %llu\n",
            static_cast<unsigned long long>(stats.published),
            static_cast<unsigned long long>(stats.delivered),
            static_cast<unsigned long long>(stats.retries),
            static_cast<unsigned long long>(stats.dead),
            static_cast<unsigned long long>(stats.expired),
            static_cast<unsigned long long>(stats.connection_losses),
            static_cast<unsigned long long>(stats.reconnects),
            static_cast<unsigned long long>(counts.pending),
            static_cast<unsigned long long>(counts.dead));
        return drained && counts.pending == 0 ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sensor_gateway: %s\n", e.what());
        return 1;
    }
}
