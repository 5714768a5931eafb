// Several im-transfer replicas (docs/ARCHITECTURE.md "Ownership"): the shards are shared, a new
// transfer takes its share, a SIGTERM'd one hands its shards over, a kill -9'd one loses them
// after its lease, and through all of it every message is SENT once, delivered once and in order
// (imclient against the real cluster). Also: links that do not prove the cluster secret are
// refused (issue 17, item 3), and a 60 s MariaDB outage stops no process and loses nothing
// (issue 17, item 4; private MariaDB and Redis, see PrivateServers).
#include <gtest/gtest.h>

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <sys/wait.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <csignal>
#include <iostream>
#include <map>
#include <thread>

#include "cluster.hpp"
#include "im/proto/internal.pb.h"
#include "im/server/clock.hpp"
#include "im/server/link_auth.hpp"
#include "im/server/mysql.hpp"
#include "im/wire/frame_codec.hpp"
#include "im/wire/ids.hpp"
#include "imclient_app.hpp"
#include "private_servers.hpp"

namespace im::test {
namespace {

double metric_sum(std::uint16_t admin_port, const std::string& name) {
    try {
        HttpClient admin("127.0.0.1", admin_port);
        const auto body = admin.get("/metrics").body;
        double sum = 0;
        for (std::size_t pos = 0; pos < body.size();) {
            const auto end = std::min(body.find('\n', pos), body.size());
            const auto line = body.substr(pos, end - pos);
            if (line.rfind(name + " ", 0) == 0 || line.rfind(name + "{", 0) == 0)
                sum += std::stod(line.substr(line.rfind(' ') + 1));
            pos = end + 1;
        }
        return sum;
    } catch (const std::exception&) {
        return -1;
    }
}

// Pairs of imclient users sending to each other on every connector, with the checks the delivery
// contract asks for at the end.
class Traffic {
public:
    Traffic(Cluster& cl, int pairs) : cl_(cl) {
        for (int p = 0; p < pairs; ++p) {
            auto a = cl.user("s" + std::to_string(p));
            auto b = cl.user("r" + std::to_string(p));
            cl.befriend(a, b);
            users_.push_back({a, b});
        }
        for (std::size_t p = 0; p < users_.size(); ++p) {
            senders_.push_back(open(users_[p].first, static_cast<int>(p)));
            receivers_.push_back(open(users_[p].second, static_cast<int>(p + 1)));
        }
    }

    // Every pair sends `n` messages, one every `gap`, in a thread per pair (returns at once).
    void start(int n, std::chrono::milliseconds gap) {
        per_pair_ = n;
        for (std::size_t p = 0; p < users_.size(); ++p) {
            threads_.emplace_back([this, p, n, gap] {
                for (int i = 0; i < n && !abort_; ++i) {
                    (*senders_[p])->send_text(users_[p].second.id, "m" + std::to_string(i));
                    std::this_thread::sleep_for(gap);
                }
            });
        }
    }
    void join() {
        for (auto& t : threads_) t.join();
        threads_.clear();
    }
    ~Traffic() {
        abort_ = true;
        join();
    }

    // Waits for every message to be SENT and delivered; then checks the contract. Returns a summary.
    void expect_all_delivered(std::chrono::seconds timeout) {
        join();
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (std::size_t p = 0; p < users_.size(); ++p) {
            auto& s = *senders_[p];
            auto& r = *receivers_[p];
            const auto left = [&] { return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()); };
            EXPECT_TRUE(s.ev.wait([&] { return s.ev.acks.size() + s.ev.failures.size() >= static_cast<std::size_t>(per_pair_); }, left()))
                << "pair " << p << ": " << s.ev.ack_count() << " of " << per_pair_ << " SENT";
            EXPECT_TRUE(r.ev.wait([&] { return r.ev.messages.size() >= static_cast<std::size_t>(per_pair_); }, left()))
                << "pair " << p << ": " << r.ev.message_count() << " of " << per_pair_ << " delivered";
        }
        std::this_thread::sleep_for(300ms);  // a late duplicate would show now
        for (std::size_t p = 0; p < users_.size(); ++p) {
            auto& s = *senders_[p];
            auto& r = *receivers_[p];
            const auto conv = conversation_id(users_[p].first.id, users_[p].second.id);
            s.ev.locked([&] { EXPECT_TRUE(s.ev.failures.empty()) << "pair " << p << ": a send failed for good"; });
            r.ev.locked([&] {
                ASSERT_EQ(r.ev.messages.size(), static_cast<std::size_t>(per_pair_)) << "pair " << p;
                for (std::size_t i = 0; i < r.ev.messages.size(); ++i) {
                    EXPECT_EQ(r.ev.messages[i].seq, i + 1) << "pair " << p;
                    EXPECT_EQ(r.ev.messages[i].text, "m" + std::to_string(i)) << "pair " << p << " (order)";
                }
            });
            EXPECT_EQ(cl_.stored_messages(conv), static_cast<std::uint64_t>(per_pair_)) << "pair " << p << " (stored once)";
        }
    }

private:
    std::unique_ptr<App> open(const TestUser& u, int first_connector) {
        imclient::Options o;
        o.rest_url = "http://127.0.0.1:" + std::to_string(cl_.rest().port());
        const int n = cl_.connector_count();
        for (int k = 0; k < n; ++k) o.connectors.push_back("127.0.0.1:" + std::to_string(cl_.connector_port((first_connector + k) % n)));
        o.device_id = "dev";
        auto app = std::make_unique<App>();
        app->client = std::make_unique<imclient::Client>(o);
        app->ev.attach(*app->client);
        app->info = await(app->client->login(u.username, u.password));
        return app;
    }

