// Offline push survives a RabbitMQ outage (DESIGN.md delivery contract 7: "RabbitMQ down: pushes
// wait in the outbox, messages keep flowing"), end to end with real binaries: the test stops the
// test run's RabbitMQ with scripts/services.sh, sends to an offline user, starts it again and
// expects the webhook event exactly once.
//
// It stops the broker every other test of the run shares: tests/integration/CMakeLists.txt gives
// this binary's tests RUN_SERIAL, and every test name starts with RabbitRestart.
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "platform_test_util.hpp"

namespace im::test {
namespace {

using namespace platform;

std::string services_log() { return TestEnv::get().run_dir + "/push-restart-services.log"; }

// scripts/services.sh <args> for this test run (IM_RUN_DIR and the ports come from the environment
// that scripts/test exports); its output goes to services_log(). Returns the exit status.
int services(const std::string& args) {
    const auto cmd = source_dir() + "/scripts/services.sh " + args + " >>" + services_log() + " 2>&1";
    const int rc = std::system(cmd.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// `services.sh start rabbitmq`, up to 3 times: the node refuses to boot while its Erlang distribution
// port is held by another socket ({dist_port_already_used, Port, not_erlang}), which happens when
// the run's ports lie in the kernel's ephemeral range (32768-60999 here) and some outgoing
// connection got that local port while the broker was down. scripts/test picks ports below it.
int start_rabbitmq() {
    int rc = -1;
    for (int attempt = 1; attempt <= 3; ++attempt) {
        rc = services("start rabbitmq");
        if (rc == 0) break;
        std::printf("[ note   ] scripts/services.sh start rabbitmq failed (attempt %d, exit %d); see %s\n", attempt, rc,
                    services_log().c_str());
        std::this_thread::sleep_for(2s);
    }
    return rc;
}

// Starts RabbitMQ again if the test stopped it and did not get to start it (a failed assertion).
struct RabbitGuard {
    bool stopped = false;
    ~RabbitGuard() {
        if (stopped && start_rabbitmq() != 0) {
            ADD_FAILURE() << "could not start RabbitMQ again:\n" << read_file(services_log());
        }
    }
};

std::uint64_t outbox_up_to_seq(Cluster& cl, std::uint64_t user, std::uint64_t conv) {
    auto& st = cl.db().db().prepare("SELECT up_to_seq FROM push_pending WHERE user_id = ? AND conversation_id = ?");
    st.setUInt64(1, user);
    st.setUInt64(2, conv);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    return rs->next() ? rs->getUInt64(1) : 0;
}

TEST(RabbitRestart, OutboxWaitsWhileRabbitMqIsDownAndTheEventArrivesOnceItIsBack) {
    RabbitGuard guard;
    Webhook hook;
    Cluster cl(push_cluster_options("push-restart", hook.server.url("/hook")));
    auto a = cl.user("ra");
    auto b = cl.user("rb");
    cl.befriend(a, b);
    const auto conv = conversation_id(a.id, b.id);
    auto ca = cl.connect(0, a.token, "dev1");

    // Warm-up: the whole path works (exchange, queue and consumer exist) before the outage.
    ASSERT_EQ(send_text(*ca, b.id, "warm-up", 1).code(), client::ERROR_NONE);
    ASSERT_TRUE(eventually([&] { return hook.events_for(b.id, conv).size() == 1; }, 20s)) << hook.dump();
    ASSERT_TRUE(eventually([&] { return outbox_rows(cl) == 0; }, 5s));

    auto t0 = Clock::now();
    guard.stopped = true;
    ASSERT_EQ(services("stop rabbitmq"), 0) << read_file(services_log());
    std::printf("[ timing ] RabbitMQ stopped in %.0f ms\n", elapsed_ms(t0));
    ASSERT_EQ(services("status rabbitmq"), 3) << "RabbitMQ still runs";

    // Messages keep flowing: 5 to offline B, each SENT promptly.
    for (std::uint64_t n = 2; n <= 6; ++n) {
        const auto ts = Clock::now();
        auto r = send_text(*ca, b.id, "while RabbitMQ is down " + std::to_string(n), n, n - 1);
        ASSERT_EQ(r.code(), client::ERROR_NONE) << r.ShortDebugString();
        EXPECT_EQ(r.seq(), n);
        EXPECT_LT(elapsed_ms(ts), 2000.0) << "SENT waited for RabbitMQ";
    }
    std::this_thread::sleep_for(3s);  // coalesce_delay is 300 ms: the relay has tried by now
    EXPECT_EQ(hook.server.requests().size(), 1u) << "no webhook call while RabbitMQ is down:\n" << hook.dump();
    EXPECT_EQ(outbox_rows(cl), 1u) << "the event waits in the outbox";
    EXPECT_EQ(outbox_up_to_seq(cl, b.id, conv), 6u);

    t0 = Clock::now();
    ASSERT_EQ(start_rabbitmq(), 0) << read_file(services_log());
    guard.stopped = false;
    std::printf("[ timing ] RabbitMQ started in %.0f ms\n", elapsed_ms(t0));
    t0 = Clock::now();
    ASSERT_TRUE(eventually([&] { return hook.events_for(b.id, conv).size() >= 2; }, 60s))
        << "no event after RabbitMQ came back; calls:\n" << hook.dump() << "transfer log " << cl.transfer().log_file()
        << ", rest log " << cl.rest().process().log_file();
    std::printf("[ timing ] event delivered %.0f ms after RabbitMQ was back\n", elapsed_ms(t0));
    std::this_thread::sleep_for(3s);  // a duplicate would show now
    const auto ev = hook.events_for(b.id, conv);
    ASSERT_EQ(ev.size(), 2u) << "exactly once; calls:\n" << hook.dump();
    const auto j = nlohmann::json::parse(ev[1].body);
    const auto id = std::to_string(b.id) + ":" + std::to_string(conv) + ":6";
    EXPECT_EQ(j["up_to_seq"].get<std::uint64_t>(), 6u) << ev[1].body;
    EXPECT_EQ(j["event_id"], id);
    EXPECT_EQ(ev[1].header("idempotency-key"), id);
    EXPECT_EQ(j["unread"].get<std::uint64_t>(), 6u);
    EXPECT_TRUE(eventually([&] { return outbox_rows(cl) == 0; }, 5s));
    EXPECT_EQ(cl.stored_messages(conv), 6u);
}

}  // namespace
}  // namespace im::test
