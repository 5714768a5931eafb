#include "social.hpp"

#include <deque>

#include "cli_common.hpp"
#include "json_lite.hpp"

namespace imcli {
namespace {

using imclient::detail::json_quote;

// The pending request in `list` whose `side` ("from"/"to") is `peer`, or nullptr.
const JsonValue* find_request(const JsonValue& list, const char* side, const std::string& peer) {
    const JsonValue* reqs = list.find("requests");
    if (!reqs) return nullptr;
    for (const auto& r : reqs->items) {
        if (const JsonValue* who = r.find(side); who && json_str(*who, "username") == peer)
            return &r;
    }
    return nullptr;
}

}  // namespace

std::vector<std::string> friends_lines(RestApi& rest) {
    std::vector<std::string> out;
    const auto answer = rest.get("/v1/friends");
    if (const JsonValue* list = answer.find("friends")) {
        for (const auto& f : list->items) {
            out.push_back(json_str(f, "username") +
                          (json_bool(f, "online") ? " (online)" : " (offline)"));
        }
    }
    if (out.empty()) out.push_back("no friends yet (add one: friends add NAME, or /add NAME)");
    return out;
}

std::vector<std::string> requests_lines(RestApi& rest) {
    std::vector<std::string> out;
    for (const char* dir : {"in", "out"}) {
        const bool in = dir[0] == 'i';
        const auto answer = rest.get(std::string("/v1/friends/requests?direction=") + dir);
        if (const JsonValue* reqs = answer.find("requests")) {
            for (const auto& r : reqs->items) {
                const JsonValue* who = r.find(in ? "from" : "to");
                const auto msg = json_str(r, "message");
                out.push_back(std::string(in ? "from " : "to ") +
                              (who ? json_str(*who, "username") : "?") +
                              (msg.empty() ? "" : ": " + msg));
            }
        }
    }
    if (out.empty()) out.push_back("no pending friend requests");
    return out;
}

std::vector<std::string> chats_lines(RestApi& rest) {
    std::vector<std::string> out;
    std::uint64_t cursor = 0;
    for (;;) {
        const auto page = rest.get("/v1/conversations?limit=500&cursor=" + std::to_string(cursor));
        if (const JsonValue* list = page.find("conversations")) {
            for (const auto& c : list->items) {
                const JsonValue* peer = c.find("peer");
                out.push_back((peer ? json_str(*peer, "username") : "?") + "  " +
                              std::to_string(json_u64(c, "unread")) + " unread  last #" +
                              std::to_string(json_u64(c, "last_seq")));
            }
        }
        cursor = json_u64(page, "next_cursor");
        if (!json_bool(page, "has_more")) break;
    }
    if (out.empty()) out.push_back("no conversations yet");
    return out;
}

std::vector<std::string> history_lines(RestApi& rest, std::uint64_t me, const std::string& my_name,
                                       std::uint64_t peer, const std::string& peer_name,
                                       std::size_t keep) {
    const auto conv = imclient::conversation_id(me, peer);
    std::deque<std::string> lines;
    std::uint64_t after = 0;
    for (;;) {
        JsonValue page;
        try {
            page = rest.get("/v1/conversations/" + std::to_string(conv) +
                            "/messages?limit=200&after_seq=" + std::to_string(after));
        } catch (const RestError& e) {
            if (e.status == 404) break;  // no message yet: no conversation
            throw;
        }
        const JsonValue* msgs = page.find("messages");
        if (!msgs || msgs->items.empty()) break;
        for (const auto& m : msgs->items) {
            after = json_u64(m, "seq");
            const JsonValue* file = m.find("file");
            const std::string body = json_str(m, "type") == "file"
                                         ? "[file " + (file ? json_str(*file, "name") : "") +
                                               " id " + (file ? json_str(*file, "id") : "") + "]"
                                         : json_str(m, "text");
            lines.push_back(json_str(m, "created_at") + " #" + std::to_string(after) + " " +
                            (json_u64(m, "sender_id") == me ? my_name : peer_name) + ": " + body);
            if (keep > 0 && lines.size() > keep) lines.pop_front();
        }
        if (!json_bool(page, "has_more")) break;
    }
    return {lines.begin(), lines.end()};
}

std::string add_friend(RestApi& rest, const std::string& peer, const std::string& message) {
    const auto id = rest.user_id_of(peer);
    std::string body = "{\"to_user_id\":" + std::to_string(id);
    if (!message.empty()) body += ",\"message\":" + json_quote(message);
    rest.post("/v1/friends/requests", body + "}");
    return "friend request sent to " + peer;
}

std::string answer_request(RestApi& rest, const std::string& peer, const std::string& verb) {
    const auto list = rest.get("/v1/friends/requests?direction=in");
    const JsonValue* r = find_request(list, "from", peer);
    if (!r) throw CommandFailed("no pending friend request from " + peer);
    rest.post("/v1/friends/requests/" + std::to_string(json_u64(*r, "id")) + "/" + verb, "");
    return verb == "accept" ? "you and " + peer + " are friends now"
                            : "declined the request from " + peer;
}

std::vector<std::string> accept_all(RestApi& rest) {
    std::vector<std::string> out;
    const auto list = rest.get("/v1/friends/requests?direction=in");
    if (const JsonValue* reqs = list.find("requests")) {
        for (const auto& r : reqs->items) {
            const JsonValue* who = r.find("from");
            const auto name = who ? json_str(*who, "username") : "?";
            rest.post("/v1/friends/requests/" + std::to_string(json_u64(r, "id")) + "/accept", "");
            out.push_back("you and " + name + " are friends now");
        }
    }
    if (out.empty()) out.push_back("no pending friend requests to accept");
    return out;
}

}  // namespace imcli
