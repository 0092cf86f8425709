// Unit-test fixture: a real SQLite file in a temp dir, the app's connection with an Outbox, the
// dispatcher's SqliteStore, a FakeBroker and a ManualClock.
#pragma once

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>

#include "fake_broker.hpp"
#include "outpost/outpost.hpp"
#include "testkit/temp_dir.hpp"

namespace outpost::testing {

class OutboxTest : public ::testing::Test {
  protected:
    OutboxTest()
        : path_(dir_.file("app.db")),
          db_(path_, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE),
          outbox_(db_, {}, clock_) {}

    // Adds a text message in its own (autocommit) transaction.
    std::int64_t add(const std::string& topic, std::optional<std::string> key = std::nullopt,
                     int priority = 0) {
        Message m = Message::text(topic, "payload of " + topic);
        m.key = std::move(key);
        m.priority = priority;
        return outbox_.add(m);
    }

    SqliteStore& store() {
        if (!store_) {
            store_ = std::make_unique<SqliteStore>(path_);
        }
        return *store_;
    }

    DispatcherOptions options() {
        DispatcherOptions o;
        o.retry.jitter = 0;  // exact backoff in tests
        o.retry.initial_backoff = std::chrono::seconds(1);
        o.retry.max_backoff = std::chrono::seconds(60);
        o.retry.max_attempts = 3;
        return o;
    }

    std::unique_ptr<Dispatcher> dispatcher(std::optional<DispatcherOptions> o = std::nullopt) {
        return std::make_unique<Dispatcher>(store(), broker_, o ? *o : options(), clock_);
    }

    // Steps until a step does nothing (bounded).
    static void settle(Dispatcher& d) {
        for (int i = 0; i < 1000 && d.run_once() > 0; ++i) {
        }
    }

    // The state and attempts of record `id`, read on the app's connection.
    std::optional<std::pair<int, int>> state_of(std::int64_t id) {
        SQLite::Statement q(db_, "SELECT state, attempts FROM outpost_records WHERE id = ?");
        q.bind(1, id);
        if (!q.executeStep()) {
            return std::nullopt;
        }
        return std::make_pair(q.getColumn(0).getInt(), q.getColumn(1).getInt());
    }
    std::string last_error_of(std::int64_t id) {
        SQLite::Statement q(db_, "SELECT last_error FROM outpost_records WHERE id = ?");
        q.bind(1, id);
        return q.executeStep() ? q.getColumn(0).getString() : std::string("<gone>");
    }
    std::int64_t count(const std::string& where = "1") {
        return db_.execAndGet("SELECT count(*) FROM outpost_records WHERE " + where).getInt64();
    }

    TempDir dir_;
    std::string path_;
    ManualClock clock_;
    SQLite::Database db_;
    Outbox outbox_;
    FakeBroker broker_;
    std::unique_ptr<SqliteStore> store_;
};

}  // namespace outpost::testing
