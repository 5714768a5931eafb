// The wire formats of user-status: a session entry (the value of a us:<user> hash field) and a
// kick message. Pure functions; everything read from Redis or the channel is untrusted.

#include <charconv>

#include "im/user_status/user_status.hpp"

namespace im::user_status {
namespace {

constexpr std::string_view kKickVersion = "k1|";
constexpr std::size_t kMaxReason = 256;

// Digits only (no sign, no spaces), no overflow.
std::optional<std::uint64_t> to_u64(std::string_view s) {
    std::uint64_t v = 0;
    if (s.empty()) return std::nullopt;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
}

// Splits off the last '|'-separated field: "a|b|c" -> field "c", rest "a|b".
std::optional<std::string_view> pop_last(std::string_view& s) {
    const auto bar = s.rfind('|');
    if (bar == std::string_view::npos) return std::nullopt;
    auto field = s.substr(bar + 1);
    s = s.substr(0, bar);
    return field;
}

// Splits off the first '|'-separated field.
std::optional<std::string_view> pop_first(std::string_view& s) {
    const auto bar = s.find('|');
    if (bar == std::string_view::npos) return std::nullopt;
    auto field = s.substr(0, bar);
    s = s.substr(bar + 1);
    return field;
}

}  // namespace

std::string UserStatus::encode_entry(const SessionEntry& s) {
    return s.connector_id + "|" + std::to_string(s.connector_epoch) + "|" +
           std::to_string(s.login_epoch) + "|" + std::to_string(s.session_id);
}

// Parsed from the right, so that a connector id containing '|' still round-trips (the Lua
// scripts match the same way: "^(.*)|(%d+)|(%d+)|(%d+)$").
std::optional<SessionEntry> UserStatus::parse_entry(std::string_view device_id,
                                                    std::string_view value) {
    auto session = pop_last(value);
    auto login = session ? pop_last(value) : std::nullopt;
    auto epoch = login ? pop_last(value) : std::nullopt;
    if (!epoch || value.empty()) return std::nullopt;
    const auto session_id = to_u64(*session);
    const auto login_epoch = to_u64(*login);
    const auto connector_epoch = to_u64(*epoch);
    if (!session_id || !login_epoch || !connector_epoch) return std::nullopt;
    return SessionEntry{std::string(device_id), std::string(value), *connector_epoch, *login_epoch,
                        *session_id};
}

std::string UserStatus::encode_kick(const KickRequest& k) {
    return std::string(kKickVersion) + std::to_string(k.user_id) + "|" +
           std::to_string(k.session_id) + "|" + std::to_string(k.login_epoch) + "|" + k.reason;
}

// "k1|<user_id>|<session_id>|<login_epoch>|<reason>": the reason is last, so it may contain '|'.
std::optional<KickRequest> UserStatus::parse_kick(std::string_view payload) {
    if (payload.substr(0, kKickVersion.size()) != kKickVersion) return std::nullopt;
    payload.remove_prefix(kKickVersion.size());
    const auto user = pop_first(payload);
    const auto session = user ? pop_first(payload) : std::nullopt;
    const auto login = session ? pop_first(payload) : std::nullopt;
    if (!login) return std::nullopt;
    const auto user_id = to_u64(*user);
    const auto session_id = to_u64(*session);
    const auto login_epoch = to_u64(*login);
    if (!user_id || *user_id == 0 || !session_id || !login_epoch) return std::nullopt;
    if (payload.size() > kMaxReason) return std::nullopt;
    for (const char c : payload) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) return std::nullopt;  // it ends up in logs and client frames
    }
    return KickRequest{*user_id, *session_id, std::string(payload), *login_epoch};
}

}  // namespace im::user_status
