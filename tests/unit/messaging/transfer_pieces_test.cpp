// Pure pieces of the transfer: ids and shards, the session directory, statement builders, caches.
#include <gtest/gtest.h>

#include <set>
#include <unordered_set>

#include "cache.hpp"
#include "im/wire/ids.hpp"
#include "message_writer.hpp"
#include "session_directory.hpp"
#include "im/server/sql_batch.hpp"

namespace im::transfer {
namespace {

TEST(Ids, ConversationIdIsSymmetricAndDerivable) {
    EXPECT_EQ(conversation_id(5, 7), conversation_id(7, 5));
    EXPECT_EQ(conversation_id(5, 7), (5ull << 32) | 7);
    EXPECT_EQ(conversation_low(conversation_id(9, 3)), 3u);
    EXPECT_EQ(conversation_high(conversation_id(9, 3)), 9u);
    EXPECT_EQ(conversation_peer(conversation_id(9, 3), 3), 9u);
    EXPECT_EQ(conversation_peer(conversation_id(9, 3), 4), 0u);
    EXPECT_EQ(conversation_id(5, 5), 0u);
    EXPECT_EQ(conversation_id(0, 5), 0u);
    EXPECT_EQ(conversation_id(5, 1ull << 31), 0u);
    EXPECT_TRUE(is_participant(conversation_id(1, 2), 2));
    EXPECT_FALSE(is_participant(conversation_id(1, 2), 3));
    EXPECT_FALSE(valid_conversation_id((7ull << 32) | 5)) << "low must be below high";
}

TEST(Ids, ShardsSpreadEvenly) {
    std::vector<int> counts(kShardCount, 0);
    for (std::uint64_t a = 1; a <= 300; ++a) {
        for (std::uint64_t b = a + 1; b <= a + 100; ++b) ++counts[shard_of(conversation_id(a, b))];
    }
    const auto [mn, mx] = std::minmax_element(counts.begin(), counts.end());
    EXPECT_GT(*mn, 0);
    EXPECT_LT(*mx, 3 * 30000 / static_cast<int>(kShardCount) + 20);
}

internal::SessionRef ref(std::uint64_t user, std::uint64_t epoch) {
    internal::SessionRef r;
    r.set_user_id(user);
    r.set_login_epoch(epoch);
    r.set_device_id("d");
    return r;
}

TEST(SessionDirectory, PresenceFollowsFirstAndLastSession) {
    SessionDirectory d;
    auto c = d.add(1, ref(10, 100));
    ASSERT_EQ(c.size(), 1u);
    EXPECT_TRUE(c[0].online);
    EXPECT_TRUE(d.add(2, ref(10, 101)).empty()) << "second device on another link: no change";
    EXPECT_TRUE(d.add(1, ref(10, 100)).empty()) << "duplicate announcement is ignored";
    std::set<std::uint64_t> links;
    d.for_each_link(10, [&](std::uint64_t l) { links.insert(l); });
    EXPECT_EQ(links, (std::set<std::uint64_t>{1, 2}));
    EXPECT_TRUE(d.remove(1, ref(10, 100)).empty());
    auto off = d.remove(2, ref(10, 101));
    ASSERT_EQ(off.size(), 1u);
    EXPECT_FALSE(off[0].online);
    EXPECT_FALSE(d.online(10));
    EXPECT_EQ(d.sessions(), 0u);
}

TEST(SessionDirectory, LinkLossRemovesItsSessionsOnly) {
    SessionDirectory d;
    d.add(1, ref(10, 100));
    d.add(1, ref(11, 200));
    d.add(2, ref(11, 201));
    auto gone = d.remove_link(1);
    ASSERT_EQ(gone.size(), 1u);
    EXPECT_EQ(gone[0].user, 10u);
    EXPECT_TRUE(d.online(11));
    EXPECT_EQ(d.sessions(), 1u);
}

TEST(SessionDirectory, ReplaceLinkReportsOnlyNetChanges) {
    SessionDirectory d;
    d.add(1, ref(10, 100));
    d.add(1, ref(11, 200));
    auto changes = d.replace_link(1, {ref(11, 200), ref(12, 300)});
    std::map<std::uint64_t, bool> m;
    for (auto c : changes) m[c.user] = c.online;
    EXPECT_EQ(m, (std::map<std::uint64_t, bool>{{10, false}, {12, true}}));
}

TEST(SqlBatch, StatementsAndChunks) {
    EXPECT_EQ(sql_batch::placeholders(3), "?,?,?");
    EXPECT_EQ(sql_batch::values_statement("INSERT INTO t (a,b) VALUES ", 2, 2, " X"), "INSERT INTO t (a,b) VALUES (?,?),(?,?) X");
    EXPECT_EQ(sql_batch::or_terms("a = ?", 2), "(a = ?) OR (a = ?)");
    EXPECT_EQ(sql_batch::insert_chunks(0), std::vector<std::size_t>{});
    EXPECT_EQ(sql_batch::insert_chunks(173), (std::vector<std::size_t>{128, 32, 13}));
    EXPECT_EQ(sql_batch::insert_chunks(127), (std::vector<std::size_t>{112, 15}));
    EXPECT_EQ(sql_batch::insert_chunks(256), (std::vector<std::size_t>{128, 128}));
    EXPECT_EQ(sql_batch::insert_chunks(7), std::vector<std::size_t>{7});
    // Every n: the chunks add up to n, at most ceil(n / 128) + 1 statements, 23 sizes in all.
    std::set<std::size_t> sizes;
    for (std::size_t n = 1; n <= 1000; ++n) {
        const auto chunks = sql_batch::insert_chunks(n);
        std::size_t sum = 0;
        for (auto c : chunks) {
            sum += c;
            sizes.insert(c);
        }
        EXPECT_EQ(sum, n);
        EXPECT_LE(chunks.size(), (n + 127) / 128 + 1) << n;
    }
    EXPECT_EQ(sizes.size(), 23u);
    EXPECT_EQ(sql_batch::lookup_size(1), 1u);
    EXPECT_EQ(sql_batch::lookup_size(2), 8u);
    EXPECT_EQ(sql_batch::lookup_size(64), 64u);
    EXPECT_EQ(sql_batch::lookup_size(65), 512u);
}

TEST(TwoGenCache, BoundedAndPromotes) {
    TwoGenCache<int, int> c(4);  // two generations of 2
    c.put(1, 10);
    c.put(2, 20);
    c.put(3, 30);  // rotates: {1,2} become previous
    ASSERT_NE(c.find(1), nullptr);  // promoted into the current generation
    c.put(4, 40);  // rotates again: {3,1} previous, 2 dropped
    EXPECT_EQ(c.find(2), nullptr);
    EXPECT_NE(c.find(1), nullptr);
    EXPECT_LE(c.size(), 4u);
    c.erase(1);
    EXPECT_EQ(c.find(1), nullptr);
}

TEST(OnlineUsers, OfflineAmongCountsSessionsPerUser) {
    OnlineUsers online;
    online.add(1);
    online.add(2);
    online.add(2);
    online.remove(2);  // one of its two sessions ended: still online
    online.add(3);
    online.remove(3);
    std::unordered_set<std::uint64_t> off;
    online.offline_among({1, 2, 3, 4}, off);
    EXPECT_EQ(off, (std::unordered_set<std::uint64_t>{3, 4}));
    EXPECT_TRUE(online.online(2));
    EXPECT_FALSE(online.online(3));
}

}  // namespace
}  // namespace im::transfer
