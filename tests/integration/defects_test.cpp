// Contract and data-safety defects of issue 17 that need the real cluster: item 3 (links must
// authenticate before any frame is accepted) and item 4 (a MariaDB outage longer than the
// worker-id lease stops no process and loses nothing; private MariaDB and Redis, PrivateServers).
// These tests use only the basic Cluster API, so they also build against the code before the fix.
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <csignal>
#include <iostream>
#include <thread>

#include "chat_traffic.hpp"
#include "cluster.hpp"
#include "im/proto/internal.pb.h"
#include "im/server/redis.hpp"
#include "im/user_status/user_status.hpp"
#include "im/wire/frame_codec.hpp"
#include "im/wire/ids.hpp"
#include "private_servers.hpp"
#include "raw_client.hpp"
#include "raw_link.hpp"

namespace im::test {
namespace {

// ---- issue 17, item 3: links must authenticate --------------------------------------------

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

// Where the cluster's transfer listens, as connectors find it: its Redis registration.
std::pair<std::string, std::uint16_t> transfer_address(Cluster& cl) {
    redis::RedisConfig rc;
    rc.port = TestEnv::get().redis_port;
    redis::RedisConnection redis(rc);
    user_status::UserStatus status(redis, cl.redis_prefix());
    for (int i = 0; i < 100; ++i) {
        for (const auto& t : status.live_transfers()) {
            const auto colon = t.address.rfind(':');
            return {t.address.substr(0, colon), static_cast<std::uint16_t>(std::stoi(t.address.substr(colon + 1)))};
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    throw std::runtime_error("no transfer registered in Redis");
}

TEST(Issue17Item3, AnUnauthenticatedLinkCannotActAsAUser) {
    Cluster cl(ClusterOptions{1, {}, {}, {}, "link-noauth"});
    ASSERT_TRUE(cl.wait_connector_ready(0));
    auto a = cl.user("alice");
    auto b = cl.user("bob");
    cl.befriend(a, b);
    const auto [host, port] = transfer_address(cl);
    ASSERT_EQ(host, "127.0.0.1");

    // 1. A Hello without a proof, then a request acting as alice (what anyone reaching the
    //    transfer port could send): nothing may be answered or stored.
    {
        RawLink link(port);
        internal::LinkEnvelope hello;
        hello.mutable_hello()->set_connector_id("intruder");
        hello.mutable_hello()->set_connector_epoch(1);
        link.send(hello);
        link.send(forged_send(a.id, b.id));
        std::optional<internal::LinkEnvelope> got;
        bool answered = false, acked = false;
        while ((got = link.receive())) {
            answered = answered || got->has_client_response();
            acked = acked || got->has_hello_ack();
        }
        EXPECT_FALSE(acked) << "the transfer accepted a Hello that proved nothing";
        EXPECT_FALSE(answered) << "the transfer answered a request on an unauthenticated link";
    }
    // 2. The request as the very first frame.
    {
        RawLink link(port);
        link.send(forged_send(a.id, b.id));
        EXPECT_FALSE(link.receive().has_value()) << "the transfer answered a link without a Hello";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    EXPECT_EQ(cl.stored_messages(conversation_id(a.id, b.id)), 0u) << "a forged request was stored as alice's message";
}

// ---- issue 17, item 4: a MariaDB outage stops no process ----------------------------------

TEST(Issue17Item4, MariadbDownFor60sNoProcessExitsAndNothingIsLost) {
    PrivateServers servers;  // this test restarts MariaDB: its own, not the run's
    ClusterOptions o;
    o.name = "mysql-outage";
    Cluster cl(o);
    ASSERT_TRUE(cl.wait_connector_ready(0) && cl.wait_connector_ready(1));
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
    // It resumed by itself: ready again.
    HttpClient admin("127.0.0.1", cl.transfer_admin_port());
    EXPECT_EQ(admin.get("/readyz").status, 200);
}

}  // namespace
}  // namespace im::test
