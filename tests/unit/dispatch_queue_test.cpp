// The dispatch queue's ordering rule (promise 3: within a key, first deliveries in commit
// order) on the in-memory FakeStore: no SQLite, no broker, no dispatcher loop. The loop's part
// (marking flights, freeing keys when outcomes are written) is played by the test.
#include <gtest/gtest.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "dispatch_queue.hpp"
#include "fake_store.hpp"
#include "outpost/message.hpp"

namespace outpost {
namespace {

using detail::DispatchQueue;
using testing::FakeStore;

constexpr std::int64_t kNow = 1'000'000;

class DispatchQueueTest : public ::testing::Test {
  protected:
    std::int64_t add(std::optional<std::string> key, int priority = 0) {
        Message m = Message::text("t", "x");
        m.key = std::move(key);
        m.priority = priority;
        return store_.add(m, kNow);
    }

    // One pick with `room`; records in `taken_` count as in flight.
    DispatchQueue::Picked pick(std::size_t room, std::int64_t now = kNow,
                               std::int64_t suspect = 0) {
        DispatchQueue::Picked out;
        queue_.pick(
            store_, now, room, [this](std::int64_t id) { return taken_.count(id) != 0; }, suspect,
            out);
        for (const PendingRef& r : out.send) {
            taken_.insert(r.id);
        }
        return out;
    }

    static std::vector<std::int64_t> ids(const std::vector<PendingRef>& refs) {
        std::vector<std::int64_t> out;
        for (const PendingRef& r : refs) {
            out.push_back(r.id);
        }
        return out;
    }

    // The loop's part once `r`'s outcome (delivered) is written.
    void done(const PendingRef& r) {
        store_.apply({Outcome{Outcome::Kind::delivered, r.id, 0, 0, "", kNow}}, false);
        taken_.erase(r.id);
        if (r.key) {
            queue_.free(*r.key);
        }
    }