    Cluster& cl_;
    std::vector<std::pair<TestUser, TestUser>> users_;
    std::vector<std::unique_ptr<App>> senders_, receivers_;
    std::vector<std::thread> threads_;
    std::atomic<bool> abort_{false};
    int per_pair_ = 0;
};

Cluster& two_transfer_cluster(std::unique_ptr<Cluster>& holder, const std::string& name) {
    ClusterOptions o;
    o.name = name;
    o.transfers = 2;
    holder = std::make_unique<Cluster>(o);
    return *holder;
}

TEST(TransferScaleout, TwoTransfersShareTheShardsAndBothStoreMessages) {
    std::unique_ptr<Cluster> holder;
    auto& cl = two_transfer_cluster(holder, "scale-share");
    ASSERT_TRUE(cl.wait_shards_settled()) << "shards: " << cl.owned_shards(0) << " + " << cl.owned_shards(1);
    const int a = cl.owned_shards(0), b = cl.owned_shards(1);
    EXPECT_EQ(a + b, static_cast<int>(kShardCount));
    EXPECT_GT(a, 300) << "rendezvous hashing balances two members (expected about 512 each)";
    EXPECT_GT(b, 300);
    {
        Traffic t(cl, 12);
        t.start(20, 2ms);
        t.expect_all_delivered(60s);
    }
    EXPECT_GT(metric_sum(cl.transfer_admin_port(0), "im_transfer_messages_stored_total"), 0);
    EXPECT_GT(metric_sum(cl.transfer_admin_port(1), "im_transfer_messages_stored_total"), 0);
    // shard_owner agrees with what the transfers announce.
    auto& st = cl.db().db().prepare("SELECT COUNT(DISTINCT epoch), COUNT(*) FROM shard_owner WHERE epoch <> 0");
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    ASSERT_TRUE(rs->next());
    EXPECT_EQ(rs->getUInt(1), 2u);
    EXPECT_EQ(rs->getUInt(2), kShardCount);
}

TEST(TransferScaleout, SigtermHandsTheShardsOverAndNothingIsLost) {
    std::unique_ptr<Cluster> holder;
    auto& cl = two_transfer_cluster(holder, "scale-drain");
    ASSERT_TRUE(cl.wait_shards_settled());
    Traffic t(cl, 10);
    t.start(60, 10ms);
    std::this_thread::sleep_for(250ms);
    const auto st = cl.transfer(1).stop(SIGTERM, 20s);
    ASSERT_TRUE(st.has_value());
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "status " << *st;
    EXPECT_NE(cl.transfer(1).log_contents().find("handed"), std::string::npos) << cl.transfer(1).log_file();
    // It handed everything over before leaving: the other one owns every shard at once.
    EXPECT_EQ(cl.owned_shards(0), static_cast<int>(kShardCount));
    t.expect_all_delivered(60s);
    std::cerr << "held " << metric_sum(cl.connector_admin_port(0), "im_connector_held_total") + metric_sum(cl.connector_admin_port(1), "im_connector_held_total")
              << ", rerouted " << metric_sum(cl.connector_admin_port(0), "im_connector_rerouted_total") + metric_sum(cl.connector_admin_port(1), "im_connector_rerouted_total")
              << "\n";
}

TEST(TransferScaleout, KilledTransfersShardsAreTakenOverAfterTheLease) {
    std::unique_ptr<Cluster> holder;
    auto& cl = two_transfer_cluster(holder, "scale-kill");
    ASSERT_TRUE(cl.wait_shards_settled());
    Traffic t(cl, 10);
    t.start(60, 10ms);
    std::this_thread::sleep_for(250ms);
    cl.stop_transfer(SIGKILL, 1);
    const auto killed = std::chrono::steady_clock::now();
    while (cl.owned_shards(0) != static_cast<int>(kShardCount) && std::chrono::steady_clock::now() - killed < 20s) {
        std::this_thread::sleep_for(20ms);
    }
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed);
    std::cerr << "takeover after kill -9: " << took.count() << " ms (lease 2 s)\n";
    EXPECT_EQ(cl.owned_shards(0), static_cast<int>(kShardCount));
    EXPECT_LT(took, 5s) << "ownership.lease_ttl=2s plus a poll";
    t.expect_all_delivered(60s);
    EXPECT_GT(metric_sum(cl.transfer_admin_port(0), "im_transfer_shards_taken_over_total"), 0);
}

