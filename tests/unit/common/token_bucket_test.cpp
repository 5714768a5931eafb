// The token bucket behind every abuse limit (common/server/include/im/server/token_bucket.hpp).
#include "im/server/token_bucket.hpp"

#include <gtest/gtest.h>

namespace im {
namespace {

TEST(TokenBucket, AdmitsTheBurstThenRefusesWithTheTimeUntilTheNextToken) {
    const RateLimit limit{10, 5};  // 10 a second, 5 at once
    TokenBucket b;
    std::int64_t now = 1'000'000;
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(b.take(limit, now)) << i;
    std::uint32_t retry = 0;
    EXPECT_FALSE(b.take(limit, now, &retry));
    EXPECT_EQ(retry, 100u);  // one token every 100 ms
    now += 60;
    EXPECT_FALSE(b.take(limit, now, &retry));
    EXPECT_EQ(retry, 40u);
    now += 40;
    EXPECT_TRUE(b.take(limit, now));
    EXPECT_FALSE(b.take(limit, now, &retry));
}

TEST(TokenBucket, RefillsAtTheRateAndNeverBeyondTheBurst) {
    const RateLimit limit{1000, 20};
    TokenBucket b;
    std::int64_t now = 5;
    int admitted = 0;
    // 2 s at full speed (one attempt every 0.1 ms): the burst plus 1000 a second.
    for (int step = 0; step < 20000; ++step) {
        if (step % 10 == 0) ++now;
        admitted += b.take(limit, now) ? 1 : 0;
    }
    EXPECT_GE(admitted, 2000);
    EXPECT_LE(admitted, 2000 + 20);
    // A long idle time fills the bucket to the burst, not more.
    now += 3'600'000;
    EXPECT_TRUE(b.full(limit, now));
    int burst = 0;
    while (b.take(limit, now)) ++burst;
    EXPECT_EQ(burst, 20);
}

TEST(TokenBucket, ZeroRateMeansUnlimitedAndTimeGoingBackDoesNotRefill) {
    TokenBucket b;
    for (int i = 0; i < 100000; ++i) ASSERT_TRUE(b.take(RateLimit{0, 1}, 7));
    const RateLimit one{1, 1};
    TokenBucket c;
    EXPECT_TRUE(c.take(one, 10'000));
    EXPECT_FALSE(c.take(one, 9'000));  // a clock step back: no tokens from it
    std::uint32_t retry = 0;
    EXPECT_FALSE(c.take(one, 10'500, &retry));
    EXPECT_EQ(retry, 500u);
    EXPECT_TRUE(c.take(one, 11'000));
}

TEST(TokenBucket, ChargeAlwaysTakesAndTheDebtLengthensTheWait) {
    const RateLimit limit{100, 10};  // a token every 10 ms
    TokenBucket b;
    const std::int64_t now = 50'000;
    for (int i = 0; i < 10; ++i) EXPECT_EQ(b.charge(limit, now), 0u) << i;
    EXPECT_EQ(b.charge(limit, now), 20u);  // one in debt: 10 ms to pay it, 10 more for a token
    for (int i = 0; i < 99; ++i) b.charge(limit, now);
    EXPECT_EQ(b.charge(limit, now), 1020u);  // 101 in debt, then one token
    // take() refuses while in debt, and the refill pays the debt first.
    std::uint32_t retry = 0;
    EXPECT_FALSE(b.take(limit, now + 1000, &retry));
    EXPECT_EQ(retry, 20u);
    EXPECT_TRUE(b.take(limit, now + 1020));
    EXPECT_EQ(TokenBucket().charge(RateLimit{0, 1}, now), 0u);  // unlimited
}

}  // namespace
}  // namespace im
