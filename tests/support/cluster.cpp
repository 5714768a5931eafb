#include "cluster.hpp"

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <csignal>
#include <stdexcept>
#include <thread>

#include "im/server/mysql.hpp"
#include "im/wire/ids.hpp"

namespace im::test {

namespace {
std::vector<std::string> with_sets(std::vector<std::string> args, const std::vector<std::string>& sets) {
    for (const auto& s : sets) {
        args.push_back("--set");
        args.push_back(s);
    }
    return args;
}

std::map<std::string, std::string> with_env(std::map<std::string, std::string> vars,
                                            const std::map<std::string, std::string>& shared) {
    for (const auto& [k, v] : shared) vars.emplace(k, v);  // the process's own values win
    return vars;
}
}  // namespace

Cluster::Cluster(ClusterOptions options) : options_(std::move(options)), prefix_("im:t" + unique_suffix() + ":") {
    const auto& env = TestEnv::get();
    log_prefix_ = env.run_dir + "/" + options_.name + "-" + db_.name();
    rest_ = std::make_unique<RestServer>(db_, prefix_, RestOptions{options_.rest_sets, options_.name + "-rest", options_.env});
    http_ = rest_->client();
    for (int i = 0; i < std::max(1, options_.transfers); ++i) add_transfer();
    for (int i = 0; i < options_.connectors; ++i) {
        connector_ports_.push_back(pick_free_port());
        connector_admin_ports_.push_back(pick_free_port());
        connectors_.push_back(std::make_unique<ChildProcess>());
        start_connector(i);
    }
    for (int i = 0; i < options_.connectors; ++i) {
        if (!wait_connector_ready(i)) {
            throw std::runtime_error("connector " + std::to_string(i) + " has no transfer link; logs: " + log_prefix_ + "-*");
        }
    }
}

Cluster::~Cluster() {
    for (auto& c : connectors_) {
        if (c) c->stop(SIGTERM, std::chrono::seconds(5));
    }
    for (auto& t : transfers_) {
        if (t) t->stop(SIGTERM, std::chrono::seconds(10));
    }
}

std::string Cluster::transfer_host(int i) const {
    return options_.spread_hosts ? "127.0.1." + std::to_string(i + 1) : "127.0.0.1";
}

std::string Cluster::connector_host(int i) const {
    return options_.spread_hosts ? "127.0.2." + std::to_string(i + 1) : "127.0.0.1";
}

std::string Cluster::transfer_id(int i) const {
    return i == 0 ? "transfer-" + db_.name() : "transfer" + std::to_string(i) + "-" + db_.name();
}

int Cluster::add_transfer() {
    transfer_ports_.push_back(pick_free_port());
    transfer_admin_ports_.push_back(pick_free_port());
    transfers_.push_back(nullptr);
    const int i = static_cast<int>(transfers_.size()) - 1;
    start_transfer(i);
    return i;
}

int Cluster::owned_shards(int i) {
    try {
        HttpClient admin(transfer_host(i), transfer_admin_port(i));
        const auto body = admin.get("/metrics").body;
        const std::string key = "\nim_transfer_owned_shards ";
        const auto pos = body.find(key);
        if (pos == std::string::npos) return -1;
        return static_cast<int>(std::stod(body.substr(pos + key.size())));
    } catch (const std::exception&) {
        return -1;
    }
}

bool Cluster::wait_shards_settled(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        // Every shard owned, by every running transfer a share: with transfers started together,
        // the first to become active owns all 1024 until it sees the others (a moment that
        // looked settled once, under TSan, and the balance check after it failed).
        int total = 0;
        bool each = true;
        for (int i = 0; i < transfer_count(); ++i) {
            if (!transfers_[static_cast<std::size_t>(i)]->running()) continue;
            const int owned = owned_shards(i);
            total += std::max(0, owned);
            each = each && owned > 0;
        }
        bool routed = each && total == static_cast<int>(kShardCount);
        for (std::size_t c = 0; routed && c < connectors_.size(); ++c) {
            if (!connectors_[c]->running()) continue;
            try {
                HttpClient admin(connector_host(static_cast<int>(c)), connector_admin_ports_[c]);
                const auto body = admin.get("/metrics").body;
                routed = body.find("\nim_connector_routed_shards " + std::to_string(kShardCount) + "\n") != std::string::npos;
            } catch (const std::exception&) {
                routed = false;
            }
        }
        if (routed) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
}

void Cluster::start_transfer(int i) {
    const auto& env = TestEnv::get();
    const auto idx = static_cast<std::size_t>(i);
    transfers_.at(idx) = std::make_unique<ChildProcess>();
    transfers_[idx]->start(bin_dir() + "/im-transfer",
                           with_sets({"--set", "transfer.host=" + transfer_host(i),
                                      "--set", "transfer.port=" + std::to_string(transfer_ports_.at(idx)),
                                      "--set", "admin.host=" + transfer_host(i),
                                      "--set", "admin.port=" + std::to_string(transfer_admin_ports_.at(idx)),
                                      "--set", "transfer.id=" + transfer_id(i),
                                      "--set", "mysql.db=" + db_.name(),
                                      "--set", "redis.key_prefix=" + prefix_,
                                      "--set", "transfer.heartbeat_interval=200ms",
                                      "--set", "transfer.registration_ttl=2s",
                                      "--set", "ownership.poll_interval=100ms",
                                      "--set", "ownership.lease_ttl=2s",
                                      "--set", "ownership.join_timeout=3s",
                                      "--set", "rabbitmq.exchange=im.push." + db_.name(),
                                      "--set", "rabbitmq.queue=im.push.events." + db_.name(),
                                      "--set", "rabbitmq.dead_letter_exchange=im.push.dead." + db_.name(),
                                      "--set", "rabbitmq.dead_letter_queue=im.push.dead." + db_.name(),
                                      "--set", "log.level=debug"},
                                     options_.transfer_sets),
                           with_env({{"IM_MYSQL_PORT", std::to_string(env.mysql_port)},
                                     {"IM_REDIS_PORT", std::to_string(env.redis_port)},
                                     {"IM_RABBITMQ_PORT", std::to_string(env.rabbitmq_port)}},
                                    options_.env),
                           log_prefix_ + "-transfer" + (i == 0 ? std::string() : std::to_string(i)) + ".log");
    if (!wait_for_port(transfer_host(i), transfer_admin_ports_[idx], std::chrono::seconds(30))) {
        throw std::runtime_error("im-transfer did not start:\n" + transfers_[idx]->log_contents());
    }
}

void Cluster::stop_transfer(int sig, int i) { transfers_.at(static_cast<std::size_t>(i))->stop(sig, std::chrono::seconds(10)); }

void Cluster::start_connector(int i) {
    const auto& env = TestEnv::get();
    auto& c = *connectors_.at(static_cast<std::size_t>(i));
    const auto port = connector_ports_.at(static_cast<std::size_t>(i));
    c.start(bin_dir() + "/im-connector",
            with_sets({"--set", "connector.host=" + connector_host(i),
                       "--set", "connector.port=" + std::to_string(port),
                       "--set", "admin.host=" + connector_host(i),
                       "--set", "admin.port=" + std::to_string(connector_admin_ports_.at(static_cast<std::size_t>(i))),
                       "--set", "connector.id=connector-" + std::to_string(i) + "-" + db_.name(),
                       "--set", "redis.key_prefix=" + prefix_,
                       "--set", "links.discovery_interval=200ms",
                       "--set", "links.registration_ttl=2s",
                       "--set", "links.ping_interval=200ms",
                       "--set", "links.timeout=2s",
                       "--set", "sessions.heartbeat_interval=5s",
                       // Tests send bursts no person would: the rate limits (docs/OPERATIONS.md
                       // "Abuse limits") stay on but out of reach, unless a test sets its own.
                       "--set", "sessions.messages_per_second=1000000", "--set", "sessions.messages_burst=10000000",
                       "--set", "sessions.receipts_per_second=1000000", "--set", "sessions.receipts_burst=10000000",
                       "--set", "sessions.typing_per_second=1000000", "--set", "sessions.typing_burst=10000000",
                       "--set", "sessions.frames_per_second=1000000", "--set", "sessions.frames_burst=10000000",
                       "--set", "users.messages_per_second=1000000", "--set", "users.messages_burst=10000000",
                       "--set", "users.receipts_per_second=1000000", "--set", "users.receipts_burst=10000000",
                       "--set", "users.typing_per_second=1000000", "--set", "users.typing_burst=10000000",
                       "--set", "log.level=debug"},
                      options_.connector_sets),
            with_env({{"IM_REDIS_PORT", std::to_string(env.redis_port)}}, options_.env),
            log_prefix_ + "-connector" + std::to_string(i) + ".log");
    if (!wait_for_port(connector_host(i), port, std::chrono::seconds(30))) {
        throw std::runtime_error("im-connector did not start:\n" + c.log_contents());
    }
}

void Cluster::stop_connector(int i, int sig) { connectors_.at(static_cast<std::size_t>(i))->stop(sig, std::chrono::seconds(10)); }

bool Cluster::wait_connector_ready(int i, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    HttpClient admin(connector_host(i), connector_admin_port(i));
    while (std::chrono::steady_clock::now() < deadline) {
        try {
            if (admin.get("/readyz").status == 200) return true;
        } catch (const std::exception&) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
}

TestUser Cluster::user(const std::string& name, const std::string& device) {
    return register_and_login(*http_, name + unique_suffix().substr(0, 5), device);
}

std::string Cluster::login_token(const TestUser& u, const std::string& device) {
    auto r = http_->post("/v1/sessions", {{"username", u.username}, {"password", u.password}, {"device_id", device}});
    if (r.status != 201) throw std::runtime_error("login failed: " + r.body);
    return r.json()["token"].get<std::string>();
}

void Cluster::befriend(const TestUser& a, const TestUser& b) {
    auto req = http_->post("/v1/friends/requests", {{"to_user_id", b.id}}, a.token);
    if (req.status != 201) throw std::runtime_error("friend request failed: " + req.body);
    auto acc = http_->post("/v1/friends/requests/" + std::to_string(req.json()["id"].get<std::uint64_t>()) + "/accept",
                           nlohmann::json::object(), b.token);
    if (acc.status != 200) throw std::runtime_error("accept failed: " + acc.body);
}

std::unique_ptr<RawClient> Cluster::connect(int connector, const std::string& token, const std::string& device) {
    if (options_.spread_hosts) throw std::logic_error("Cluster::connect: RawClient dials 127.0.0.1 only");
    auto c = std::make_unique<RawClient>(connector_port(connector));
    auto res = c->login(token, device);
    if (!res.has_login_result()) throw std::runtime_error("login over the connector failed: " + res.DebugString());
    return c;
}

std::uint64_t Cluster::stored_messages(std::uint64_t conversation_id) {
    auto& st = db_.db().prepare("SELECT COUNT(*) FROM messages WHERE conversation_id = ?");
    st.setUInt64(1, conversation_id);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    rs->next();
    return rs->getUInt64(1);
}

}  // namespace im::test
