#pragma once
// Which connector link holds which live sessions. Fed by the links themselves (SessionSync right
// after Hello, then SessionEvent per login/logout), so routing a push needs no Redis round trip and
// is always consistent with the links: when a link drops, its sessions leave the directory at once.
// I/O thread only.

#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "im/proto/internal.pb.h"

namespace im::transfer {

struct PresenceChange {
    std::uint64_t user = 0;
    bool online = false;
};

class SessionDirectory {
public:
    // Each returns the users whose presence changed (first session came / last one went).
    std::vector<PresenceChange> add(std::uint64_t link_id, const internal::SessionRef& s);
    std::vector<PresenceChange> remove(std::uint64_t link_id, const internal::SessionRef& s);
    std::vector<PresenceChange> replace_link(std::uint64_t link_id, const std::vector<internal::SessionRef>& sessions);
    std::vector<PresenceChange> remove_link(std::uint64_t link_id);

    // The links holding at least one session of `user` (with the session count there).
    template <class F>
    void for_each_link(std::uint64_t user, F&& f) const {
        auto it = by_user_.find(user);
        if (it == by_user_.end()) return;
        for (const auto& [link, count] : it->second.links) f(link);
    }
    bool online(std::uint64_t user) const { return by_user_.count(user) != 0; }
    std::size_t sessions() const { return sessions_; }
    std::size_t users() const { return by_user_.size(); }

private:
    struct SessionKey {
        std::uint64_t user, login_epoch;
        bool operator==(const SessionKey&) const = default;
    };
    struct SessionKeyHash {
        std::size_t operator()(const SessionKey& k) const noexcept {
            return static_cast<std::size_t>(k.user * 0x9E3779B97F4A7C15ull ^ k.login_epoch);
        }
    };
    struct UserEntry {
        std::unordered_map<std::uint64_t, std::uint32_t> links;  // link id -> sessions there
    };
    std::unordered_map<std::uint64_t, UserEntry> by_user_;
    std::unordered_map<std::uint64_t, std::unordered_set<SessionKey, SessionKeyHash>> by_link_;
    std::size_t sessions_ = 0;
};

}  // namespace im::transfer
