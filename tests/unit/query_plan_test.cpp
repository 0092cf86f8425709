// The plans SQLite picks for the library's statements that select records by state, on the
// schema an Outbox creates: none may scan the whole outpost_records table. (Issue 10, item 8:
// purge_delivered's "WHERE state = 1" could not use the partial index "WHERE state <> 0" and
// scanned a million-row table under the write lock once a minute.)
#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "outpost/outpost.hpp"
#include "queries.hpp"
#include "testkit/temp_dir.hpp"

using namespace outpost;
using outpost::testing::TempDir;
namespace sql = outpost::detail::sql;

namespace {

// The detail column of EXPLAIN QUERY PLAN, one line per row.
std::vector<std::string> plan_of(SQLite::Database& db, const std::string& sql) {
    SQLite::Statement q(db, "EXPLAIN QUERY PLAN " + sql);
    std::vector<std::string> rows;
    while (q.executeStep()) {
        rows.push_back(q.getColumn(3).getString());
    }
    return rows;
}

std::string joined(const std::vector<std::string>& rows) {
    std::string out;
    for (const std::string& r : rows) {
        out += "  " + r + "\n";
    }
    return out;
}

// A full scan of the table itself ("SCAN outpost_records" with no index named).
bool scans_the_table(const std::vector<std::string>& rows) {
    for (const std::string& r : rows) {
        if (r.rfind("SCAN outpost_records", 0) == 0 && r.find("INDEX") == std::string::npos) {
            return true;
        }
    }
    return false;
}

class QueryPlan : public ::testing::Test {
  protected:
    QueryPlan() : db_(dir_.file("plan.db"), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE) {
        Outbox create(db_);  // the schema exactly as the library makes it
    }
    TempDir dir_;
    SQLite::Database db_;
};

}  // namespace

TEST_F(QueryPlan, PurgeOfDeliveredRecordsSeeksTheDoneIndex) {
    const auto rows = plan_of(db_, sql::kPurgeDelivered);
    ASSERT_EQ(rows.size(), 1u) << joined(rows);
    EXPECT_EQ(rows[0].rfind("SEARCH outpost_records USING", 0), 0u) << joined(rows);
    EXPECT_NE(rows[0].find("outpost_records_done (state=? AND done_at<?)"), std::string::npos)
        << joined(rows);
}

TEST_F(QueryPlan, NoStatementThatSelectsByStateScansTheTable) {
    const std::vector<std::pair<const char*, const char*>> statements = {
        {"kPurgeDelivered", sql::kPurgeDelivered},
        {"kExpireDue", sql::kExpireDue},
        {"kNextExpiry", sql::kNextExpiry},
        {"kExistsPending", sql::kExistsPending},
        {"kClampRetryTimes", sql::kClampRetryTimes},
        {"kCountPending", sql::kCountPending},
        {"kCountPendingAndBytes", sql::kCountPendingAndBytes},
        {"kLowestPendingPriority", sql::kLowestPendingPriority},
        {"kDropOldest", sql::kDropOldest},
        {"kRequeue", sql::kRequeue},
        {"kRequeueAllDead", sql::kRequeueAllDead},
        {"kKeyHead", sql::kKeyHead},
        {"kArrivals", sql::kArrivals},
    };
    for (const auto& [name, text] : statements) {
        const auto rows = plan_of(db_, text);
        EXPECT_FALSE(scans_the_table(rows)) << name << " scans outpost_records:\n" << joined(rows);
    }
}

TEST_F(QueryPlan, AKeysHeadIsOneSeekOnTheKeyIndexAndArrivalsARowidRange) {
    const auto head = plan_of(db_, sql::kKeyHead);
    ASSERT_EQ(head.size(), 1u) << joined(head);
    EXPECT_NE(head[0].find("SEARCH outpost_records USING INDEX outpost_records_key (msg_key=?)"),
              std::string::npos)
        << joined(head);
    const auto arrivals = plan_of(db_, sql::kArrivals);
    ASSERT_FALSE(arrivals.empty());
    EXPECT_NE(arrivals[0].find("SEARCH outpost_records USING INTEGER PRIMARY KEY (rowid>? AND "
                               "rowid<?)"),
              std::string::npos)
        << joined(arrivals);
}

TEST_F(QueryPlan, TheCheckRecognisesAScan) {
    // The predicate above, on the statement of issue 10 as it was: it must say "scan".
    EXPECT_TRUE(scans_the_table(
        plan_of(db_, "DELETE FROM outpost_records WHERE state = 1 AND done_at < ?")));
}
