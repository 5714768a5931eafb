#pragma once
// The world the authorization sweep (authz_sweep_test.cpp) attacks, on one real cluster:
//   alice  the victim: friends with carol; conversation alice<->carol holds messages and a file;
//          she also owns a file she never sent and has a pending friend request out.
//   carol  alice's friend.      bob  the attacker: nobody's friend but dave's.
//   dave   bob's friend.        ken  has blocked bob.
// Everything of alice's and carol's that bob must never see carries the marker "SECRET" (message
// texts, file names and contents, device ids, the friend request's message), so "no data of
// another user in the answer" is one substring check on every answer bob gets. Whatever an
// attack sends carries "ATTACK" or "FORGED", so stored or delivered attack data is found by text.
//
// Watchers: a second logged-in client of alice, carol, ken and dave (on the other connector).
// A case (begin()/end()) must leave them silent (nothing but the Pongs of the pings begin() sends
// to keep them alive) and leave the database as it found it (fingerprint(): row counts and
// checksums of every table a refused request could write).

#include <gtest/gtest.h>

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cluster.hpp"
#include "im/server/mysql.hpp"
#include "im/server/redis.hpp"
#include "im/server/token_format.hpp"
#include "im/wire/frame_codec.hpp"
#include "im/wire/ids.hpp"

namespace im::test::authz {

using namespace std::chrono_literals;
using client::Envelope;

// How long a refused case waits for a delivery that must not come. A frame that gets through is
// committed and pushed within milliseconds on loopback; the controls prove the watchers hear
// within this window what a legitimate request sends them.
inline constexpr auto kQuiet = 300ms;

inline bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

// A frame as text for failure messages and marker checks.
inline std::string describe(const Envelope& e) {
    return e.ShortDebugString();
}

inline bool frame_carries(const Envelope& e, const std::string& marker) {
    return contains(e.SerializeAsString(), marker) || contains(describe(e), marker);
}

class World {
  public:
    struct Watcher {
        std::string name;
        std::uint64_t user = 0;
        std::string token, device;
        std::unique_ptr<RawClient> client;
    };
    // begin() marks where every watcher's frames stood and snapshots the database.
    struct Probe {
        std::map<std::string, std::string> db;
        std::vector<std::size_t> marks;
    };
    // A frame that end() tolerates on a watcher (a case's own expected event).
    using Allow = std::function<bool(const Watcher&, const Envelope&)>;

    explicit World(Cluster& cluster) : cl(cluster), http(cluster.http()) {
        alice = cl.user("alice");
        carol = cl.user("carol");
        bob = cl.user("bob");
        dave = cl.user("dave");
        ken = cl.user("ken");
        cl.befriend(alice, carol);
        cl.befriend(bob, dave);
        expect_status(http.post("/v1/blocks", {{"user_id", bob.id}}, ken.token), 201,
                      "ken blocks bob");
        conv_ac = conversation_id(alice.id, carol.id);
        conv_bd = conversation_id(bob.id, dave.id);

        watchers.push_back(watch("alice", alice));
        watchers.push_back(watch("carol", carol));
        watchers.push_back(watch("ken", ken));
        watchers.push_back(watch("dave", dave));
        alice_main = cl.connect(0, alice.token, "dev1");
        carol_main = cl.connect(0, carol.token, "dev1");
        bob_main = cl.connect(0, bob.token, "dev1");

        // History: alice <-> carol (texts and a file), bob -> dave.
        expect_sent(send_text(*alice_main, carol.id, "CONTROL SECRET alice to carol"),
                    "alice -> carol");
        expect_sent(send_text(*carol_main, alice.id, "CONTROL SECRET carol to alice"),
                    "carol -> alice");
        sent_file = upload(alice, "SECRET-sent.txt", "SECRET content alice sent carol");
        expect_sent(send_file(*alice_main, carol.id, sent_file), "alice -> carol (file)");
        private_file = upload(alice, "SECRET-private.txt", "SECRET content alice kept");
        expect_sent(send_text(*bob_main, dave.id, "CONTROL bob to dave"), "bob -> dave");
        // A pending request of alice's (to a user she does not know yet).
        auto stranger = fresh("stranger");
        expect_status(
            http.post("/v1/friends/requests",
                      {{"to_user_id", stranger.id}, {"message", "SECRET request"}}, alice.token),
            201, "alice's pending request");
        // The watchers heard the history: the pushes work (and nothing of it is pending).
        for (auto* w : {&watcher("carol"), &watcher("alice")}) {
            for (int i = 0; i < 3; ++i) {
                if (!w->client->wait_body(Envelope::kDeliver, 10s)) {
                    throw std::runtime_error(w->name + "'s watcher missed the history's Delivers");
                }
            }
        }
        if (!watcher("dave").client->wait_body(Envelope::kDeliver, 10s)) {
            throw std::runtime_error("dave's watcher missed bob's message");
        }
        settle();
    }

