#pragma once
// User status in Redis: which device of which user is connected to which connector, which
// connectors and transfers are alive, and the kick channel. Synchronous (hiredis): for blocking
// pool threads, like RedisConnection itself. Every call is one round trip (a Lua script where a
// call reads or writes several keys, so multi-key updates are atomic). Errors throw
// redis::RedisError; callers treat Redis as a cache and fall back.
//
// Key layout (<p> = RedisConfig::key_prefix, e.g. "im:"):
//   <p>us:<user_id>          HASH  device_id ->
//   "<connector_id>|<connector_epoch>|<login_epoch>|<session_id>"
//                                  EXPIRE 7 days, refreshed by every online() of the user
//   <p>conn:<connector_id>   HASH  {epoch, address, sessions, updated_ms}, PEXPIRE ttl (heartbeat)
//   <p>connectors            SET   connector ids (pruned by live_connectors())
//   <p>xfer:<transfer_id>    HASH  {epoch, address, updated_ms}, PEXPIRE ttl (heartbeat)
//   <p>transfers             SET   transfer ids (pruned by live_transfers())
//   <p>kick                  pub/sub channel of KickRequests
//                            ("k1|<user_id>|<session_id>|<login_epoch>|<reason>")
//
// Liveness: a session entry is live only while <p>conn:<its connector_id> exists AND that hash's
// `epoch` equals the entry's connector_epoch. A crashed connector's users therefore turn offline
// within its heartbeat ttl, and a connector restarted under the same id (a new epoch) hides the
// entries of its previous life without anyone deleting them. Dead entries are not pruned by reads
// (they are replaced per device at the next login and expire with the hash).
//
// The scripts touch keys they compute from the prefix (<p>conn:<id>), so on Redis Cluster the
// prefix must carry a hash tag (e.g. "{im}:") to keep every key in one slot.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "im/server/redis.hpp"

namespace im::user_status {

struct SessionEntry {
    std::string device_id;
    std::string connector_id;
    std::uint64_t connector_epoch = 0;
    std::uint64_t login_epoch = 0;
    std::uint64_t session_id = 0;  // token session (sessions table id)
};

struct ConnectorInfo {
    std::string id;
    std::uint64_t epoch = 0;
    std::string address;  // host:port clients use
    std::uint32_t sessions = 0;
    std::int64_t updated_ms = 0;
};

struct TransferInfo {
    std::string id;
    std::uint64_t epoch = 0;
    std::string address;
    std::int64_t updated_ms = 0;
};

struct KickRequest {
    std::uint64_t user_id = 0;
    std::uint64_t session_id = 0;  // 0 = every session of the user
    std::string reason;            // "logged_out"
    // 0 = every login of the session(s); otherwise only the connection of that login (e.g. a
    // device's previous connection when it logged in again elsewhere with the same token).
    std::uint64_t login_epoch = 0;
};

// claim_device(): whether a newer login of the device already holds the entry (then the caller's
// session is the one to end), or the entry the caller replaced (whose session must end).
struct ClaimResult {
    bool superseded = false;
    std::optional<SessionEntry> other;
};

class UserStatus {
public:
    // key_prefix: RedisConfig::key_prefix. The connection is borrowed (one per pool thread).
    UserStatus(redis::RedisConnection& redis, std::string key_prefix);

    // Replaces the user's entry for s.device_id and refreshes the hash's 7-day expiry.
    void online(std::uint64_t user, const SessionEntry& s);
    // online() for a fresh login: the newest login (by login epoch) of a device wins atomically,
    // whichever connector's update reaches Redis first. See ClaimResult.
    ClaimResult claim_device(std::uint64_t user, const SessionEntry& s);
    // Removes the device's entry only if it is still the one of `login_epoch`: the late logout of
    // an older session never wipes a newer one. True if removed.
    bool offline(std::uint64_t user, const std::string& device_id, std::uint64_t login_epoch);
    // Pipelined (one script call per user, in chunks); re-registers everything after Redis lost its
    // data.
    void online_many(const std::vector<std::pair<std::uint64_t, SessionEntry>>& sessions);

    std::vector<SessionEntry> sessions_of(std::uint64_t user);  // live entries only, by device id
    bool presence(std::uint64_t user);                          // any live entry
    std::vector<bool> presence_many(const std::vector<std::uint64_t>& users);  // one round trip

    // Connector registry. Returns false when the connector's key did not exist before the call
    // (first beat, expiry, or Redis lost its data) or held another epoch (a previous life of this
    // id): the caller then re-registers its sessions.
    bool connector_heartbeat(const ConnectorInfo& info, std::chrono::milliseconds ttl);
    void connector_gone(const std::string& connector_id);
    std::vector<ConnectorInfo> live_connectors();  // sessions ascending (then id); prunes dead ids

    bool transfer_heartbeat(const TransferInfo& info, std::chrono::milliseconds ttl);
    void transfer_gone(const std::string& transfer_id);
    std::vector<TransferInfo> live_transfers();  // by id; prunes dead ids

    void publish_kick(const KickRequest& k);
    std::string kick_channel() const;  // "<prefix>kick"
    // A friendship or block between two users changed (transfers drop their cached policy).
    void publish_social_change(std::uint64_t a, std::uint64_t b);
    std::string social_channel() const;  // "<prefix>social"
    static std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_social_change(std::string_view payload);

    // Wire formats (pure; unit-tested).
    static std::string encode_kick(const KickRequest& k);
    static std::optional<KickRequest> parse_kick(std::string_view payload);  // nullopt for garbage
    static std::string encode_entry(const SessionEntry& s);  // the us:<user> field value
    static std::optional<SessionEntry> parse_entry(std::string_view device_id,
                                                   std::string_view value);

    static constexpr std::chrono::seconds kEntryTtl{7 * 24 * 3600};

private:
    std::string user_key(std::uint64_t user) const;

    redis::RedisConnection& redis_;
    std::string prefix_;
};

// A blocking SUBSCRIBE loop on its own thread with its own Redis connection. It reconnects with
// backoff (and resubscribes) when Redis goes away, pings the server while idle so that a dead
// peer is noticed, and calls on_message(channel, payload) from that thread. Messages published
// while it is disconnected are lost (pub/sub): users of it must tolerate a missed message (the
// connector re-checks tokens; the transfer's policy cache expires).
// on_message must not block for long and must not call stop().
class ChannelSubscriber {
public:
    ChannelSubscriber(redis::RedisConfig config, std::vector<std::string> channels,
                      std::function<void(std::string_view channel, std::string_view payload)> on_message);
    ~ChannelSubscriber();  // stops and joins
    ChannelSubscriber(const ChannelSubscriber&) = delete;
    ChannelSubscriber& operator=(const ChannelSubscriber&) = delete;

    void start();
    void stop();
    bool connected() const;  // subscribed right now

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// The kick channel: valid KickRequests go to on_kick, garbage is logged and skipped.
class KickSubscriber {
public:
    KickSubscriber(redis::RedisConfig config, std::function<void(const KickRequest&)> on_kick);
    ~KickSubscriber();
    void start();
    void stop();
    bool connected() const;

private:
    std::string channel_;
    ChannelSubscriber subscriber_;
};

}  // namespace im::user_status
