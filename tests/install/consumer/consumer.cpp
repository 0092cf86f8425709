// A minimal app built against an installed (or subproject) outpost, the way a user would build
// one: open an outbox on the app's own database, capture a message together with a state change,
// count it. With OUTPOST_CONSUMER_MQTT it also constructs (without connecting) an MqttBroker, so
// the link line must carry paho and OpenSSL too.
//
//   consumer DB_PATH      prints "outpost consumer: 1 pending" and exits 0
#include <SQLiteCpp/SQLiteCpp.h>

#include <cstdio>
#include <exception>
#include <outpost/outpost.hpp>
#ifdef OUTPOST_CONSUMER_MQTT
#include <outpost/mqtt_broker.hpp>
#endif

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: consumer DB_PATH\n");
        return 2;
    }
    try {
        SQLite::Database db(argv[1], SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        db.exec("CREATE TABLE IF NOT EXISTS valves (id INTEGER PRIMARY KEY, open INTEGER)");
        outpost::Outbox outbox(db);
        {
            SQLite::Transaction tx(db);
            db.exec("INSERT INTO valves (id, open) VALUES (7, 1)");
            outpost::Message m = outpost::Message::text("site/3/valve/7", R"({"open":true})");
            m.key = "valve-7";
            outbox.add(m);
            tx.commit();
        }
        const outpost::StoreCounts counts = outbox.counts();
#ifdef OUTPOST_CONSUMER_MQTT
        outpost::MqttOptions options;
        options.servers = {"tcp://127.0.0.1:1"};
        options.client_id = "install-consumer";
        outpost::MqttBroker broker(options);  // does not connect
        if (broker.connected()) {
            std::fprintf(stderr, "consumer: a broker that never connected says it is connected\n");
            return 1;
        }
#endif
        std::printf("outpost consumer: %llu pending\n",
                    static_cast<unsigned long long>(counts.pending));
        return counts.pending == 1 ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "consumer: %s\n", e.what());
        return 1;
    }
}
