#pragma once
// Identifiers every process and the client library compute the same way (no lookup needed).

#include <algorithm>
#include <cstdint>

namespace im {

// User ids are positive and below 2^31 (im-rest guarantees it).
inline constexpr std::uint64_t kMaxUserId = (1ull << 31) - 1;
inline constexpr bool valid_user_id(std::uint64_t id) noexcept { return id > 0 && id <= kMaxUserId; }

// The one-to-one conversation of two users: (low << 32) | high, low < high. Zero when invalid.
inline constexpr std::uint64_t conversation_id(std::uint64_t a, std::uint64_t b) noexcept {
    if (!valid_user_id(a) || !valid_user_id(b) || a == b) return 0;
    return (std::min(a, b) << 32) | std::max(a, b);
}
inline constexpr std::uint64_t conversation_low(std::uint64_t conv) noexcept { return conv >> 32; }
inline constexpr std::uint64_t conversation_high(std::uint64_t conv) noexcept { return conv & 0xffffffffu; }
inline constexpr bool valid_conversation_id(std::uint64_t conv) noexcept {
    const auto lo = conversation_low(conv), hi = conversation_high(conv);
    return valid_user_id(lo) && valid_user_id(hi) && lo < hi;
}
inline constexpr bool is_participant(std::uint64_t conv, std::uint64_t user) noexcept {
    return valid_conversation_id(conv) && (conversation_low(conv) == user || conversation_high(conv) == user);
}
// The other participant (0 when `user` is not one).
inline constexpr std::uint64_t conversation_peer(std::uint64_t conv, std::uint64_t user) noexcept {
    if (!is_participant(conv, user)) return 0;
    return conversation_low(conv) == user ? conversation_high(conv) : conversation_low(conv);
}

// A group conversation: the group's id, 1 .. 2^31-1 (a one-to-one id is always >= 2^32).
inline constexpr bool valid_group_id(std::uint64_t conv) noexcept { return conv > 0 && conv <= kMaxUserId; }
// A one-to-one or a group conversation id (membership of a group is checked by its owner).
inline constexpr bool valid_any_conversation(std::uint64_t conv) noexcept {
    return valid_conversation_id(conv) || valid_group_id(conv);
}

// The conversation a Send (or Typing) names: the group when group_id is set (peer must be 0),
// else the one-to-one conversation of sender and peer. Zero when invalid.
inline constexpr std::uint64_t send_conversation(std::uint64_t sender, std::uint64_t peer, std::uint64_t group) noexcept {
    if (group != 0) return peer == 0 && valid_group_id(group) && valid_user_id(sender) ? group : 0;
    return conversation_id(sender, peer);
}

// Conversations hash into a fixed number of shards; each shard has one owner transfer.
inline constexpr std::uint32_t kShardCount = 1024;
inline constexpr std::uint32_t shard_of(std::uint64_t conv) noexcept {
    std::uint64_t x = conv + 0x9E3779B97F4A7C15ull;  // splitmix64 finaliser
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
    return static_cast<std::uint32_t>(x % kShardCount);
}
// The shard that computes a user's presence (one owner per user).
inline constexpr std::uint32_t presence_shard_of(std::uint64_t user) noexcept { return shard_of(user << 32 | user); }

}  // namespace im