    Cluster& cl;
    HttpClient& http;
    TestUser alice, carol, bob, dave, ken;
    std::uint64_t conv_ac = 0, conv_bd = 0;
    std::uint64_t sent_file = 0, private_file = 0;
    std::vector<Watcher> watchers;
    // Logged-in sessions on connector 0 (device dev1): alice's and carol's for the controls, bob's
    // for his attacks.
    std::unique_ptr<RawClient> alice_main, carol_main, bob_main;

    Watcher& watcher(const std::string& name) {
        for (auto& w : watchers) {
            if (w.name == name) return w;
        }
        throw std::logic_error("no watcher " + name);
    }

    // ------------------------------------------------------------------ users and tokens
    TestUser fresh(const std::string& name) { return cl.user(name); }

    // A token of `u` for `device` whose session expired an hour ago (its row written directly:
    // never validated, so never cached).
    std::string expired_token(const TestUser& u, const std::string& device) {
        const auto token = tokens::new_token();
        auto& st = cl.db().db().prepare(
            "INSERT INTO sessions (token_hash, user_id, device_id, expires_at) VALUES (UNHEX(?), "
            "?, ?, ?)");
        st.setString(1, tokens::to_hex(tokens::hash_token(token)));
        st.setUInt64(2, u.id);
        st.setString(3, device);
        st.setString(4, mysql::ms_to_datetime(tokens::now_ms() - 3600 * 1000));
        st.executeUpdate();
        return token;
    }

    // A token of `u` for `device` that was logged out (DELETE /v1/sessions/current).
    std::string revoked_token(const TestUser& u, const std::string& device) {
        const auto token = cl.login_token(u, device);
        expect_status(http.del("/v1/sessions/current", token), 204, "logout");
        return token;
    }

    // Makes a live token expire now: its row's expires_at in the past, its Redis cache entry gone
    // (an entry never outlives its token: its TTL is capped at the remaining lifetime).
    void expire_now(const std::string& token) {
        const auto hash = tokens::hash_token(token);
        auto& st =
            cl.db().db().prepare("UPDATE sessions SET expires_at = ? WHERE token_hash = UNHEX(?)");
        st.setString(1, mysql::ms_to_datetime(tokens::now_ms() - 1000));
        st.setString(2, tokens::to_hex(hash));
        if (st.executeUpdate() != 1) throw std::runtime_error("expire_now: no such session");
        redis::RedisConfig rc;
        rc.port = TestEnv::get().redis_port;
        redis::RedisConnection redis(rc);
        redis.command({"DEL", tokens::cache_key(cl.redis_prefix(), hash)});
    }

    // A well-formed token nobody was given.
    static std::string unknown_token() { return tokens::new_token(); }

    // ------------------------------------------------------------------ REST helpers
    static void expect_status(const HttpResult& r, int status, const std::string& what) {
        if (r.status != status) {
            throw std::runtime_error(what + ": expected " + std::to_string(status) + ", got " +
                                     std::to_string(r.status) + " " + r.body);
        }
    }

    std::uint64_t upload(const TestUser& owner, const std::string& name,
                         const std::string& content) {
        auto r = http.request(
            "POST", "/v1/files?name=" + name, content,
            {{"Authorization", "Bearer " + owner.token}, {"Content-Type", "text/plain"}});
        expect_status(r, 201, "upload " + name);
        return r.json()["id"].get<std::uint64_t>();
    }

    // A pending friend request from -> to; returns its id.
    std::uint64_t request(const TestUser& from, const TestUser& to) {
        auto r = http.post("/v1/friends/requests", {{"to_user_id", to.id}}, from.token);
        expect_status(r, 201, "friend request");
        return r.json()["id"].get<std::uint64_t>();
    }

    std::uint64_t session_id_of(const std::string& token) {
        auto r = http.get("/v1/sessions", token);
        expect_status(r, 200, "list sessions");
        const auto body = r.json();
        for (const auto& s : body["sessions"]) {
            if (s["current"].get<bool>()) return s["id"].get<std::uint64_t>();
        }
        throw std::runtime_error("no current session in " + r.body);
    }