    FakeStore store_;
    DispatchQueue queue_{8};
    std::set<std::int64_t> taken_;
};

TEST_F(DispatchQueueTest, OneRecordPerKeyAtATimeInCommitOrder) {
    const auto a1 = add("a"), a2 = add("a"), b1 = add("b"), a3 = add("a"), n1 = add(std::nullopt);
    auto p = pick(10);
    EXPECT_EQ(ids(p.send), (std::vector<std::int64_t>{a1, b1, n1}));
    EXPECT_TRUE(ids(pick(10).send).empty()) << "a and b are busy";
    done(p.send[0]);  // a1 written: a's next goes, by its head
    auto q = pick(10);
    EXPECT_EQ(ids(q.send), (std::vector<std::int64_t>{a2}));
    done(q.send[0]);
    done(p.send[1]);
    EXPECT_EQ(ids(pick(10).send), (std::vector<std::int64_t>{a3}));
}

TEST_F(DispatchQueueTest, RoomAtOneGivesOneAndAtZeroNone) {
    add("a");
    add("b");
    EXPECT_TRUE(pick(0).send.empty());
    EXPECT_EQ(pick(1).send.size(), 1u);
    EXPECT_EQ(pick(1).send.size(), 1u);
    EXPECT_TRUE(pick(1).send.empty());
}

TEST_F(DispatchQueueTest, AWaitingHeadHoldsItsKeyAndNotTheOthers) {
    const auto a1 = add("a");
    const auto a2 = add("a");
    const auto b1 = add("b");
    auto p = pick(1);
    ASSERT_EQ(ids(p.send), (std::vector<std::int64_t>{a1}));
    // a1 failed: it waits 5 s, and a2 behind it.
    PendingRef r = p.send[0];
    taken_.erase(r.id);
    queue_.release(*r.key);
    r.attempts = 1;
    r.next_attempt_at = kNow + 5000;
    queue_.wait_for(r, r.next_attempt_at);
    EXPECT_EQ(queue_.next_due(), kNow + 5000);
    EXPECT_EQ(ids(pick(10).send), (std::vector<std::int64_t>{b1}));
    EXPECT_TRUE(ids(pick(10, kNow + 4999).send).empty()) << "a2 never overtakes a1";
    EXPECT_EQ(ids(pick(10, kNow + 5000).send), (std::vector<std::int64_t>{a1}));
    (void)a2;
}

TEST_F(DispatchQueueTest, OneKeysBacklogDoesNotHoldBackTheOthers) {
    add("a");
    for (int i = 0; i < 2000; ++i) {
        add("a");  // a's backlog, ahead of b in dispatch order
    }
    const auto b1 = add("b");
    std::vector<std::int64_t> sent;
    for (int i = 0; i < 20 && queue_.has_more(kNow); ++i) {
        for (std::int64_t id : ids(pick(8).send)) {
            sent.push_back(id);
        }
    }
    EXPECT_EQ(sent, (std::vector<std::int64_t>{1, b1})) << "a's head, then b past a's backlog";
    EXPECT_FALSE(queue_.has_more(kNow));
}

TEST_F(DispatchQueueTest, AnExpiredRecordIsHandedBackAsExpiredWithItsKeyBusy) {
    Message m = Message::text("t", "x");
    m.key = "a";
    m.ttl = std::chrono::milliseconds(10);
    const auto a1 = store_.add(m, kNow);
    const auto a2 = add("a");
    auto p = pick(10, kNow + 10);
    EXPECT_TRUE(p.send.empty());
    EXPECT_EQ(ids(p.expired), (std::vector<std::int64_t>{a1}));
    EXPECT_TRUE(pick(10, kNow + 10).send.empty()) << "a2 waits for a1's outcome";
    // The loop writes the outcome, then frees the key.
    store_.apply({Outcome{Outcome::Kind::expired, a1, 0, 0, "ttl passed", kNow + 10}}, false);
    queue_.free("a");
    EXPECT_EQ(ids(pick(10, kNow + 10).send), (std::vector<std::int64_t>{a2}));
}

TEST_F(DispatchQueueTest, TheSuspectIsHeldNotSentAndItsKeyWaits) {
    const auto a1 = add("a");
    add("a");
    const auto b1 = add("b");
    auto p = pick(10, kNow, /*suspect=*/a1);
    EXPECT_EQ(ids(p.send), (std::vector<std::int64_t>{b1}));
    ASSERT_TRUE(p.held);
    EXPECT_EQ(p.held->id, a1);
    EXPECT_TRUE(pick(10, kNow, a1).send.empty());
}

TEST_F(DispatchQueueTest, AStoreThatThrowsMidPickLeavesWhatWasPickedInTheOutput) {
    add("a");
    const auto b1 = add("b");
    auto p = pick(1);
    ASSERT_EQ(p.send.size(), 1u);
    done(p.send[0]);  // a is freed: the next pick asks for a's head first
    store_.fail(FakeStore::Op::key_head);
    DispatchQueue::Picked out;
    EXPECT_THROW(queue_.pick(
                     store_, kNow, 10, [](std::int64_t) { return false; }, 0, out),
                 StorageError);
    EXPECT_TRUE(out.send.empty());
    // The caller resets the queue after a failed step; the next pick finds b.
    queue_.reset();
    EXPECT_EQ(ids(pick(10).send), (std::vector<std::int64_t>{b1}));
}

TEST_F(DispatchQueueTest, AHigherPriorityArrivalBehindThePassIsFound) {
    for (int i = 0; i < 5; ++i) {
        add(std::nullopt, 0);
    }
    EXPECT_EQ(pick(2).send.size(), 2u);  // the pass is inside priority 0
    const auto urgent = add(std::nullopt, 9);
    queue_.note_arrivals();
    auto p = pick(1);
    EXPECT_EQ(ids(p.send), (std::vector<std::int64_t>{urgent}));
}

}  // namespace
}  // namespace outpost