TEST(TransferScaleout, ANewTransferTakesItsShareWhileMessagesFlow) {
    ClusterOptions o;
    o.name = "scale-join";
    Cluster cl(o);
    ASSERT_TRUE(cl.wait_shards_settled());
    ASSERT_EQ(cl.owned_shards(0), static_cast<int>(kShardCount));
    Traffic t(cl, 10);
    t.start(60, 10ms);
    std::this_thread::sleep_for(200ms);
    const auto added = std::chrono::steady_clock::now();
    const int i = cl.add_transfer();
    ASSERT_TRUE(cl.wait_shards_settled(20s));
    while (cl.owned_shards(i) < 300 && std::chrono::steady_clock::now() - added < 20s) std::this_thread::sleep_for(20ms);
    std::cerr << "the new transfer owns " << cl.owned_shards(i) << " shards after "
              << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - added).count()
              << " ms\n";
    EXPECT_GT(cl.owned_shards(i), 300);
    EXPECT_GT(metric_sum(cl.transfer_admin_port(0), "im_transfer_shards_handed_over_total"), 300);
    t.expect_all_delivered(60s);
}

// ---- issue 17, item 3: links must authenticate --------------------------------------------

// A blocking link to a transfer, speaking internal.proto frames.
class RawLink {
public:
    explicit RawLink(std::uint16_t port) : socket_(io_) {
        socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port});
        timeval tv{3, 0};
        ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    void send(const internal::LinkEnvelope& env) { boost::asio::write(socket_, boost::asio::buffer(wire::encode_frame(env))); }
    // The next frame, or nullopt when the transfer closed the link (or said nothing for 3 s).
    std::optional<internal::LinkEnvelope> receive() {
        try {
            char header[wire::kHeaderBytes];
            boost::asio::read(socket_, boost::asio::buffer(header));
            std::string body(wire::read_header(header), '\0');
            boost::asio::read(socket_, boost::asio::buffer(body));
            internal::LinkEnvelope env;
            if (!env.ParseFromString(body)) return std::nullopt;
            return env;
        } catch (const std::exception&) {
            return std::nullopt;
        }
    }

private:
    boost::asio::io_context io_;
    boost::asio::ip::tcp::socket socket_;
};

internal::LinkEnvelope forged_send(std::uint64_t as_user, std::uint64_t to_user) {
    internal::LinkEnvelope req;
    auto* cr = req.mutable_client_request();
    cr->mutable_session()->set_user_id(as_user);
    cr->mutable_session()->set_device_id("dev1");
    cr->mutable_session()->set_login_epoch(1);
    auto* send = cr->mutable_request()->mutable_send();
    cr->mutable_request()->set_request_id(7);
    send->set_peer_user_id(to_user);
    send->set_client_msg_id(random_cmid());
    send->set_stream_seq(1);
    send->set_type(client::TEXT);
    send->set_text("forged by someone who reached the transfer port");
    return req;
}

