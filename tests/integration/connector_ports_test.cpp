// Several im-connector replicas with ONE configuration on one host network (what
// `docker compose up --scale connector=3` does with host networking): each takes its own port slot
// (connector.port + i, admin.port + i), registers the port it really listens on, and clients reach
// every replica at the address the login answer lists. A replica with port 0 advertises the port
// the kernel gave it. Real binaries (im-rest, im-transfer, im-connector) and real servers.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <netinet/in.h>

#include <chrono>
#include <csignal>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cluster.hpp"
#include "test_env.hpp"

namespace im::test {
namespace {

using namespace std::chrono_literals;

// True when nothing listens on 127.0.0.1:port (a bind works).
bool port_free(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
}

// The first port of `n` consecutive free ports (bounded tries).
std::uint16_t free_run(int n) {
    for (int tries = 0; tries < 200; ++tries) {
        const auto base = pick_free_port();
        if (base + n > 65535) continue;
        bool all = true;
        for (int i = 1; i < n && all; ++i)
            all = port_free(static_cast<std::uint16_t>(base + i));
        if (all) return base;
    }
    throw std::runtime_error("no run of free ports");
}

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (pred()) return true;
        std::this_thread::sleep_for(50ms);
    }
    return pred();
}

std::set<std::string> login_connectors(Cluster& cl, const TestUser& u, const std::string& device) {
    auto r =
        cl.http().post("/v1/sessions",
                       {{"username", u.username}, {"password", u.password}, {"device_id", device}});
    std::set<std::string> out;
    if (r.status != 201) return out;
    const auto body = r.json();
    for (const auto& c : body["connectors"])
        out.insert(c.get<std::string>());
    return out;
}

TEST(ConnectorPortSlots, ReplicasWithOneConfigTakeTheirOwnSlotsAndAdvertiseTheRealPorts) {
    // Logins are polled here: no per-user login limit.
    Cluster cl(ClusterOptions{0, {"rate_limit.login_per_user=0"}, {}, {}, "port-slots"});
    const auto& env = TestEnv::get();
    const auto port = free_run(3);
    const auto admin = free_run(3);
    // One configuration for every replica, given as IM_* variables like the compose file does.
    std::map<std::string, std::string> same{
        {"IM_REDIS_PORT", std::to_string(env.redis_port)},
        {"IM_CONNECTOR_CONNECTOR_PORT", std::to_string(port)},
        {"IM_CONNECTOR_ADMIN_PORT", std::to_string(admin)},
        {"IM_CONNECTOR_CONNECTOR_PORT_SLOTS", "3"},
        {"IM_CONNECTOR_REDIS_KEY_PREFIX", cl.redis_prefix()},
        {"IM_CONNECTOR_LINKS_DISCOVERY_INTERVAL", "200ms"},
        {"IM_CONNECTOR_LINKS_REGISTRATION_TTL", "2s"},
    };
    const std::string logs = env.run_dir + "/port-slots-" + unique_suffix();
    std::vector<std::unique_ptr<ChildProcess>> replicas;
    for (int i = 0; i < 4; ++i) {  // the fourth finds every slot taken
        replicas.push_back(std::make_unique<ChildProcess>());
        replicas.back()->start(env.bin_dir + "/im-connector", {}, same,
                               logs + "-" + std::to_string(i) + ".log");
        if (i < 3) {
            ASSERT_TRUE(wait_for_port(static_cast<std::uint16_t>(port + i), 20s))
                << "replica " << i << " does not listen on slot " << i << " (" << port + i
                << "); log:\n"
                << replicas.back()->log_contents();
        }
    }
    // Every slot taken: the fourth replica exits 1 and says so.
    ASSERT_TRUE(eventually([&] { return !replicas[3]->running(); }, 10s))
        << replicas[3]->log_file();
    const auto status = replicas[3]->stop(SIGKILL);
    ASSERT_TRUE(status.has_value() && WIFEXITED(*status)) << replicas[3]->log_contents();
    EXPECT_EQ(WEXITSTATUS(*status), 1);
    EXPECT_NE(replicas[3]->log_contents().find("every port slot is in use"), std::string::npos)
        << replicas[3]->log_contents();

    // A replica with port 0 (kernel's choice) advertises "127.0.0.1:0" as the port it really got.
    auto zero_env = same;
    zero_env["IM_CONNECTOR_CONNECTOR_PORT"] = "0";
    zero_env["IM_CONNECTOR_ADMIN_PORT"] = "0";
    zero_env["IM_CONNECTOR_CONNECTOR_PORT_SLOTS"] = "1";
    zero_env["IM_CONNECTOR_CONNECTOR_ADVERTISED_ADDRESS"] = "127.0.0.1:0";
    ChildProcess zero;
    zero.start(env.bin_dir + "/im-connector", {}, zero_env, logs + "-zero.log");

    // The login answer lists the live connectors: the three slots and the port-0 replica's real
    // port.
    auto u = cl.user("slots");
    std::set<std::string> listed;
    const std::set<std::string> slots{"127.0.0.1:" + std::to_string(port),
                                      "127.0.0.1:" + std::to_string(port + 1),
                                      "127.0.0.1:" + std::to_string(port + 2)};
    ASSERT_TRUE(eventually(
        [&] {
            listed = login_connectors(cl, u, "probe");
            return listed.size() == 4;
        },
        15s))
        << "login answer lists " << listed.size() << " connectors; port-0 log:\n"
        << zero.log_contents();
    std::string real;
    for (const auto& a : listed) {
        if (!slots.count(a)) real = a;
    }
    for (const auto& s : slots)
        EXPECT_EQ(listed.count(s), 1u) << s << " is not listed";
    ASSERT_FALSE(real.empty());
    EXPECT_NE(real, "127.0.0.1:0") << "the port-0 replica advertised port 0";
    const auto real_port = static_cast<std::uint16_t>(std::stoi(real.substr(real.rfind(':') + 1)));

    // Each listed address is a working connector: ready (admin port of its slot) and a login works.
    for (int i = 0; i < 3; ++i) {
        HttpClient a("127.0.0.1", static_cast<std::uint16_t>(admin + i));
        EXPECT_TRUE(eventually(
            [&] {
                try {
                    return a.get("/readyz").status == 200;
                } catch (const std::exception&) {
                    return false;
                }
            },
            15s))
            << "slot " << i << " not ready";
    }
    std::vector<std::uint16_t> ports{port, static_cast<std::uint16_t>(port + 1),
                                     static_cast<std::uint16_t>(port + 2), real_port};
    for (const auto p : ports) {
        // A replica answers logins once it holds a transfer link (UNAVAILABLE before): retry.
        EXPECT_TRUE(eventually(
            [&] {
                try {
                    RawClient attempt(p);
                    const auto device = "dev-" + std::to_string(p);
                    return attempt.login(cl.login_token(u, device), device).has_login_result();
                } catch (const std::exception&) {
                    return false;
                }
            },
            15s))
            << "no login on 127.0.0.1:" << p;
    }
    for (auto& r : replicas)
        r->stop(SIGTERM, 10s);
    zero.stop(SIGTERM, 10s);
}

}  // namespace
}  // namespace im::test
