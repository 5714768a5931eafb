// The wire formats of user-status: session entries (us:<user> hash values) and kick messages.
#include <gtest/gtest.h>

#include <limits>

#include "im/user_status/user_status.hpp"

namespace im::user_status {
namespace {

constexpr auto kMax = std::numeric_limits<std::uint64_t>::max();

TEST(SessionEntryCodec, RoundTrips) {
    const SessionEntry e{"laptop", "conn-1", 17, 123456789012345ULL, 42};
    const auto v = UserStatus::encode_entry(e);
    EXPECT_EQ(v, "conn-1|17|123456789012345|42");
    const auto back = UserStatus::parse_entry("laptop", v);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->device_id, "laptop");
    EXPECT_EQ(back->connector_id, "conn-1");
    EXPECT_EQ(back->connector_epoch, 17u);
    EXPECT_EQ(back->login_epoch, 123456789012345ULL);
    EXPECT_EQ(back->session_id, 42u);
}

TEST(SessionEntryCodec, ExtremesAndZeros) {
    const SessionEntry e{"d", "c", kMax, 0, kMax};
    const auto back = UserStatus::parse_entry("d", UserStatus::encode_entry(e));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->connector_epoch, kMax);
    EXPECT_EQ(back->login_epoch, 0u);
    EXPECT_EQ(back->session_id, kMax);
}

TEST(SessionEntryCodec, ConnectorIdWithSeparatorParsesFromTheRight) {
    const SessionEntry e{"d", "host|9000|x", 1, 2, 3};
    const auto back = UserStatus::parse_entry("d", UserStatus::encode_entry(e));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->connector_id, "host|9000|x");
    EXPECT_EQ(back->connector_epoch, 1u);
    EXPECT_EQ(back->login_epoch, 2u);
    EXPECT_EQ(back->session_id, 3u);
}

TEST(SessionEntryCodec, RejectsGarbage) {
    for (const char* bad : {"", "|", "|||", "c|1|2", "|1|2|3", "c|1|2|", "c||2|3", "c|x|2|3",
                            "c|1|-2|3", "c|1|+2|3", "c|1|2|3 ", "c| 1|2|3",
                            "c|1|2|18446744073709551616", "c|1|2|0x10", "no separators at all"}) {
        EXPECT_FALSE(UserStatus::parse_entry("d", bad)) << bad;
    }
    EXPECT_FALSE(UserStatus::parse_entry("d", std::string("c|1|2|3\0", 8)));
}

TEST(KickCodec, RoundTrips) {
    const KickRequest k{7, 99, "logged_out"};
    const auto payload = UserStatus::encode_kick(k);
    EXPECT_EQ(payload, "k1|7|99|0|logged_out");
    const auto back = UserStatus::parse_kick(payload);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->user_id, 7u);
    EXPECT_EQ(back->session_id, 99u);
    EXPECT_EQ(back->login_epoch, 0u);
    EXPECT_EQ(back->reason, "logged_out");

    const KickRequest targeted{7, 99, "replaced", 123456789012345ULL};
    EXPECT_EQ(UserStatus::encode_kick(targeted), "k1|7|99|123456789012345|replaced");
    const auto t = UserStatus::parse_kick(UserStatus::encode_kick(targeted));
    ASSERT_TRUE(t);
    EXPECT_EQ(t->login_epoch, 123456789012345ULL);
    EXPECT_EQ(t->reason, "replaced");
}

TEST(KickCodec, AllSessionsEmptyReasonAndSeparatorsInReason) {
    auto all = UserStatus::parse_kick(UserStatus::encode_kick({kMax, 0, "", kMax}));
    ASSERT_TRUE(all);
    EXPECT_EQ(all->user_id, kMax);
    EXPECT_EQ(all->session_id, 0u);
    EXPECT_EQ(all->login_epoch, kMax);
    EXPECT_EQ(all->reason, "");
    auto piped = UserStatus::parse_kick(UserStatus::encode_kick({1, 2, "a|b|c"}));
    ASSERT_TRUE(piped);
    EXPECT_EQ(piped->reason, "a|b|c");
    EXPECT_EQ(piped->login_epoch, 0u);
    auto utf8 = UserStatus::parse_kick(UserStatus::encode_kick({1, 2, "abgemeldet \xc3\xa4"}));
    ASSERT_TRUE(utf8);
    EXPECT_EQ(utf8->reason, "abgemeldet \xc3\xa4");
}

TEST(KickCodec, RejectsGarbage) {
    for (const char* bad : {"",
                            "k1",
                            "k1|",
                            "k1||",
                            "k1|||",
                            "k1|1",
                            "k1|1|",
                            "k1|1|2",
                            "k1|1|2|",
                            "k1|1|2|r",
                            "k2|1|2|0|r",
                            "K1|1|2|0|r",
                            "1|2|0|r",
                            "k1|0|2|0|r",
                            "k1|x|2|0|r",
                            "k1|1|y|0|r",
                            "k1|1|2|z|r",
                            "k1|1|2||r",
                            "k1|-1|2|0|r",
                            "k1|1|-2|0|r",
                            "k1|1|2|-3|r",
                            "k1| 1|2|0|r",
                            "k1|1|2 |0|r",
                            "k1|18446744073709551616|2|0|r",
                            "k1|1|2|18446744073709551616|r",
                            "k1|1|2|0|line\nbreak",
                            "k1|1|2|0|tab\tx",
                            "k1|1|2|0|del\x7f",
                            "garbage",
                            "\xff\xfe\xfd"}) {
        EXPECT_FALSE(UserStatus::parse_kick(bad)) << bad;
    }
    EXPECT_FALSE(UserStatus::parse_kick(std::string("k1|1|2|0|nul\0x", 14)));
    EXPECT_FALSE(UserStatus::parse_kick("k1|1|2|0|" + std::string(257, 'r')));
    EXPECT_TRUE(UserStatus::parse_kick("k1|1|2|0|" + std::string(256, 'r')));
}

TEST(KickCodec, ChannelName) {
    // kick_channel() needs no connection; the RedisConnection connects lazily.
    redis::RedisConnection unused(redis::RedisConfig{});
    EXPECT_EQ(UserStatus(unused, "im:").kick_channel(), "im:kick");
    EXPECT_EQ(UserStatus(unused, "im:t123:").kick_channel(), "im:t123:kick");
}

}  // namespace
}  // namespace im::user_status
