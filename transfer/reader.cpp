#include "reader.hpp"

#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "im/server/metrics.hpp"
#include "im/server/mysql.hpp"
#include "im/server/redis.hpp"
#include "im/server/tokens.hpp"
#include "im/wire/ids.hpp"
#include "transfer_config.hpp"

namespace im::transfer {

struct Reader::Backend {
    explicit Backend(const TransferConfig& c)
        : db(c.mysql), redis(c.redis), tokens(db, &redis, c.tokens, c.redis.key_prefix) {}
    mysql::MysqlConnection db;
    redis::RedisConnection redis;
    tokens::TokenStore tokens;
};

Reader::Reader(const TransferConfig& config, PolicyCache& policy, Metrics& /*metrics*/)
    : config_(config), policy_(policy), pool_("reader", config.reader_threads, 10000) {
    for (std::uint32_t i = 0; i < config.reader_threads; ++i) backends_.push_back(std::make_unique<Backend>(config));
}

Reader::~Reader() { shutdown(); }

void Reader::shutdown() { pool_.shutdown(); }

Reader::Backend& Reader::backend() { return *backends_.at(static_cast<std::size_t>(ThreadPool::worker_index())); }

namespace {

client::Envelope error_envelope(client::ErrorCode code, const std::string& message) {
    client::Envelope env;
    auto* e = env.mutable_error();
    e->set_code(code);
    e->set_message(message);
    e->set_retryable(code == client::UNAVAILABLE || code == client::INTERNAL || code == client::OVERLOADED);
    return env;
}

// Runs `f` with one retry on a stale connection; maps failures to an error envelope.
template <class F>
client::Envelope guarded(mysql::MysqlConnection& db, const char* what, F&& f) {
    try {
        client::Envelope out;
        db.run_idempotent([&] { out = f(); });
        return out;
    } catch (const sql::SQLException& e) {
        if (mysql::is_connection_error(e)) db.reset();
        spdlog::warn("reader: {} failed: {} ({})", what, e.what(), e.getErrorCode());
        return error_envelope(client::UNAVAILABLE, "storage unavailable, retry");
    } catch (const std::exception& e) {
        spdlog::error("reader: {} failed: {}", what, e.what());
        return error_envelope(client::INTERNAL, "internal error");
    }
}

void fill_deliver(client::Deliver& d, std::uint64_t conv, sql::ResultSet& rs) {
    d.set_conversation_id(conv);
    d.set_seq(rs.getUInt64(1));
    d.set_msg_id(rs.getUInt64(2));
    d.set_sender_user_id(rs.getUInt64(3));
    d.set_sender_device_id(rs.getString(4).asStdString());
    d.set_client_msg_id(rs.getString(5).asStdString());
    const auto type = static_cast<client::MessageType>(rs.getUInt(6));
    d.set_type(type);
    const auto body = rs.getString(7).asStdString();
    if (type == client::FILE)
        d.mutable_file()->ParseFromString(body);
    else if (type == client::GROUP_EVENT)
        d.mutable_group_event()->ParseFromString(body);
    else
        d.set_text(body);
    d.set_created_ms(rs.getInt64(8));
}

// Every group the user is or was a member of (bounded), appended to each ConversationList: groups
// have no per-member version (a message does not write a row per member), so the list always
// carries them. unread: the others' messages after the read watermark, counted over at most
// 10,000 seqs (a bounded scan of the primary key).
void add_groups(mysql::MysqlConnection& db, std::uint64_t user, client::ConversationList& list) {
    auto& st = db.prepare(
        "SELECT g.id, g.name, g.member_count, g.last_seq, gm.joined_seq, gm.left_seq, gm.delivered_seq, gm.read_seq, "
        "g.updated_ms, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = g.id AND "
        "m.seq > GREATEST(gm.read_seq, gm.joined_seq - 1) AND m.seq <= GREATEST(gm.read_seq, gm.joined_seq - 1) + 10000 "
        "AND (gm.left_seq = 0 OR m.seq <= gm.left_seq) AND m.sender_id <> gm.user_id) "
        "FROM group_members gm JOIN chat_groups g ON g.id = gm.group_id WHERE gm.user_id = ? "
        "ORDER BY g.updated_ms DESC LIMIT 1000");
    st.setUInt64(1, user);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    while (rs->next()) {
        auto* c = list.add_conversations();
        c->set_conversation_id(rs->getUInt64(1));
        c->set_group(true);
        c->set_title(rs->getString(2).asStdString());
        c->set_member_count(rs->getUInt(3));
        const auto left = rs->getUInt64(6);
        c->set_last_seq(left != 0 ? std::min(left, rs->getUInt64(4)) : rs->getUInt64(4));
        c->set_joined_seq(rs->getUInt64(5));
        c->set_left_seq(left);
        c->set_my_delivered_seq(rs->getUInt64(7));
        c->set_my_read_seq(rs->getUInt64(8));
        c->set_updated_ms(rs->getInt64(9));
        c->set_unread(rs->getUInt64(10));
    }
}

}  // namespace

bool Reader::sync_conversations(std::uint64_t user, const client::SyncConversations& req,
                                std::function<void(client::Envelope)> done) {
    return pool_.try_submit([this, user, req, done = std::move(done)] {
        auto& be = backend();
        done(guarded(be.db, "SyncConversations", [&] {
            const std::uint32_t limit = req.limit() == 0 ? 500 : std::min<std::uint32_t>(req.limit(), 1000);
            auto& st = be.db.prepare(
                "SELECT conversation_id, peer_id, last_seq, my_delivered_seq, my_read_seq, peer_delivered_seq, "
                "peer_read_seq, version, updated_ms, unread FROM user_conversations WHERE user_id = ? AND version > ? "
                "ORDER BY version LIMIT ?");
            st.setUInt64(1, user);
            st.setUInt64(2, req.cursor());
            st.setUInt(3, limit + 1);
            std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
            client::Envelope env;
            auto* list = env.mutable_conversation_list();
            list->set_next_cursor(req.cursor());
            while (rs->next()) {
                if (static_cast<std::uint32_t>(list->conversations_size()) == limit) {
                    list->set_has_more(true);
                    break;
                }
                auto* c = list->add_conversations();
                c->set_conversation_id(rs->getUInt64(1));
                c->set_peer_user_id(rs->getUInt64(2));
                c->set_last_seq(rs->getUInt64(3));
                c->set_my_delivered_seq(rs->getUInt64(4));
                c->set_my_read_seq(rs->getUInt64(5));
                c->set_peer_delivered_seq(rs->getUInt64(6));
                c->set_peer_read_seq(rs->getUInt64(7));
                c->set_unread(rs->getUInt64(10));  // the peer's messages after my_read_seq (stored)
                c->set_updated_ms(rs->getInt64(9));
                list->set_next_cursor(rs->getUInt64(8));
            }
            add_groups(be.db, user, *list);
            return env;
        }));
    });
}

bool Reader::sync_messages(std::uint64_t user, const client::SyncMessages& req,
                           std::function<void(client::Envelope)> done) {
    return pool_.try_submit([this, user, req, done = std::move(done)] {
        auto not_found = [&] {
            client::Envelope env;
            auto* page = env.mutable_message_page();
            page->set_conversation_id(req.conversation_id());
            page->set_code(client::NOT_FOUND);
            return env;
        };
        const bool group = valid_group_id(req.conversation_id());
        if (!group && !is_participant(req.conversation_id(), user)) {
            done(not_found());
            return;
        }
        auto& be = backend();
        done(guarded(be.db, "SyncMessages", [&] {
            // A group: only the seqs of the user's membership, joined_seq .. left_seq (or the end).
            std::uint64_t lowest = 1, highest = ~0ull;
            if (group) {
                auto& m = be.db.prepare(
                    "SELECT m.joined_seq, m.left_seq, g.history_visible FROM group_members m JOIN chat_groups g "
                    "ON g.id = m.group_id WHERE m.group_id = ? AND m.user_id = ?");
                m.setUInt64(1, req.conversation_id());
                m.setUInt64(2, user);
                std::unique_ptr<sql::ResultSet> mr(m.executeQuery());
                if (!mr->next()) return not_found();
                lowest = mr->getUInt(3) != 0 ? 1 : mr->getUInt64(1);  // the group shows its history
                if (mr->getUInt64(2) != 0) highest = mr->getUInt64(2);
            }
            const std::uint32_t limit =
                req.limit() == 0 ? config_.sync_page_limit : std::min(req.limit(), config_.sync_page_limit);
            const bool backward = req.before_seq() != 0;
            auto& st = be.db.prepare(
                backward ? "SELECT seq, msg_id, sender_id, sender_device, client_msg_id, type, body, created_ms FROM messages "
                           "WHERE conversation_id = ? AND seq < ? AND seq >= ? ORDER BY seq DESC LIMIT ?"
                         : "SELECT seq, msg_id, sender_id, sender_device, client_msg_id, type, body, created_ms FROM messages "
                           "WHERE conversation_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?");
            st.setUInt64(1, req.conversation_id());
            if (backward) {
                st.setUInt64(2, std::min(req.before_seq(), highest == ~0ull ? highest : highest + 1));
                st.setUInt64(3, lowest);
            } else {
                st.setUInt64(2, std::max(req.after_seq(), lowest - 1));
                st.setUInt64(3, highest);
            }
            st.setUInt(4, limit + 1);
            std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
            std::vector<client::Deliver> rows;
            bool more = false;
            // The page must fit one client frame: stop before the byte budget is exceeded.
            const std::size_t budget = config_.client_max_frame_bytes > 1024 ? config_.client_max_frame_bytes - 512 : 512;
            std::size_t bytes = 64;
            while (rs->next()) {
                if (rows.size() == limit) {
                    more = true;
                    break;
                }
                client::Deliver d;
                fill_deliver(d, req.conversation_id(), *rs);
                const std::size_t size = d.ByteSizeLong() + 8;
                if (!rows.empty() && bytes + size > budget) {
                    more = true;
                    break;
                }
                bytes += size;
                rows.push_back(std::move(d));
            }
            if (backward) std::reverse(rows.begin(), rows.end());
            client::Envelope env;
            auto* page = env.mutable_message_page();
            page->set_conversation_id(req.conversation_id());
            page->set_has_more(more);
            for (auto& d : rows) *page->add_messages() = std::move(d);
            return env;
        }));
    });
}

bool Reader::read_by(std::uint64_t user, const client::ReadBy& req, std::function<void(client::Envelope)> done) {
    return pool_.try_submit([this, user, req, done = std::move(done)] {
        auto& be = backend();
        done(guarded(be.db, "ReadBy", [&] {
            client::Envelope env;
            auto* r = env.mutable_read_by_result();
            r->set_conversation_id(req.conversation_id());
            r->set_seq(req.seq());
            if (!valid_group_id(req.conversation_id())) {
                r->set_code(client::NOT_FOUND);
                return env;
            }
            auto& st = be.db.prepare(
                "SELECT gm.user_id, gm.role, gm.delivered_seq, gm.read_seq FROM group_members gm JOIN chat_groups g "
                "ON g.id = gm.group_id WHERE gm.group_id = ? AND gm.left_seq = 0 AND g.deleted_seq = 0 LIMIT 100000");
            st.setUInt64(1, req.conversation_id());
            std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
            bool member = false;
            while (rs->next()) {
                const auto id = rs->getUInt64(1);
                if (id == user) {
                    member = true;
                    continue;
                }
                auto* m = r->add_members();
                m->set_user_id(id);
                m->set_role(static_cast<client::GroupRole>(rs->getUInt(2)));
                m->set_delivered_seq(rs->getUInt64(3));
                m->set_read_seq(rs->getUInt64(4));
            }
            if (!member) {  // a stranger learns nothing, not even whether the group exists
                r->clear_members();
                r->set_code(client::NOT_FOUND);
            }
            return env;
        }));
    });
}

bool Reader::group_members(std::uint64_t group, std::function<void(std::vector<std::uint64_t>)> done) {
    return pool_.try_submit([this, group, done = std::move(done)] {
        auto& be = backend();
        std::vector<std::uint64_t> members;
        try {
            auto& st = be.db.prepare(
                "SELECT gm.user_id FROM group_members gm JOIN chat_groups g ON g.id = gm.group_id "
                "WHERE gm.group_id = ? AND gm.left_seq = 0 AND g.deleted_seq = 0 LIMIT 100000");
            st.setUInt64(1, group);
            std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
            while (rs->next()) members.push_back(rs->getUInt64(1));
        } catch (const std::exception& e) {
            if (const auto* se = dynamic_cast<const sql::SQLException*>(&e); se && mysql::is_connection_error(*se)) be.db.reset();
            spdlog::warn("reader: group members of {} failed: {}", group, e.what());
            members.clear();
        }
        done(std::move(members));
    });
}

bool Reader::validate_token(std::string token_hash, std::function<void(internal::TokenResult)> done) {
    return pool_.try_submit([this, token_hash = std::move(token_hash), done = std::move(done)] {
        auto& be = backend();
        internal::TokenResult r;
        try {
            std::optional<tokens::SessionInfo> s;
            be.db.run_idempotent([&] { s = be.tokens.validate(token_hash); });
            if (s) {
                r.set_valid(true);
                r.set_user_id(s->user_id);
                r.set_device_id(s->device_id);
                r.set_expires_ms(s->expires_ms);
                r.set_session_id(s->session_id);
            }
        } catch (const std::exception& e) {
            if (const auto* se = dynamic_cast<const sql::SQLException*>(&e); se && mysql::is_connection_error(*se)) be.db.reset();
            spdlog::warn("reader: token validation failed: {}", e.what());
            r.set_valid(false);
        }
        done(std::move(r));
    });
}

bool Reader::friends_of(std::uint64_t user, std::function<void(std::vector<std::uint64_t>)> done) {
    return pool_.try_submit([this, user, done = std::move(done)] {
        auto& be = backend();
        std::vector<std::uint64_t> out;
        try {
            be.db.run_idempotent([&] {
                out.clear();
                auto& st = be.db.prepare("SELECT friend_id FROM friendships WHERE user_id = ? LIMIT 10000");
                st.setUInt64(1, user);
                std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
                while (rs->next()) out.push_back(rs->getUInt64(1));
            });
        } catch (const std::exception& e) {
            spdlog::warn("reader: friends of {} failed: {}", user, e.what());
        }
        done(std::move(out));
    });
}

bool Reader::pair_policy(std::uint64_t a, std::uint64_t b, std::function<void(PairPolicy)> done) {
    return pool_.try_submit([this, a, b, done = std::move(done)] {
        auto& be = backend();
        PairPolicy p;
        try {
            be.db.run_idempotent([&] { p = policy_.get(be.db, a, b); });
        } catch (const std::exception& e) {
            spdlog::warn("reader: policy lookup failed: {}", e.what());
            p.blocked = true;  // fail closed
        }
        done(p);
    });
}

bool Reader::check(std::function<void(bool)> done) {
    return pool_.try_submit([this, done = std::move(done)] {
        auto& be = backend();
        bool ok = true;
        try {
            be.db.run_idempotent([&] { be.db.execute("DO 1"); });
        } catch (const std::exception&) {
            ok = false;
        }
        done(ok);
    });
}

}  // namespace im::transfer
