#pragma once
// The connector's abuse limits (docs/OPERATIONS.md "Abuse limits"), as pure pieces the server
// wires in: token buckets per session and per user (messages, receipts, typing), and the count of
// open connections per client address. Everything runs on the connector's one I/O thread.
//
// Per user means per user *on this connector*: a user's sends go to the transfers owning each of
// its conversations, so no one transfer sees all of them, and a shared counter in Redis would
// cost a round trip per frame. Each connector enforces its own budget for the sessions of a user
// it holds; a user spread over k connectors gets up to k budgets (docs/OPERATIONS.md).

#include <array>
#include <cstdint>
#include <unordered_map>

#include <boost/asio/ip/address.hpp>

#include "im/proto/client.pb.h"
#include "im/server/token_bucket.hpp"

namespace im::connector {

struct AbuseLimits {
    RateLimit session_messages{20, 100};
    RateLimit session_receipts{100, 2000};  // a reconnect resends 2 watermarks per conversation
    RateLimit session_typing{5, 20};
    RateLimit user_messages{40, 200};
    RateLimit user_receipts{200, 4000};
    RateLimit user_typing{10, 40};
    // Every frame of a session (Pings included): beyond it the frame is still handled, but the
    // connection is not read again until the debt is paid (a flood of cheap frames is slowed,
    // nothing is refused).
    RateLimit session_frames{500, 4000};
    std::uint32_t max_per_address = 1000;         // open connections per client IP; 0: no limit
    std::uint32_t max_frames_before_login = 16;   // Login included; 0: no limit
};

// The frame kinds with a rate: Send, Receipt, Typing.
enum class Metered : std::uint8_t { messages, receipts, typing, none };
Metered metered_kind(client::Envelope::BodyCase body) noexcept;

struct FrameBuckets {
    TokenBucket messages, receipts, typing;
    TokenBucket& of(Metered kind) noexcept;
};

// The limit that refused a frame: which scope, and how long until it would pass.
struct Refusal {
    enum class Scope : std::uint8_t { none, session, user } scope = Scope::none;
    Metered kind = Metered::none;
    std::uint32_t retry_after_ms = 0;
    explicit operator bool() const noexcept { return scope != Scope::none; }
    // "session_messages", "user_typing", ...: the metric label and the configuration key's stem.
    const char* name() const noexcept;
};

// One metered frame of `kind` at now_ms: the session's bucket first, then the user's (null: no
// per-user buckets). A refusal by the user's bucket has already spent the session's token.
Refusal admit_frame(const AbuseLimits& limits, FrameBuckets& session, FrameBuckets* user, Metered kind, std::int64_t now_ms);

// The client-visible answer to a refused frame: SendResult{RATE_LIMITED} for a Send,
// Error{RATE_LIMITED} for a Receipt (retryable: watermarks are resent) and for a Typing (not
// retryable: a typing indicator is dropped, the next one passes after retry_after_ms).
client::Envelope refusal_answer(const client::Envelope& request, const Refusal& r);

// Open connections per client address, bounded by the connections themselves (an entry exists
// only while its address has one). Keys are the 16 bytes of the IPv6 (or v4-mapped) address; the
// hash is seeded per process so chosen addresses cannot collide on purpose.
class AddressCounter {
public:
    using Key = std::array<std::uint8_t, 16>;
    static Key key_of(const boost::asio::ip::address& a);

    // Counts one more connection of `key` unless it already has `max` (0: no limit).
    bool try_add(const Key& key, std::uint32_t max);
    void remove(const Key& key);
    std::uint32_t count(const Key& key) const;
    std::size_t addresses() const { return counts_.size(); }

private:
    struct Hash {
        std::uint64_t seed;
        std::size_t operator()(const Key& k) const noexcept;
    };
    std::unordered_map<Key, std::uint32_t, Hash> counts_{16, Hash{seed()}};
    static std::uint64_t seed();
};

}  // namespace im::connector
