// The chaos test of several transfers (issue 12): 3 connectors, 2-3 transfers, im-rest, private
// MariaDB and Redis (this test restarts them), and 100 users in 50 pairs chatting both ways through
// imclient with unique client_msg_ids, while a driver, at moments drawn from a seed, kill -9s and
// restarts a transfer, SIGTERMs one, starts an extra one, kill -9s and restarts a connector, and
// restarts Redis and MariaDB. Clients never give up. After a drain it checks the delivery contract
// on what every device received below imclient's dedupe (Options::on_raw_message) and above it
// (on_message), and prints one summary line (also to $IM_RUN_DIR/chaos-summary.txt, which
// scripts/test prints):
//
//   chaos seed=S: sent=.. sent_acked=.. delivered=.. lost=0 duplicated=0 reordered=0 kills=..
//       handovers=.. max_ack_wait_ms=.. (raw repeats=..)
//
// - lost: a SENT message its recipient never received (raw or app), or one that never got SENT.
// - duplicated: a client_msg_id that reached its recipient under two (seq, msg_id), or an
//   on_message fired twice for one (conversation, seq).
// - reordered: within a pair and direction, a later send with a lower seq, or the recipient's
//   app receiving them out of send order.
// - raw repeats (not errors): the same (conversation, seq, msg_id) arriving twice, a push and a
//   sync page racing; the library hands it out once.
// Environment: IM_CHAOS_SEED (default: from the clock), IM_CHAOS_SECONDS (default 60).
#include <gtest/gtest.h>

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "cluster.hpp"
#include "im/server/mysql.hpp"
#include "im/wire/ids.hpp"
#include "imclient_app.hpp"
#include "private_servers.hpp"

namespace im::test {
namespace {

using Clock = std::chrono::steady_clock;

// One user's client and everything it saw, under its own lock.
struct ChaosUser {
    TestUser user;
    std::uint64_t peer = 0;
    std::unique_ptr<imclient::Client> client;

    struct Sent {
        std::size_t index = 0;
        Clock::time_point at;
        std::uint64_t seq = 0, msg_id = 0;
        bool acked = false;
        std::int64_t wait_ms = 0;
    };
    struct Arrival {
        std::uint64_t conv = 0, seq = 0, msg_id = 0;
        std::string cmid;
    };
    std::mutex mu;
    std::map<std::string, Sent> sent;  // by client_msg_id (hex)
    std::size_t next_index = 0;
    std::vector<Arrival> raw;  // below the dedupe
    std::vector<Arrival> app;  // on_message
    std::size_t failures = 0;
    std::uint64_t peer_delivered = 0;  // the peer's DELIVERED watermark in our conversation
};

std::string env_or(const char* name, const std::string& fallback) {
    const char* v = std::getenv(name);
    return (v != nullptr && *v != '\0') ? v : fallback;
}

TEST(Chaos, ShardMovesKillsAndServerRestartsLoseNothing) {
    const std::uint64_t seed = std::stoull(env_or(
        "IM_CHAOS_SEED", std::to_string(static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()) % 100000)));
    const int chaos_seconds = std::stoi(env_or("IM_CHAOS_SECONDS", "60"));
    std::cerr << "chaos: seed " << seed << ", " << chaos_seconds << " s of faults\n";
    std::mt19937_64 rng(seed);

    PrivateServers servers;  // restarted below: this test's own MariaDB and Redis
    ClusterOptions o;
    o.name = "chaos";
    o.connectors = 3;
    o.transfers = 2;
    o.spread_hosts = true;  // every transfer and connector on a loopback address of its own
    Cluster cl(o);
    ASSERT_TRUE(cl.wait_shards_settled());

