// The oracle is what every fault scenario trusts: each count it reports is shown to move here,
// on a real file written through outpost and read back by plain SQLite.
#include <gtest/gtest.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include <outpost/outbox.hpp>

#include "oracle.hpp"
#include "testkit/temp_dir.hpp"

namespace outpost::faults {
namespace {

struct App {
    testing::TempDir dir;
    std::string path = dir.file("app.db");
    SQLite::Database db{path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE};
    Outbox outbox{db};
    std::mt19937_64 rng{7};
    App() { db.exec(kAppSchema); }
};

TEST(FaultOracle, CommittedIsReadBackAndRolledBackIsNot) {
    App app;
    const Event a = add_event(app.db, app.outbox, "k", false, app.rng);
    const Event r = add_event(app.db, app.outbox, "k", true, app.rng);
    const Event b = add_event(app.db, app.outbox, "k", false, app.rng);
    EXPECT_EQ(a.seq, 1);
    EXPECT_EQ(r.seq, 2);
    EXPECT_EQ(b.seq, 2);  // the rolled-back seq is taken again, with another uid
    EXPECT_NE(r.uid, b.uid);
    EXPECT_EQ(committed_events(app.path), (std::vector<Event>{a, b}));
    const auto states = outbox_states(app.path);
    EXPECT_EQ(states.size(), 2u);
    EXPECT_EQ(states.count(r.uid), 0u);
    EXPECT_EQ(integrity_check(app.path), "ok");
}

TEST(FaultOracle, EachViolationIsCounted) {
    const std::vector<Event> committed{{"000000000000000a", "k", 1},
                                       {"000000000000000b", "k", 2},
                                       {"000000000000000c", "k", 3},
                                       {"000000000000000d", "j", 1}};
    const auto p = [&](std::size_t i) { return payload_of(committed[i]); };

    Tally clean = judge(committed, {"probe", p(0), p(3), p(1), p(2)}, {});
    EXPECT_TRUE(clean.sound()) << clean.line("clean");
    EXPECT_EQ(clean.line("clean"),
              "scenario clean: committed 4, lost 0, rolled-back sent 0, duplicated 0, "
              "reordered 0, stuck 0");

    Tally dup = judge(committed, {p(0), p(1), p(0), p(1), p(2), p(3)}, {});
    EXPECT_TRUE(dup.sound());
    EXPECT_EQ(dup.duplicated, 2u);  // a redelivery of an earlier seq is a duplicate, not disorder

    Tally lost = judge(committed, {p(0), p(2), p(3)}, {});
    EXPECT_EQ(lost.lost, 1u);
    EXPECT_EQ(lost.reordered, 0u);

    Tally stuck = judge(committed, {p(0), p(3)}, {{committed[1].uid, 0}, {committed[2].uid, 2}});
    EXPECT_EQ(stuck.stuck, 2u);
    EXPECT_EQ(stuck.lost, 0u);

    Tally sent = judge(committed, {p(0), "00000000000000ff k 2", p(1), p(2), p(3)}, {});
    EXPECT_EQ(sent.rolled_back_sent, 1u);
    // The same uid with another seq is not the committed event either.
    Tally forged = judge(committed, {p(0), "000000000000000b k 9", p(1), p(2), p(3)}, {});
    EXPECT_EQ(forged.rolled_back_sent, 1u);

    Tally disorder = judge(committed, {p(1), p(0), p(2), p(3)}, {});
    EXPECT_EQ(disorder.reordered, 1u);
    EXPECT_FALSE(disorder.sound());
}

TEST(FaultOracle, PayloadsRoundTripAndJunkIsNoEvent) {
    const Event e{"0123456789abcdef", "valve-7", 42};
    EXPECT_EQ(parse_payload(payload_of(e)), e);
    EXPECT_FALSE(parse_payload("probe 1"));
    EXPECT_FALSE(parse_payload("0123456789abcdef k"));
    EXPECT_FALSE(parse_payload("0123456789abcdef k 4x"));
}

TEST(FaultOracle, IntegrityCheckNamesAFileThatIsNoDatabase) {
    testing::TempDir dir;
    const std::string path = dir.file("junk.db");
    {
        std::FILE* f = std::fopen(path.c_str(), "wb");
        std::fputs("this is not a database, not even close; padding padding padding padding", f);
        std::fclose(f);
    }
    EXPECT_NE(integrity_check(path), "ok");
}

}  // namespace
}  // namespace outpost::faults
