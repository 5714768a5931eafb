#pragma once
// A whole private cluster for one integration test: a fresh MySQL database, a private Redis key
// prefix, the real im-rest, im-transfer and N im-connector binaries on free ports, with test
// settings (cheap password hashing, short heartbeats). Processes can be killed and restarted.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "http_client.hpp"
#include "raw_client.hpp"
#include "rest_fixture.hpp"

namespace im::test {

struct ClusterOptions {
    int connectors = 2;
    std::vector<std::string> rest_sets;
    std::vector<std::string> transfer_sets;
    std::vector<std::string> connector_sets;  // applied to every connector
    std::string name = "cluster";
    int transfers = 1;
    // Every transfer and connector on a loopback address of its own, like separate hosts:
    // transfer i on 127.0.1.(i+1), connector i on 127.0.2.(i+1) (im-rest stays on 127.0.0.1).
    bool spread_hosts = false;
    // Environment of every process (shared IM_* variables, as a deployment sets them).
    std::map<std::string, std::string> env{};
};

class Cluster {
public:
    explicit Cluster(ClusterOptions options = {});
    ~Cluster();

    HttpClient& http() { return *http_; }
    RestServer& rest() { return *rest_; }
    TestDatabase& db() { return db_; }
    const std::string& redis_prefix() const { return prefix_; }

    std::uint16_t connector_port(int i) const { return connector_ports_.at(static_cast<std::size_t>(i)); }
    std::uint16_t connector_admin_port(int i) const { return connector_admin_ports_.at(static_cast<std::size_t>(i)); }
    std::string transfer_host(int i = 0) const;
    std::string connector_host(int i) const;
    std::string connector_address(int i) const { return connector_host(i) + ":" + std::to_string(connector_port(i)); }
    std::uint16_t transfer_port(int i = 0) const { return transfer_ports_.at(static_cast<std::size_t>(i)); }
    int connector_count() const { return static_cast<int>(connectors_.size()); }
    std::uint16_t transfer_admin_port(int i = 0) const { return transfer_admin_ports_.at(static_cast<std::size_t>(i)); }
    ChildProcess& connector(int i) { return *connectors_.at(static_cast<std::size_t>(i)); }
    ChildProcess& transfer(int i = 0) { return *transfers_.at(static_cast<std::size_t>(i)); }
    int transfer_count() const { return static_cast<int>(transfers_.size()); }
    std::string transfer_id(int i) const;

    void start_transfer(int i = 0);
    void stop_transfer(int sig, int i = 0);  // SIGKILL for a crash
    // Adds a transfer replica (started at once); returns its index.
    int add_transfer();
    // Shards transfer i owns now (its im_transfer_owned_shards metric; -1 when unreachable).
    int owned_shards(int i);
    // Waits until the live transfers own all shards between them, each of them some, and every
    // connector routes all of them (im_connector_routed_shards).
    bool wait_shards_settled(std::chrono::milliseconds timeout = std::chrono::seconds(30));
    void start_connector(int i);
    void stop_connector(int i, int sig);
    // Waits until connector i reports a ready link to the transfer (/readyz 200).
    bool wait_connector_ready(int i, std::chrono::milliseconds timeout = std::chrono::seconds(20));

    // Registers a user and logs in with a device; befriends two users through the REST API.
    TestUser user(const std::string& name, const std::string& device = "dev1");
    std::string login_token(const TestUser& u, const std::string& device);
    void befriend(const TestUser& a, const TestUser& b);

    // A logged-in raw client on connector i.
    std::unique_ptr<RawClient> connect(int connector, const std::string& token, const std::string& device);

    // Count of rows in messages for a conversation (direct SQL check).
    std::uint64_t stored_messages(std::uint64_t conversation_id);

private:
    ClusterOptions options_;
    TestDatabase db_;
    std::string prefix_;
    std::unique_ptr<RestServer> rest_;
    std::unique_ptr<HttpClient> http_;
    std::vector<std::uint16_t> transfer_ports_, transfer_admin_ports_;
    std::vector<std::uint16_t> connector_ports_, connector_admin_ports_;
    std::vector<std::unique_ptr<ChildProcess>> transfers_;
    std::vector<std::unique_ptr<ChildProcess>> connectors_;
    std::string log_prefix_;
};

}  // namespace im::test