    // 50 pairs, each user on its own first connector (they move on when it dies).
    constexpr int kPairs = 50;
    std::vector<std::unique_ptr<ChaosUser>> users;
    for (int p = 0; p < kPairs; ++p) {
        auto a = std::make_unique<ChaosUser>();
        auto b = std::make_unique<ChaosUser>();
        a->user = cl.user("ca" + std::to_string(p));
        b->user = cl.user("cb" + std::to_string(p));
        cl.befriend(a->user, b->user);
        a->peer = b->user.id;
        b->peer = a->user.id;
        users.push_back(std::move(a));
        users.push_back(std::move(b));
    }
    for (std::size_t i = 0; i < users.size(); ++i) {
        auto* u = users[i].get();
        imclient::Options opt;
        opt.rest_url = "http://127.0.0.1:" + std::to_string(cl.rest().port());
        for (int k = 0; k < 3; ++k)
            opt.connectors.push_back(cl.connector_address((static_cast<int>(i) + k) % 3));
        opt.device_id = "chaos";
        opt.reconnect_max = 2000ms;
        opt.on_raw_message = [u](const imclient::Message& m, bool) {
            std::lock_guard lock(u->mu);
            u->raw.push_back({m.conversation_id, m.seq, m.msg_id, m.client_msg_id});
        };
        u->client = std::make_unique<imclient::Client>(opt);
        u->client->on_message([u](const imclient::Message& m) {
            std::lock_guard lock(u->mu);
            u->app.push_back({m.conversation_id, m.seq, m.msg_id, m.client_msg_id});
        });
        u->client->on_sent([u](const imclient::SendAck& a) {
            std::lock_guard lock(u->mu);
            auto it = u->sent.find(a.client_msg_id);
            if (it == u->sent.end()) return;
            it->second.acked = true;
            it->second.seq = a.seq;
            it->second.msg_id = a.msg_id;
            it->second.wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - it->second.at).count();
        });
        u->client->on_send_failed([u](const imclient::SendFailure&) {
            std::lock_guard lock(u->mu);
            ++u->failures;
        });
        u->client->on_receipt([u](std::uint64_t conv, std::uint64_t who, imclient::ReceiptKind kind, std::uint64_t up_to) {
            if (who != u->peer || kind != imclient::ReceiptKind::delivered) return;
            if (conv != conversation_id(u->user.id, u->peer)) return;
            std::lock_guard lock(u->mu);
            u->peer_delivered = std::max(u->peer_delivered, up_to);
        });
        await(u->client->login(u->user.username, u->user.password), 60s);
    }

    // Senders: every user, one message every ~250 ms while fewer than 8 are unacknowledged.
    std::atomic<bool> sending{true};
    std::thread sender([&] {
        std::mt19937 jitter(static_cast<unsigned>(seed));
        while (sending) {
            for (auto& up : users) {
                auto& u = *up;
                if (u.client->pending_sends() >= 8) continue;
                std::size_t index = 0;
                {
                    std::lock_guard lock(u.mu);
                    index = u.next_index++;
                }
                const auto at = Clock::now();
                // The id is known only after send_text returns: record it under the lock that
                // on_sent takes, so an ack can never come before the record.
                std::lock_guard lock(u.mu);
                const auto cmid = u.client->send_text(u.peer, "c" + std::to_string(index));
                u.sent[cmid] = ChaosUser::Sent{index, at};
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(200 + jitter() % 100));
        }
    });

