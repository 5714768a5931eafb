// im-bench cannot silently break: every subcommand runs for a few seconds with small numbers
// against a real private cluster (two connectors), and its JSON report must show a correct run:
// nothing lost, duplicated or out of order, every session logged in. Never a speed.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>

#include "cluster.hpp"

namespace im::test {
namespace {

namespace fs = std::filesystem;

// The value of a numeric member of a flat JSON line ("key":123.4), or nullopt.
std::optional<double> json_number(const std::string& line, const std::string& key) {
    const auto needle = "\"" + key + "\":";
    const auto p = line.find(needle);
    if (p == std::string::npos) return std::nullopt;
    const auto start = p + needle.size();
    if (start >= line.size() || line[start] == '"') return std::nullopt;
    return std::strtod(line.c_str() + start, nullptr);
}

class BenchSmoke : public ::testing::Test {
  protected:
    void SetUp() override {
        ClusterOptions opts;
        opts.name = "bench";
        opts.connectors = 2;
        cluster_ = std::make_unique<Cluster>(opts);
        ASSERT_TRUE(cluster_->wait_connector_ready(0));
        ASSERT_TRUE(cluster_->wait_connector_ready(1));
        dir_ = fs::temp_directory_path() / ("im-bench-smoke-" + std::to_string(::getpid()));
        fs::create_directories(dir_);
        connectors_ = "127.0.0.1:" + std::to_string(cluster_->connector_port(0)) +
                      ",127.0.0.1:" + std::to_string(cluster_->connector_port(1));
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    // Runs im-bench with args; returns its exit code and the JSON line it wrote.
    int bench(const std::string& args, std::string& json) {
        const auto out = dir_ / "out.json";
        const auto log = dir_ / "bench.log";
        fs::remove(out);
        const std::string cmd = bin_dir() + "/im-bench " + args + " --rest http://127.0.0.1:" +
                                std::to_string(cluster_->rest().port()) + " --connectors " +
                                connectors_ + " --tokens " + (dir_ / "tokens.txt").string() +
                                " --json-out " + out.string() + " >>" + log.string() + " 2>&1";
        const int status = std::system(cmd.c_str());
        std::ifstream f(out);
        std::getline(f, json);
        std::ifstream l(log);
        std::stringstream ss;
        ss << l.rdbuf();
        last_log_ = ss.str();
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }

    std::unique_ptr<Cluster> cluster_;
    fs::path dir_;
    std::string connectors_;
    std::string last_log_;
};

TEST_F(BenchSmoke, EverySubcommandRunsCorrectly) {
    std::string j;
    ASSERT_EQ(bench("seed --users 40 --rest-threads 4", j), 0) << last_log_;
    EXPECT_EQ(json_number(j, "users"), 40);

    // Closed loop across the two connectors, receipts on.
    ASSERT_EQ(bench("pairs --pairs 10 --window 4 --size 100 --warmup 0.5 --duration 2", j), 0)
        << last_log_;
    ASSERT_TRUE(json_number(j, "received").has_value()) << j;
    EXPECT_GT(*json_number(j, "received"), 0) << j;
    EXPECT_EQ(json_number(j, "lost"), 0) << j;
    EXPECT_EQ(json_number(j, "duplicated"), 0) << j;
    EXPECT_EQ(json_number(j, "out_of_order"), 0) << j;
    EXPECT_EQ(json_number(j, "acked"), json_number(j, "received")) << j;
    EXPECT_GT(*json_number(j, "delivered_receipt_samples"), 0) << j;
    EXPECT_GT(*json_number(j, "ttd_samples"), 0) << j;

    // Open loop.
    ASSERT_EQ(bench("pairs --pairs 10 --rate 200 --warmup 0.5 --duration 2", j), 0) << last_log_;
    EXPECT_EQ(json_number(j, "lost"), 0) << j;
    EXPECT_EQ(json_number(j, "duplicated"), 0) << j;
    EXPECT_EQ(json_number(j, "out_of_order"), 0) << j;
    EXPECT_GT(*json_number(j, "received"), 100) << j;  // ~200/s for 2.5 s

    // Idle sessions on one connector, with its RSS.
    const auto pid = cluster_->connector(0).pid();
    ASSERT_EQ(bench("idle --sessions 40 --duration 1 --source-addrs 2 --connector-pid " +
                        std::to_string(pid),
                    j),
              0)
        << last_log_;
    EXPECT_EQ(json_number(j, "logged_in"), 40) << j;
    EXPECT_EQ(json_number(j, "alive_after_idle"), 40) << j;
    EXPECT_GT(*json_number(j, "connector_rss_after_kib"), 0) << j;

    // Logins: REST then the connector (count above the seeded users: several devices per user).
    ASSERT_EQ(bench("login --count 60 --concurrency 8", j), 0) << last_log_;
    EXPECT_EQ(json_number(j, "sessions_established"), 60) << j;
    EXPECT_EQ(json_number(j, "sessions_failed"), 0) << j;

    // Offline storage, then sync at login.
    ASSERT_EQ(bench("offline --messages 600 --pairs 3", j), 0) << last_log_;
    EXPECT_EQ(json_number(j, "acked"), 600) << j;
    EXPECT_EQ(json_number(j, "received"), 600) << j;
    EXPECT_EQ(json_number(j, "lost"), 0) << j;
    EXPECT_EQ(json_number(j, "duplicated"), 0) << j;
    EXPECT_EQ(json_number(j, "out_of_order"), 0) << j;

    // A second offline run syncs only its own messages (the earlier ones were acknowledged).
    ASSERT_EQ(bench("offline --messages 100", j), 0) << last_log_;
    EXPECT_EQ(json_number(j, "received"), 100) << j;

    // Isolation: the open-loop pairs measured without, then with one client flooding.
    ASSERT_EQ(bench("isolation --pairs 5 --window 1 --rate 50 --warmup 0.3 --duration 1 --flood-window 50", j), 0)
        << last_log_;
    EXPECT_EQ(json_number(j, "lost"), 0) << j;
    EXPECT_EQ(json_number(j, "duplicated"), 0) << j;
    EXPECT_GT(*json_number(j, "quiet_ttd_samples"), 0) << j;
    EXPECT_GT(*json_number(j, "flood_ttd_samples"), 0) << j;
    EXPECT_GT(*json_number(j, "flooder_sends_s"), 0) << j;
    EXPECT_TRUE(json_number(j, "p99_ratio_flood_quiet").has_value()) << j;
    // Groups: 2 groups of 8 members (over both connectors), 2 senders each; every member gets
    // every message once and in order.
    ASSERT_EQ(bench("groups --groups 2 --members 8 --senders 2 --window 2 --warmup 0.3 --duration 1", j), 0)
        << last_log_;
    EXPECT_EQ(json_number(j, "lost"), 0) << j;
    EXPECT_EQ(json_number(j, "duplicated"), 0) << j;
    EXPECT_EQ(json_number(j, "out_of_order"), 0) << j;
    EXPECT_GT(*json_number(j, "deliveries"), 0) << j;
    EXPECT_GT(*json_number(j, "ttd_last_member_samples"), 0) << j;
}

TEST_F(BenchSmoke, BadInputIsRefusedClearly) {
    std::string j;
    EXPECT_EQ(bench("pairs --pairs 1", j), 2) << last_log_;  // no token file yet
    EXPECT_NE(last_log_.find("run `im-bench seed` first"), std::string::npos) << last_log_;
    EXPECT_EQ(bench("pairs --window 0", j), 2);
    EXPECT_EQ(bench("frobnicate", j), 2);
    ASSERT_EQ(bench("seed --users 4 --rest-threads 2", j), 0) << last_log_;
    EXPECT_EQ(bench("pairs --pairs 5", j), 2) << last_log_;  // needs 10 users
    EXPECT_NE(last_log_.find("needs 10"), std::string::npos) << last_log_;
}

}  // namespace
}  // namespace im::test