    // ------------------------------------------------------------------ frame helpers
    client::SendResult send_envelope(RawClient& c, Envelope env) {
        const auto rid = env.request_id();
        c.send(env);
        auto res = c.wait_for([rid](const Envelope& e) { return e.request_id() == rid; }, 10s);
        if (!res) throw std::runtime_error("no answer to " + describe(env));
        if (!res->has_send_result())
            throw std::runtime_error("answer to a Send: " + describe(*res));
        if (res->send_result().code() == client::ERROR_NONE)
            acked_[{&c, env.send().peer_user_id()}] = env.send().stream_seq();
        return res->send_result();
    }

    // The next Send of c's stream to `peer` (stream numbers are consumed whatever the answer).
    Envelope next_send(RawClient& c, std::uint64_t peer, const std::string& text) {
        auto& next = next_[{&c, peer}];
        ++next;
        return c.make_send(peer, text, next, acked_[{&c, peer}]);
    }

    client::SendResult send_text(RawClient& c, std::uint64_t peer, const std::string& text) {
        return send_envelope(c, next_send(c, peer, text));
    }

    client::SendResult send_file(RawClient& c, std::uint64_t peer, std::uint64_t file_id) {
        auto env = next_send(c, peer, "");
        env.mutable_send()->clear_text();
        env.mutable_send()->set_type(client::FILE);
        env.mutable_send()->mutable_file()->set_file_id(file_id);
        return send_envelope(c, env);
    }

    static void expect_sent(const client::SendResult& r, const std::string& what) {
        if (r.code() != client::ERROR_NONE)
            throw std::runtime_error(what + " not SENT: " + r.ShortDebugString());
    }

    // Forgets the stream state of a client that is gone (a new session starts new streams).
    void forget_streams(RawClient* c) {
        std::erase_if(next_, [c](const auto& kv) { return kv.first.first == c; });
        std::erase_if(acked_, [c](const auto& kv) { return kv.first.first == c; });
    }

    // The highest seq of a conversation (direct SQL).
    std::uint64_t last_seq(std::uint64_t conv) {
        auto& st = cl.db().db().prepare(
            "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = ?");
        st.setUInt64(1, conv);
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        rs->next();
        return rs->getUInt64(1);
    }

    // ------------------------------------------------------------------ side effects
    // Row count and checksum of every table a refused request could write, per table.
    std::map<std::string, std::string> fingerprint() {
        static const char* const kQuery =
            "SELECT 'users', COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(':', id, username, "
            "display_name, "
            "COALESCE(password_hash, '')))), 0) FROM users "
            "UNION ALL SELECT 'sessions', COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(':', id, user_id, "
            "device_id, "
            "expires_at, revoked_at IS NULL))), 0) FROM sessions "
            "UNION ALL SELECT 'friend_requests', COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(':', id, "
            "from_user, to_user, "
            "status))), 0) FROM friend_requests "
            "UNION ALL SELECT 'friendships', COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(':', user_id, "
            "friend_id))), 0) "
            "FROM friendships "
            "UNION ALL SELECT 'blocks', COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(':', user_id, "
            "blocked_id))), 0) FROM blocks "
            "UNION ALL SELECT 'conversations', COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(':', id, "
            "last_seq))), 0) "
            "FROM conversations "
            "UNION ALL SELECT 'messages', COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(':', "
            "conversation_id, seq, msg_id, "
            "sender_id))), 0) FROM messages "
            "UNION ALL SELECT 'user_conversations', COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(':', "
            "user_id, "
            "conversation_id, last_seq, my_delivered_seq, my_read_seq, peer_delivered_seq, "
            "peer_read_seq, version))), 0) "
            "FROM user_conversations "
            "UNION ALL SELECT 'push_pending', COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(':', user_id, "
            "conversation_id, "
            "up_to_seq))), 0) FROM push_pending "
            "UNION ALL SELECT 'files', COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(':', id, owner_id, "
            "sha256))), 0) FROM files "
            "UNION ALL SELECT 'file_refs', COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(':', file_id, "
            "conversation_id))), 0) "
            "FROM file_refs "
            "UNION ALL SELECT 'chat_groups', COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(':', id, name, "
            "owner_id, last_seq, member_count, deleted_seq))), 0) FROM chat_groups "
            "UNION ALL SELECT 'group_members', COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS(':', group_id, "
            "user_id, role, joined_seq, left_seq, delivered_seq, read_seq))), 0) FROM group_members";
        std::map<std::string, std::string> out;
        std::unique_ptr<sql::ResultSet> rs(cl.db().db().prepare(kQuery).executeQuery());
        while (rs->next()) {
            out[rs->getString(1).asStdString()] =
                rs->getString(2).asStdString() + " rows, crc " + rs->getString(3).asStdString();
        }
        // Uploads in progress stream into files.dir/tmp: a refused upload leaves nothing there.
        std::size_t temp = 0;
        std::error_code ec;
        for (auto it = std::filesystem::directory_iterator(cl.rest().files_dir() + "/tmp", ec);
             !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
            ++temp;
        }
        out["files.dir/tmp"] = std::to_string(temp) + " entries";
        return out;
    }

