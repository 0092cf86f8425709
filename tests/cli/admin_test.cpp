// outpost::Admin directly: paging boundaries, filters, counts, purge and read-only rules.
#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "outpost/admin.hpp"
#include "outpost/outpost.hpp"
#include "testkit/temp_dir.hpp"

namespace outpost::testing {
namespace {

class AdminTest : public ::testing::Test {
  protected:
    AdminTest() : path_(dir_.file("app.db")) {
        SQLite::Database db(path_, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        Outbox outbox(db);
        SQLite::Transaction tx(db);
        for (int i = 0; i < 23; ++i) {
            Message m = Message::text(i % 2 ? "odd/" + std::to_string(i) : "even/x", "p");
            if (i % 3 == 0) {
                m.key = "k3";
            }
            ids_.push_back(outbox.add(m));
        }
        tx.commit();
    }

    std::vector<std::int64_t> visit(const RecordFilter& f, std::size_t page_size) {
        AdminOptions o;
        o.page_size = page_size;
        Admin admin(path_, o);
        std::vector<std::int64_t> seen;
        admin.for_each(f, [&](const Record& r) {
            seen.push_back(r.id);
            return true;
        });
        return seen;
    }

    TempDir dir_;
    std::string path_;
    std::vector<std::int64_t> ids_;
};

TEST_F(AdminTest, PagingGivesTheSameRecordsForAnyPageSize) {
    RecordFilter odd;
    odd.topic_prefix = "odd/";
    RecordFilter keyed;
    keyed.key = "k3";
    RecordFilter limited;
    limited.limit = 7;
    limited.after_id = ids_[2];
    for (const RecordFilter& f : {RecordFilter{}, odd, keyed, limited}) {
        const auto reference = visit(f, 1000);
        for (std::size_t page : {1u, 2u, 3u, 7u, 22u, 23u, 24u}) {
            EXPECT_EQ(visit(f, page), reference) << "page size " << page;
        }
    }
    EXPECT_EQ(visit({}, 5).size(), 23u);
    EXPECT_EQ(visit(odd, 4).size(), 11u);
    EXPECT_EQ(visit(keyed, 2).size(), 8u);
    EXPECT_EQ(visit(limited, 3), (std::vector<std::int64_t>(ids_.begin() + 3, ids_.begin() + 10)));
}

TEST_F(AdminTest, VisitorStopsEarly) {
    Admin admin(path_);
    std::size_t calls = 0;
    const std::size_t n = admin.for_each({}, [&](const Record&) { return ++calls < 4; });
    EXPECT_EQ(n, 4u);
    EXPECT_EQ(calls, 4u);
}

TEST_F(AdminTest, CountsAgree) {
    Admin admin(path_);
    EXPECT_EQ(admin.count(RecordState::pending), 23u);
    EXPECT_EQ(admin.count(RecordState::dead), 0u);
    const StoreCounts c = admin.counts();
    EXPECT_EQ(c.pending, 23u);
    EXPECT_EQ(c.pending_bytes, 23u);
    ASSERT_TRUE(c.oldest_pending_at);
}

TEST_F(AdminTest, PurgeNeverTakesPendingAndReadOnlyNeverWrites) {
    Admin read_only(path_);
    EXPECT_THROW(read_only.purge(RecordState::pending, std::nullopt, true), InvalidConfig);
    EXPECT_THROW(read_only.purge(RecordState::dead, std::nullopt, false), StorageError);
    EXPECT_THROW(read_only.add(Message::text("t", "x")), StorageError);
    EXPECT_THROW(read_only.requeue_all_dead(), StorageError);
    EXPECT_EQ(read_only.purge(RecordState::dead, std::nullopt, true), 0u);
    AdminOptions rw;
    rw.read_only = false;
    Admin writer(path_, rw);
    EXPECT_THROW(writer.purge(RecordState::pending, std::nullopt, false), InvalidConfig);
    EXPECT_THROW(writer.purge(RecordState::dead, std::chrono::milliseconds(-1), false),
                 InvalidConfig);
    const std::int64_t id = writer.add(Message::text("t", "x"));
    EXPECT_EQ(id, ids_.back() + 1);
    EXPECT_THROW(writer.requeue(id), NotFound);  // pending, not dead
    EXPECT_EQ(read_only.count(RecordState::pending), 24u);
}

TEST_F(AdminTest, OpeningNeverCreatesAFile) {
    const std::string missing = dir_.file("missing.db");
    AdminOptions rw;
    rw.read_only = false;
    EXPECT_THROW(Admin(missing, rw), StorageError);
    EXPECT_THROW(Admin::check(missing), StorageError);
    EXPECT_FALSE(std::filesystem::exists(missing));
    AdminOptions zero;
    zero.page_size = 0;
    EXPECT_THROW(Admin(path_, zero), InvalidConfig);
}

TEST_F(AdminTest, CheckIsCleanOnAFreshFile) {
    const CheckReport r = Admin::check(path_);
    EXPECT_TRUE(r.clean()) << (r.problems.empty() ? "" : r.problems.front());
    EXPECT_TRUE(r.sqlite_ok);
    EXPECT_TRUE(r.integrity_ok);
    EXPECT_EQ(r.schema_version, kSchemaVersion);
}

}  // namespace
}  // namespace outpost::testing