    // The faults, at moments drawn from the seed.
    enum class Fault { kill_transfer, sigterm_transfer, extra_transfer, kill_connector, restart_redis, restart_mysql };
    std::vector<Fault> faults = {Fault::kill_transfer,  Fault::sigterm_transfer, Fault::extra_transfer,
                                 Fault::kill_connector, Fault::restart_redis,    Fault::restart_mysql};
    std::uniform_int_distribution<int> extra(0, 5);
    faults.push_back(static_cast<Fault>(extra(rng)));
    faults.push_back(static_cast<Fault>(extra(rng)));
    std::shuffle(faults.begin() + 0, faults.end(), rng);
    const auto started = Clock::now();
    const auto slot = std::chrono::milliseconds(chaos_seconds * 1000 / static_cast<int>(faults.size() + 1));
    int kills = 0;
    std::ostringstream log;
    auto running_transfers = [&] {
        std::vector<int> r;
        for (int i = 0; i < cl.transfer_count(); ++i)
            if (cl.transfer(i).running()) r.push_back(i);
        return r;
    };
    for (std::size_t k = 0; k < faults.size(); ++k) {
        // Each fault at a random moment of its own slot.
        const auto at = started + slot * static_cast<int>(k + 1) -
                        std::chrono::milliseconds(std::uniform_int_distribution<int>(0, static_cast<int>(slot.count() / 2))(rng));
        std::this_thread::sleep_until(at);
        const auto t = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
        const auto pause = std::chrono::milliseconds(std::uniform_int_distribution<int>(500, 3000)(rng));
        switch (faults[k]) {
            case Fault::kill_transfer: {
                auto r = running_transfers();
                const int i = r[rng() % r.size()];
                log << t << "ms kill -9 transfer " << i << "; ";
                cl.stop_transfer(SIGKILL, i);
                ++kills;
                std::this_thread::sleep_for(pause);
                cl.start_transfer(i);
                break;
            }
            case Fault::sigterm_transfer: {
                auto r = running_transfers();
                const int i = r[rng() % r.size()];
                log << t << "ms SIGTERM transfer " << i << "; ";
                cl.stop_transfer(SIGTERM, i);
                std::this_thread::sleep_for(pause);
                cl.start_transfer(i);
                break;
            }
            case Fault::extra_transfer:
                if (cl.transfer_count() < 3) {
                    log << t << "ms extra transfer; ";
                    cl.add_transfer();
                } else {
                    auto r = running_transfers();
                    const int i = r[rng() % r.size()];
                    log << t << "ms kill -9 transfer " << i << " (3 exist); ";
                    cl.stop_transfer(SIGKILL, i);
                    ++kills;
                    std::this_thread::sleep_for(pause);
                    cl.start_transfer(i);
                }
                break;
            case Fault::kill_connector: {
                const int i = static_cast<int>(rng() % 3);
                log << t << "ms kill -9 connector " << i << "; ";
                cl.stop_connector(i, SIGKILL);
                ++kills;
                std::this_thread::sleep_for(pause);
                cl.start_connector(i);
                break;
            }
            case Fault::restart_redis:
                log << t << "ms restart Redis; ";
                servers.stop("redis");
                std::this_thread::sleep_for(pause);
                servers.start("redis");
                break;
            case Fault::restart_mysql:
                log << t << "ms restart MariaDB; ";
                servers.stop("mysql");
                std::this_thread::sleep_for(pause);
                servers.start("mysql");
                break;
        }
    }
    std::this_thread::sleep_until(started + std::chrono::seconds(chaos_seconds));
    sending = false;
    sender.join();
    std::cerr << "chaos: faults: " << log.str() << "\n";

    // Drain: every message SENT, every SENT message at its recipient, every DELIVERED watermark
    // back at the sender. Bounded.
    const auto drain_deadline = Clock::now() + 180s;
    auto drained = [&] {
        for (std::size_t i = 0; i < users.size(); ++i) {
            auto& u = *users[i];
            auto& peer = *users[i ^ 1];
            if (u.client->pending_sends() != 0) return false;
            std::set<std::string> got;
            std::uint64_t max_seq = 0;
            {
                std::lock_guard lock(peer.mu);
                for (const auto& a : peer.app) got.insert(a.cmid);
            }
            std::lock_guard lock(u.mu);
            for (const auto& [cmid, s] : u.sent) {
                if (!s.acked || got.count(cmid) == 0) return false;
                max_seq = std::max(max_seq, s.seq);
            }
            if (u.peer_delivered < max_seq) return false;
        }
        return true;
    };
    while (!drained() && Clock::now() < drain_deadline) std::this_thread::sleep_for(200ms);
    const bool drained_ok = drained();
    std::this_thread::sleep_for(500ms);  // a late duplicate would show now

