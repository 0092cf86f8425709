#include <gtest/gtest.h>

#include "outpost/error.hpp"
#include "backoff.hpp"
#include "outpost/retry_policy.hpp"

using namespace std::chrono_literals;
using outpost::RetryPolicy;

TEST(RetryPolicy, BackoffGrowsExponentiallyUpToTheCap) {
    RetryPolicy p;
    p.initial_backoff = 100ms;
    p.max_backoff = 1s;
    p.multiplier = 2.0;
    p.jitter = 0;
    const struct {
        std::uint32_t attempts;
        std::chrono::milliseconds expected;
    } table[] = {{1, 100ms}, {2, 200ms}, {3, 400ms}, {4, 800ms}, {5, 1s}, {6, 1s}, {1000, 1s}};
    for (const auto& row : table) {
        EXPECT_EQ(p.backoff(row.attempts, 0.5), row.expected) << "attempts " << row.attempts;
    }
}

TEST(RetryPolicy, JitterScalesTheDelayDownByAtMostTheFraction) {
    RetryPolicy p;
    p.initial_backoff = 1000ms;
    p.jitter = 0.2;
    EXPECT_EQ(p.backoff(1, 0.0), 1000ms);
    EXPECT_EQ(p.backoff(1, 0.5), 900ms);
    EXPECT_EQ(p.backoff(1, 1.0), 800ms);
    EXPECT_EQ(p.backoff(1, 7.0), 800ms);  // samples are clamped to [0, 1]
}

TEST(RetryPolicy, ExhaustedAtTheCapAndNeverWhenUnlimited) {
    RetryPolicy p;
    p.max_attempts = 3;
    EXPECT_FALSE(p.exhausted(2));
    EXPECT_TRUE(p.exhausted(3));
    EXPECT_EQ(p.next_attempt_at(3, 1000, 0), std::nullopt);
    p.jitter = 0;
    EXPECT_EQ(p.next_attempt_at(2, 1000, 0), 1000 + p.backoff(2, 0).count());
    p.max_attempts = 0;
    EXPECT_FALSE(p.exhausted(1'000'000));
}

TEST(RetryPolicy, HugeAttemptCountsDoNotOverflow) {
    RetryPolicy p;
    p.multiplier = 10.0;
    EXPECT_EQ(p.backoff(4'000'000'000u, 0), p.max_backoff);
}

TEST(RetryPolicy, ValidateNamesTheBadField) {
    RetryPolicy p;
    p.multiplier = 0.5;
    try {
        p.validate();
        FAIL() << "expected InvalidConfig";
    } catch (const outpost::InvalidConfig& e) {
        EXPECT_NE(std::string(e.what()).find("multiplier"), std::string::npos);
    }
    p = {};
    p.jitter = 1.5;
    EXPECT_THROW(p.validate(), outpost::InvalidConfig);
    p = {};
    p.max_backoff = 1ms;
    EXPECT_THROW(p.validate(), outpost::InvalidConfig);
    EXPECT_NO_THROW(RetryPolicy{}.validate());
}

// The one backoff type behind RetryPolicy and the dispatcher's reconnects (jitter 0.5 there: a
// fleet that lost the same broker spreads over the upper half of each delay).
TEST(Backoff, DoublesCapsAndJittersDownFromTheFullDelay) {
    const outpost::detail::Backoff b{500ms, 8000ms, 2.0, 0.5};
    EXPECT_EQ(b.delay(0, 0.0), 500ms);  // no failure yet counts as the first
    EXPECT_EQ(b.delay(1, 0.0), 500ms);
    EXPECT_EQ(b.delay(3, 0.0), 2000ms);
    EXPECT_EQ(b.delay(3, 1.0), 1000ms);
    EXPECT_EQ(b.delay(3, 0.25), 1750ms);
    EXPECT_EQ(b.delay(5, 0.0), 8000ms);  // 500 x 16 capped
    EXPECT_EQ(b.delay(4'000'000'000u, 0.0), 8000ms);
    EXPECT_EQ(b.delay(3, -1.0), 2000ms);  // samples clamped to [0, 1]
    EXPECT_EQ(b.delay(3, 2.0), 1000ms);
    const outpost::detail::Backoff none{1ms, 1ms, 2.0, 0.5};
    EXPECT_EQ(none.delay(1, 1.0), 1ms);  // rounded, never 0: no spin at a 1 ms setting
}