TEST(Issue17Item3, LinksThatDoNotProveTheClusterSecretAreRefused) {
    ClusterOptions o;
    o.name = "link-auth";
    o.connectors = 1;
    Cluster cl(o);
    ASSERT_TRUE(cl.wait_shards_settled());
    auto a = cl.user("alice");
    auto b = cl.user("bob");
    cl.befriend(a, b);
    const auto port = cl.transfer_port();

    // 1. A Hello without a proof, then a request acting as alice: nothing is answered or stored.
    {
        RawLink link(port);
        internal::LinkEnvelope hello;
        hello.mutable_hello()->set_connector_id("intruder");
        hello.mutable_hello()->set_connector_epoch(1);
        link.send(hello);
        link.send(forged_send(a.id, b.id));
        std::optional<internal::LinkEnvelope> got;
        bool any_answer = false;
        while ((got = link.receive())) any_answer = any_answer || got->has_client_response() || got->has_hello_ack();
        EXPECT_FALSE(any_answer) << "the transfer answered a link that proved nothing";
    }
    // 2. A request as the very first frame.
    {
        RawLink link(port);
        link.send(forged_send(a.id, b.id));
        EXPECT_FALSE(link.receive().has_value());
    }
    // 3. A proof made with another secret; 4. a replayed (valid) Hello.
    {
        RawLink link(port);
        internal::LinkEnvelope hello;
        const auto proof = link_auth::prove_hello("not-the-cluster-secret-at-all", "intruder", 2, wall_ms());
        hello.mutable_hello()->set_connector_id("intruder");
        hello.mutable_hello()->set_connector_epoch(2);
        hello.mutable_hello()->set_auth_nonce(proof.nonce);
        hello.mutable_hello()->set_auth_time_ms(proof.time_ms);
        hello.mutable_hello()->set_auth_mac(proof.mac);
        link.send(hello);
        EXPECT_FALSE(link.receive().has_value());
    }
    const char* secret = std::getenv("IM_CLUSTER_SECRET");
    ASSERT_NE(secret, nullptr);
    internal::LinkEnvelope good;
    const auto proof = link_auth::prove_hello(secret, "tester", 3, wall_ms());
    good.mutable_hello()->set_connector_id("tester");
    good.mutable_hello()->set_connector_epoch(3);
    good.mutable_hello()->set_auth_nonce(proof.nonce);
    good.mutable_hello()->set_auth_time_ms(proof.time_ms);
    good.mutable_hello()->set_auth_mac(proof.mac);
    {
        RawLink link(port);
        link.send(good);
        auto ack = link.receive();
        ASSERT_TRUE(ack && ack->has_hello_ack()) << "a proven Hello is answered";
        EXPECT_TRUE(link_auth::verify_ack(secret, ack->hello_ack().transfer_id(), ack->hello_ack().transfer_epoch(),
                                          proof.nonce, ack->hello_ack().auth_mac()));
    }
    {
        RawLink link(port);
        link.send(good);  // the same Hello again: a replay
        EXPECT_FALSE(link.receive().has_value());
    }
    EXPECT_EQ(cl.stored_messages(conversation_id(a.id, b.id)), 0u) << "a forged request was stored";
    EXPECT_GE(metric_sum(cl.transfer_admin_port(), "im_transfer_link_auth_refused_total"), 4);
}

// ---- issue 17, item 4: a MariaDB outage stops no process ----------------------------------

TEST(Issue17Item4, MariadbDownFor60sNoProcessExitsAndNothingIsLost) {
    PrivateServers servers;  // this test restarts MariaDB: its own, not the run's
    ClusterOptions o;
    o.name = "mysql-outage";
    Cluster cl(o);
    ASSERT_TRUE(cl.wait_shards_settled());
    Traffic t(cl, 4);
    t.start(150, 400ms);  // a minute of traffic on both sides of the outage
    std::this_thread::sleep_for(3s);
    servers.stop("mysql");
    const auto down_at = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(60s);
    EXPECT_TRUE(cl.transfer().running()) << "im-transfer exited during the outage:\n" << cl.transfer().log_file();
    for (int i = 0; i < 2; ++i) EXPECT_TRUE(cl.connector(i).running());
    EXPECT_TRUE(cl.rest().process().running());
    servers.start("mysql");
    std::cerr << "MariaDB was down for "
              << std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - down_at).count()
              << " s\n";
    t.expect_all_delivered(120s);
    EXPECT_TRUE(cl.transfer().running());
    // It resumed by itself: ready again, owning every shard.
    EXPECT_EQ(cl.owned_shards(0), static_cast<int>(kShardCount));
}

}  // namespace
}  // namespace im::test