    // The checks.
    std::size_t sent = 0, acked = 0, delivered = 0, lost = 0, duplicated = 0, reordered = 0, repeats = 0;
    std::int64_t max_wait = 0;
    std::size_t watermarks_short = 0, failures = 0;
    for (std::size_t i = 0; i < users.size(); ++i) {
        auto& u = *users[i];
        auto& peer = *users[i ^ 1];
        // Both locks in one order for the pair (lower index first), whichever of them is u.
        std::lock_guard lock_first(users[std::min(i, i ^ 1)]->mu);
        std::lock_guard lock_second(users[std::max(i, i ^ 1)]->mu);
        failures += u.failures;
        // What the peer received, by client_msg_id.
        std::map<std::string, std::set<std::pair<std::uint64_t, std::uint64_t>>> raw_by_cmid;  // -> {(seq, msg_id)}
        std::map<std::tuple<std::uint64_t, std::uint64_t, std::uint64_t>, int> raw_count;
        for (const auto& a : peer.raw) {
            if (a.cmid.empty()) continue;
            raw_by_cmid[a.cmid].insert({a.seq, a.msg_id});
            ++raw_count[{a.conv, a.seq, a.msg_id}];
        }
        for (const auto& [key, n] : raw_count) repeats += static_cast<std::size_t>(n - 1);
        std::map<std::pair<std::uint64_t, std::uint64_t>, int> app_count;
        std::map<std::string, std::size_t> app_pos;  // cmid -> position in the peer's on_message order
        for (std::size_t k = 0; k < peer.app.size(); ++k) {
            const auto& a = peer.app[k];
            if (++app_count[{a.conv, a.seq}] > 1) ++duplicated;
            app_pos.emplace(a.cmid, k);
        }
        // Sends in send order.
        std::vector<const ChaosUser::Sent*> order(u.sent.size());
        std::vector<std::string> cmids(u.sent.size());
        for (const auto& [cmid, s] : u.sent) {
            order[s.index] = &s;
            cmids[s.index] = cmid;
        }
        std::uint64_t last_seq = 0;
        std::size_t last_pos = 0;
        bool first = true;
        for (std::size_t k = 0; k < order.size(); ++k) {
            const auto* s = order[k];
            if (s == nullptr) continue;  // an index taken but never handed to send_text (cannot happen)
            ++sent;
            if (!s->acked) {
                ++lost;
                continue;
            }
            ++acked;
            max_wait = std::max(max_wait, s->wait_ms);
            const auto it = raw_by_cmid.find(cmids[k]);
            const auto pos = app_pos.find(cmids[k]);
            if (it == raw_by_cmid.end() || pos == app_pos.end()) {
                ++lost;
                continue;
            }
            ++delivered;
            if (it->second.size() > 1 || it->second.begin()->first != s->seq || it->second.begin()->second != s->msg_id)
                ++duplicated;  // stored twice, or received under another seq/id than SENT said
            if (!first && (s->seq <= last_seq || pos->second <= last_pos)) ++reordered;
            last_seq = s->seq;
            last_pos = pos->second;
            first = false;
        }
        std::uint64_t max_seq = 0;
        for (const auto& [cmid, s] : u.sent) max_seq = std::max(max_seq, s.acked ? s.seq : 0);
        if (u.peer_delivered < max_seq) ++watermarks_short;
    }
    // Ownership changes: every move of a shard bumped its gen.
    std::uint64_t handovers = 0;
    try {
        auto& st = cl.db().db().prepare("SELECT COALESCE(SUM(gen), 0) - COUNT(*) FROM shard_owner");
        std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
        if (rs->next()) handovers = static_cast<std::uint64_t>(std::max<std::int64_t>(0, rs->getInt64(1)));
    } catch (const std::exception& e) {
        std::cerr << "chaos: could not read shard_owner: " << e.what() << "\n";
    }
    std::ostringstream line;
    line << "chaos seed=" << seed << ": sent=" << sent << " sent_acked=" << acked << " delivered=" << delivered
         << " lost=" << lost << " duplicated=" << duplicated << " reordered=" << reordered << " kills=" << kills
         << " handovers=" << handovers << " max_ack_wait_ms=" << max_wait << " (raw repeats=" << repeats
         << ", faults: " << faults.size() << ", transfers: " << cl.transfer_count() << ")";
    std::cerr << line.str() << "\n";
    std::ofstream(TestEnv::get().run_dir + "/chaos-summary.txt", std::ios::app) << line.str() << "\n  faults: " << log.str() << "\n";

    EXPECT_TRUE(drained_ok) << "the drain did not finish in 180 s";
    EXPECT_GT(acked, 5000u) << "too little traffic to mean anything";
    EXPECT_EQ(lost, 0u);
    EXPECT_EQ(duplicated, 0u);
    EXPECT_EQ(reordered, 0u);
    EXPECT_EQ(failures, 0u) << "a send failed for good";
    EXPECT_EQ(watermarks_short, 0u) << "a DELIVERED watermark did not reach its sender";
    EXPECT_GT(kills, 0);
    for (auto& u : users) u->client.reset();  // before the cluster goes
}

}  // namespace
}  // namespace im::test