    Probe begin() {
        Probe p;
        for (auto& w : watchers) {
            Envelope ping;
            ping.set_request_id(w.client->next_request_id());
            ping.mutable_ping()->set_client_time_ms(1);
            w.client->send(ping);  // keeps the watcher alive (heartbeat); its Pong is ignored
            p.marks.push_back(w.client->all_frames().size());
        }
        p.db = fingerprint();
        return p;
    }

    // Waits `window`, then: every watcher heard nothing new (but Pongs and what `allow` accepts),
    // and the database is as begin() found it.
    void end(const Probe& p, std::chrono::milliseconds window = kQuiet, const Allow& allow = {}) {
        if (window.count() > 0) std::this_thread::sleep_for(window);
        for (std::size_t i = 0; i < watchers.size(); ++i) {
            const auto& w = watchers[i];
            const auto frames = w.client->all_frames();
            EXPECT_FALSE(w.client->closed()) << w.name << "'s watcher was disconnected";
            for (std::size_t k = p.marks[i]; k < frames.size(); ++k) {
                if (frames[k].has_pong()) continue;
                if (allow && allow(w, frames[k])) continue;
                ADD_FAILURE() << w.name << "'s watcher received " << describe(frames[k]);
            }
        }
        const auto after = fingerprint();
        for (const auto& [table, before] : p.db) {
            EXPECT_EQ(before, after.at(table)) << "table " << table << " changed";
        }
    }

    // Lets the pushes of a control arrive before the next case looks.
    void settle() { std::this_thread::sleep_for(kQuiet); }

  private:
    Watcher watch(const std::string& name, const TestUser& u) {
        const auto device = (name == "alice" || name == "carol" ? "SECRET-" : "") + name + "-watch";
        const auto token = cl.login_token(u, device);
        return Watcher{name, u.id, token, device, cl.connect(1, token, device)};
    }

