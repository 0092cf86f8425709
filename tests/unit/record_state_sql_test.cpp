// The state conditions of src/sqlite/record_state_sql.hpp against the text the shipped
// migrations used. SQLite picks a partial index only when a query's WHERE visibly contains the
// index's own condition, and a shipped migration must never change: so each constant must stay
// byte for byte what migrations 1 and 2 wrote, and the schema an Outbox creates must store
// exactly that text.
#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "outpost/outpost.hpp"
#include "record_state_sql.hpp"
#include "testkit/temp_dir.hpp"

using namespace outpost;
using outpost::testing::TempDir;
namespace sql = outpost::detail::sql;
using S = RecordState;

TEST(RecordStateSql, StoredValuesAreThoseFilesHold) {
    EXPECT_EQ(detail::stored_state(S::pending), 0);
    EXPECT_EQ(detail::stored_state(S::delivered), 1);
    EXPECT_EQ(detail::stored_state(S::dead), 2);
    EXPECT_EQ(detail::stored_state(S::expired), 3);
    EXPECT_EQ(detail::state_from_stored(2), S::dead);
}

TEST(RecordStateSql, PredicatesAreTheShippedMigrationsText) {
    // Migration 1
    EXPECT_STREQ(sql::kDispatchIndexWhere.c_str(), "state = 0");
    EXPECT_STREQ(sql::kExpiryIndexWhere.c_str(), "state = 0 AND expires_at IS NOT NULL");
    EXPECT_STREQ(sql::kDoneIndexWhere.c_str(), "state <> 0");
    // Migration 2
    EXPECT_STREQ(sql::kKeyIndexWhere.c_str(), "state = 0 AND msg_key IS NOT NULL");
    EXPECT_STREQ(sql::kRequeuedWhen.c_str(), "OLD.state <> 0 AND NEW.state = 0");
}

TEST(RecordStateSql, QueryConditionsRepeatTheIndexConditions) {
    EXPECT_STREQ(sql::kIsPending.c_str(), "state = 0");
    EXPECT_STREQ(sql::kIsDone.c_str(), "state <> 0");
    EXPECT_STREQ(sql::kInState<S::pending>.c_str(), "state = 0");
    EXPECT_STREQ(sql::kInState<S::delivered>.c_str(), "state <> 0 AND state = 1");
    EXPECT_STREQ(sql::kInState<S::dead>.c_str(), "state <> 0 AND state = 2");
    EXPECT_STREQ(sql::kInState<S::expired>.c_str(), "state <> 0 AND state = 3");
    EXPECT_STREQ(sql::kStateIs<S::dead>.c_str(), "state = 2");
    EXPECT_STREQ(sql::kSetState<S::delivered>.c_str(), "state = 1");
    EXPECT_STREQ(sql::kUnknownState.c_str(), "state NOT IN (0, 1, 2, 3)");
    for (const S s : {S::pending, S::delivered, S::dead, S::expired}) {
        EXPECT_EQ(sql::in_state(s), s == S::pending ? std::string("state = 0")
                                                    : "state <> 0 AND state = " +
                                                          std::to_string(static_cast<int>(s)));
    }
}

TEST(RecordStateSql, TheSchemaStoresTheShippedIndexAndTriggerText) {
    TempDir dir;
    SQLite::Database db(dir.file("schema.db"), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    Outbox create(db);
    const std::vector<std::pair<const char*, std::string>> shipped = {
        {"outpost_records_dispatch",
         "CREATE INDEX outpost_records_dispatch ON outpost_records (priority DESC, id) "
         "WHERE state = 0"},
        {"outpost_records_expiry",
         "CREATE INDEX outpost_records_expiry ON outpost_records (expires_at)\n"
         "    WHERE state = 0 AND expires_at IS NOT NULL"},
        {"outpost_records_done",
         "CREATE INDEX outpost_records_done ON outpost_records (state, done_at) WHERE state <> 0"},
        {"outpost_records_key",
         "CREATE INDEX outpost_records_key ON outpost_records (msg_key, priority DESC, id)\n"
         "    WHERE state = 0 AND msg_key IS NOT NULL"},
        {"outpost_records_requeued",
         "CREATE TRIGGER outpost_records_requeued AFTER UPDATE OF state ON outpost_records\n"
         "    WHEN OLD.state <> 0 AND NEW.state = 0\n"
         "BEGIN\n"
         "    INSERT INTO outpost_meta (name, value) VALUES ('requeues', 1)\n"
         "        ON CONFLICT (name) DO UPDATE SET value = CAST(value AS INTEGER) + 1;\n"
         "END"},
    };
    for (const auto& [name, text] : shipped) {
        SQLite::Statement q(db, "SELECT sql FROM sqlite_master WHERE name = ?");
        q.bind(1, name);
        ASSERT_TRUE(q.executeStep()) << name;
        EXPECT_EQ(q.getColumn(0).getString(), text) << name;
    }
    // And each index's condition is the constant the queries use.
    const std::vector<std::pair<const char*, const char*>> where = {
        {"outpost_records_dispatch", sql::kDispatchIndexWhere.c_str()},
        {"outpost_records_expiry", sql::kExpiryIndexWhere.c_str()},
        {"outpost_records_done", sql::kDoneIndexWhere.c_str()},
        {"outpost_records_key", sql::kKeyIndexWhere.c_str()},
    };
    for (const auto& [name, condition] : where) {
        SQLite::Statement q(db, "SELECT sql FROM sqlite_master WHERE name = ?");
        q.bind(1, name);
        ASSERT_TRUE(q.executeStep()) << name;
        const std::string stored = q.getColumn(0).getString();
        const std::string tail = std::string("WHERE ") + condition;
        ASSERT_GE(stored.size(), tail.size()) << name;
        EXPECT_EQ(stored.substr(stored.size() - tail.size()), tail) << name;
    }
    SQLite::Statement t(db, "SELECT sql FROM sqlite_master WHERE name = 'outpost_records'");
    ASSERT_TRUE(t.executeStep());
    EXPECT_NE(t.getColumn(0).getString().find("    state           INTEGER NOT NULL DEFAULT 0,\n"),
              std::string::npos);
}
