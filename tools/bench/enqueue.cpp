// enqueue-normal, enqueue-full, enqueue-batch: the capture path against raw SQLiteCpp inserts.
#include <SQLiteCpp/SQLiteCpp.h>

#include <memory>

#include "bench.hpp"
#include "outpost/outbox.hpp"
#include "testkit/temp_dir.hpp"

namespace outpost::bench {

namespace {

// One run: `transactions` transactions of 1 business-row insert + `per_tx` messages each.
// Returns messages per second. The baseline inserts the same rows into the same table (same
// columns, same indexes) with its own prepared statements: what outpost adds is validation, the
// uid, the message struct and the WAL hook.
double enqueue_run(bool use_outpost, const std::string& synchronous, int transactions, int per_tx) {
    testing::TempDir dir;
    const std::string path = dir.file("enqueue.db");
    SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = " + synchronous);
    db.exec("CREATE TABLE readings (id INTEGER PRIMARY KEY, sensor TEXT, value REAL, at INTEGER)");
    Outbox outbox(db);  // creates the schema for both runs
    SQLite::Statement reading(db, "INSERT INTO readings (sensor, value, at) VALUES (?, ?, ?)");
    SQLite::Statement raw(db,
                          "INSERT INTO outpost_records (uid, topic, payload, msg_key, qos, retain, "
                          "priority, headers, content_type, created_at, expires_at) "
                          "VALUES (?, ?, ?, NULL, 1, 0, 0, NULL, NULL, ?, NULL)");
    const std::string topic = "site/7/sensor/temp";
    const std::string body = payload_for(0);
    std::uint64_t seq = 0;

    const auto t0 = Clock::now();
    for (int t = 0; t < transactions; ++t) {
        SQLite::Transaction tx(db);
        reading.bind(1, "temp-7");
        reading.bind(2, 21.5 + t);
        reading.bind(3, static_cast<std::int64_t>(t));
        reading.exec();
        reading.reset();
        for (int k = 0; k < per_tx; ++k, ++seq) {
            if (use_outpost) {
                Message m = Message::text(topic, body);
                outbox.add(m);
            } else {
                const std::string uid = "00000000-0000-7000-8000-" + std::to_string(seq);
                raw.bind(1, uid);
                raw.bind(2, topic);
                raw.bind(3, body.data(), static_cast<int>(body.size()));
                raw.bind(4, static_cast<std::int64_t>(seq));
                raw.exec();
                raw.reset();
            }
        }
        tx.commit();
    }
    return static_cast<double>(transactions) * per_tx / seconds_since(t0);
}

Result compare(const std::string& scenario, const std::string& synchronous, int transactions,
               int per_tx, int rounds, double goal, const std::string& unit) {
    std::vector<double> ours, base;
    for (int r = 0; r < rounds; ++r) {  // interleaved, so load swings hit both sides
        base.push_back(enqueue_run(false, synchronous, transactions, per_tx));
        ours.push_back(enqueue_run(true, synchronous, transactions, per_tx));
    }
    Result res;
    res.scenario = scenario;
    res.outpost = median(ours);
    res.baseline = median(base);
    res.ratio = res.outpost / *res.baseline;
    res.unit = unit;
    res.goal = "ratio >= " + std::to_string(goal).substr(0, 4);
    res.met = *res.ratio >= goal;
    res.note = std::to_string(transactions) + " tx x " + std::to_string(per_tx) +
               " msg, synchronous=" + synchronous + ", median of " + std::to_string(rounds);
    return res;
}

}  // namespace

void enqueue_scenarios(const Config& c, std::vector<Result>& out) {
    const int rounds = c.quick ? 3 : 5;
    out.push_back(
        compare("enqueue-normal", "NORMAL", c.quick ? 3000 : 20000, 1, rounds, 0.90, "tx/s"));
    out.push_back(compare("enqueue-full", "FULL", c.quick ? 300 : 1500, 1, rounds, 0.95, "tx/s"));
    out.push_back(
        compare("enqueue-batch", "NORMAL", c.quick ? 100 : 500, 100, rounds, 0.85, "msg/s"));
}

}  // namespace outpost::bench