    std::map<std::pair<RawClient*, std::uint64_t>, std::uint64_t> next_, acked_;
};

// Nothing of alice's or carol's in what bob received.
inline void expect_no_secret(const std::string& body, const std::string& what) {
    EXPECT_FALSE(contains(body, "SECRET"))
        << what << " leaked another user's data: " << body.substr(0, 2000);
}

inline void expect_no_secret(const RawClient& c, const std::string& what) {
    for (const auto& f : c.all_frames()) {
        EXPECT_FALSE(frame_carries(f, "SECRET"))
            << what << " leaked another user's data: " << describe(f);
    }
}

// Pushes (messages, typing, receipts, presence) that reached c after frame number `mark`.
inline void expect_no_push_since(const RawClient& c, std::size_t mark, const std::string& what) {
    const auto frames = c.all_frames();
    for (std::size_t i = mark; i < frames.size(); ++i) {
        const auto& f = frames[i];
        EXPECT_FALSE(f.has_deliver() || f.has_typing_event() || f.has_receipt_event() ||
                     f.has_presence())
            << what << ": " << describe(f);
    }
}

// Two ex-friends with history: x wrote to y and y to x, then y blocked x. Each has a session on
// connector 0 (device dev1) and a second logged-in device on connector 1 that listens.
struct BlockedPair {
    TestUser x, y;
    std::uint64_t conv = 0;
    std::unique_ptr<RawClient> xs, ys, xw, yw;
};

inline BlockedPair blocked_pair(World& w) {
    BlockedPair b;
    b.x = w.fresh("x");
    b.y = w.fresh("y");
    w.cl.befriend(b.x, b.y);
    b.conv = conversation_id(b.x.id, b.y.id);
    b.xw = w.cl.connect(1, w.cl.login_token(b.x, "xw"), "xw");
    b.yw = w.cl.connect(1, w.cl.login_token(b.y, "yw"), "yw");
    b.xs = w.cl.connect(0, b.x.token, "dev1");
    b.ys = w.cl.connect(0, b.y.token, "dev1");
    World::expect_sent(w.send_text(*b.xs, b.y.id, "CONTROL x to y"), "x -> y");
    World::expect_sent(w.send_text(*b.ys, b.x.id, "CONTROL y to x"), "y -> x");
    for (auto* c : {b.xw.get(), b.yw.get()}) {
        for (int i = 0; i < 2; ++i) {
            if (!c->wait_body(Envelope::kDeliver, 5s))
                throw std::runtime_error("history not heard");
        }
    }
    World::expect_status(w.http.post("/v1/blocks", {{"user_id", b.x.id}}, b.y.token), 201,
                         "y blocks x");
    w.settle();
    return b;
}

// A user's row of a conversation: "last_seq my_delivered my_read peer_delivered peer_read".
inline std::string watermarks(World& w, std::uint64_t user, std::uint64_t conv) {
    auto& st = w.cl.db().db().prepare(
        "SELECT CONCAT_WS(' ', last_seq, my_delivered_seq, my_read_seq, peer_delivered_seq, "
        "peer_read_seq) FROM user_conversations WHERE user_id = ? AND conversation_id = ?");
    st.setUInt64(1, user);
    st.setUInt64(2, conv);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    return rs->next() ? rs->getString(1).asStdString() : "no row";
}

// After a block, a READ watermark moves for its sender only: `reader` (one of the pair) marks
// the conversation read with `mark_read`; their own other device hears it (the receipt was
// applied), the other one of the pair hears nothing on any device and their row does not move.
inline void read_stays_with_reader(World& w, BlockedPair& b, bool reader_is_x,
                                   const std::function<void(std::uint64_t up_to)>& mark_read,
                                   const std::string& what) {
    const auto& reader = reader_is_x ? b.x : b.y;
    const auto& other = reader_is_x ? b.y : b.x;
    auto& reader_watch = reader_is_x ? *b.xw : *b.yw;
    std::vector<RawClient*> other_sessions = {reader_is_x ? b.ys.get() : b.xs.get(),
                                              reader_is_x ? b.yw.get() : b.xw.get()};
    std::vector<std::size_t> marks;
    for (auto* c : other_sessions)
        marks.push_back(c->all_frames().size());
    const auto other_row = watermarks(w, other.id, b.conv);
    mark_read(w.last_seq(b.conv));
    const auto id = reader.id;
    EXPECT_TRUE(reader_watch.wait_for(
        [id](const Envelope& e) {
            return e.has_receipt_event() && e.receipt_event().user_id() == id;
        },
        5s))
        << what << ": the reader's own other device did not hear the receipt (control)";
    std::this_thread::sleep_for(kQuiet);
    for (std::size_t i = 0; i < other_sessions.size(); ++i) {
        expect_no_push_since(*other_sessions[i], marks[i], what + ": the other one heard");
    }
    EXPECT_EQ(watermarks(w, other.id, b.conv), other_row)
        << what << ": the other one's view of the watermark moved";
}

// ---------------------------------------------------------------------------- the tables
// The columns of the sweep's tables. The four token columns are generated for every
// authenticated entry from its rightful request (the request that succeeds with the owner's
// token), the others are written per entry: a check, or n/a with the reason.
enum class Col {
    no_token,
    malformed_token,
    expired_token,
    revoked_token,
    other_user,
    non_friend,
    blocked,
    server_only
};

inline const char* col_name(Col c) {
    switch (c) {
        case Col::no_token:
            return "no_token";
        case Col::malformed_token:
            return "malformed_token";
        case Col::expired_token:
            return "expired_token";
        case Col::revoked_token:
            return "revoked_token";
        case Col::other_user:
            return "other_user";
        case Col::non_friend:
            return "non_friend";
        case Col::blocked:
            return "blocked";
        case Col::server_only:
            return "server_only";
    }
    return "?";
}

inline bool is_token_col(Col c) {
    return c == Col::no_token || c == Col::malformed_token || c == Col::expired_token ||
           c == Col::revoked_token;
}

inline constexpr Col kRestCols[] = {Col::no_token,      Col::malformed_token, Col::expired_token,
                                    Col::revoked_token, Col::other_user,      Col::non_friend,
                                    Col::blocked};
inline constexpr Col kFrameCols[] = {Col::no_token,      Col::malformed_token, Col::expired_token,
                                     Col::revoked_token, Col::other_user,      Col::non_friend,
                                     Col::blocked,       Col::server_only};

// One cell: a check, or n/a with the reason why the case cannot apply.
struct Cell {
    std::string na;
    std::function<void(World&)> run;
};
inline Cell na(std::string why) {
    return Cell{std::move(why), {}};
}
inline Cell check(std::function<void(World&)> f) {
    return Cell{"", std::move(f)};
}

}  // namespace im::test::authz
