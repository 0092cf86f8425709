// detail::PublishLedger (src/mqtt/publish_ledger.hpp), built from its source alone, without paho
// or the rest of the library: the exactly-once rule a second broker implementation would reuse.
#include "publish_ledger.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace outpost::detail {
namespace {

TEST(PublishLedger, AnEntryIsTakenOnceAndItsCallbackCalledByTheTaker) {
    PublishLedger ledger;
    std::vector<std::string> calls;
    const auto seq =
        ledger.add([&](const PublishResult& r) { calls.push_back(r.reason); }, 1, true);
    EXPECT_NE(seq, 0u);
    EXPECT_FALSE(ledger.empty());
    EXPECT_EQ(ledger.qos_of(seq), 1);

    auto entry = ledger.take(seq);
    ASSERT_TRUE(entry.has_value());
    EXPECT_TRUE(entry->sent);
    EXPECT_TRUE(ledger.empty());
    EXPECT_FALSE(ledger.take(seq).has_value()) << "a late or second answer finds nothing";
    EXPECT_FALSE(ledger.qos_of(seq).has_value());
    EXPECT_FALSE(ledger.mark_sent(seq));

    PublishLedger::complete(*entry, PublishResult::lost("gone"));
    EXPECT_EQ(calls, std::vector<std::string>{"gone"});
}

TEST(PublishLedger, SequenceNumbersIncreaseAndMarkSentFlipsTheFlag) {
    PublishLedger ledger;
    const auto a = ledger.add({}, 0, false);
    const auto b = ledger.add({}, 2, false);
    EXPECT_LT(a, b);
    EXPECT_TRUE(ledger.mark_sent(b));
    EXPECT_FALSE(ledger.take(a)->sent);
    EXPECT_TRUE(ledger.take(b)->sent);
    PublishLedger::Entry none;
    PublishLedger::complete(none, PublishResult::delivered_ok());  // no callback: nothing to call
}

TEST(PublishLedger, TakeAllCompletesInPublishOrderAndSurvivesAThrowingCallback) {
    PublishLedger ledger;
    std::vector<int> order;
    for (int i = 0; i < 50; ++i) {
        ledger.add(
            [&order, i](const PublishResult&) {
                order.push_back(i);
                if (i == 3) {
                    throw std::runtime_error("a caller's callback throws");
                }
            },
            1, true);
    }
    auto batch = ledger.take_all();
    EXPECT_TRUE(ledger.empty());
    EXPECT_EQ(batch.size(), 50u);
    PublishLedger::complete_all(batch, PublishResult::lost("connection lost"));
    ASSERT_EQ(order.size(), 50u);
    for (int i = 0; i < 50; ++i) {
        EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
    }
    EXPECT_TRUE(ledger.take_all().empty());
}

}  // namespace
}  // namespace outpost::detail
