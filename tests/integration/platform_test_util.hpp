#pragma once
// Helpers shared by messaging_platform_test.cpp and push_restart_test.cpp (header only; the
// integration CMakeLists builds one binary per *_test.cpp, so this file is not a test itself).

#include <gtest/gtest.h>

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluster.hpp"
#include "http_test_server.hpp"
#include "im/server/mysql.hpp"
#include "im/wire/ids.hpp"

namespace im::test::platform {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using client::Envelope;

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 10s, std::chrono::milliseconds step = 20ms) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        if (pred()) return true;
        std::this_thread::sleep_for(step);
    }
    return pred();
}

inline double elapsed_ms(Clock::time_point since) {
    return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

// `name value` or `name{labels} value` from a Prometheus text page; -1 when absent. With no labels
// given, the unlabelled series is looked up.
inline double metric_value(const std::string& text, const std::string& series) {
    std::size_t at = 0;
    while ((at = text.find(series, at)) != std::string::npos) {
        const bool line_start = at == 0 || text[at - 1] == '\n';
        const auto after = at + series.size();
        if (line_start && after < text.size() && text[after] == ' ') return std::stod(text.substr(after + 1));
        at = after;
    }
    return -1;
}

// Sends one text and waits for its SendResult.
inline client::SendResult send_text(RawClient& c, std::uint64_t peer, const std::string& text, std::uint64_t stream_seq,
                                    std::uint64_t acked = 0) {
    auto env = c.make_send(peer, text, stream_seq, acked);
    const auto rid = env.request_id();
    c.send(env);
    auto res = c.wait_for([rid](const Envelope& e) { return e.request_id() == rid && e.has_send_result(); });
    if (!res) throw std::runtime_error("no SendResult for request " + std::to_string(rid));
    return res->send_result();
}

// Pipelines `n` Sends (stream numbers first..first+n-1, stream_acked = first-1) without waiting,
// then collects their SendResults in order. Returns how long writing the frames took.
inline std::vector<client::SendResult> send_burst(RawClient& c, std::uint64_t peer, std::uint64_t first, int n,
                                                  const std::string& prefix, double* write_ms = nullptr,
                                                  std::chrono::milliseconds timeout = 15s) {
    std::vector<std::uint64_t> rids;
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) {
        auto env = c.make_send(peer, prefix + " #" + std::to_string(first + static_cast<std::uint64_t>(i)),
                               first + static_cast<std::uint64_t>(i), first - 1);
        rids.push_back(env.request_id());
        c.send(env);
    }
    if (write_ms != nullptr) *write_ms = elapsed_ms(t0);
    std::vector<client::SendResult> out;
    for (auto rid : rids) {
        auto res = c.wait_for([rid](const Envelope& e) { return e.request_id() == rid && e.has_send_result(); }, timeout);
        if (!res) throw std::runtime_error("no SendResult for request " + std::to_string(rid));
        out.push_back(res->send_result());
    }
    return out;
}

inline bool ping_ok(RawClient& c, std::chrono::milliseconds timeout = 5s) {
    Envelope ping;
    const auto rid = c.next_request_id();
    ping.set_request_id(rid);
    ping.mutable_ping()->set_client_time_ms(1);
    c.send(ping);
    return c.wait_for([rid](const Envelope& e) { return e.request_id() == rid && e.has_pong(); }, timeout).has_value();
}

inline std::string describe(const std::vector<Envelope>& frames) {
    std::string out;
    for (const auto& f : frames) out += f.ShortDebugString() + "\n";
    return out;
}

// ---- Push (webhook + RabbitMQ names) --------------------------------------------------------

// A webhook that answers 200 and records every call (HttpTestServer keeps the requests).
struct Webhook {
    HttpTestServer server{[](const HttpTestRequest&) { return HttpTestReply{200, "{}"}; }};

    // Calls carrying a PushEvent for (user, conversation), in arrival order.
    std::vector<HttpTestRequest> events_for(std::uint64_t user, std::uint64_t conv) const {
        std::vector<HttpTestRequest> out;
        for (const auto& r : server.requests()) {
            try {
                const auto j = nlohmann::json::parse(r.body);
                if (j.value("user_id", std::uint64_t{0}) == user && j.value("conversation_id", std::uint64_t{0}) == conv) {
                    out.push_back(r);
                }
            } catch (const std::exception&) {
            }
        }
        return out;
    }
    std::string dump() const {
        std::string out;
        for (const auto& r : server.requests()) {
            out += r.method + " " + r.target + " idempotency-key=" + r.header("idempotency-key") + " " + r.body + "\n";
        }
        return out;
    }
};

// Cluster options for push end to end: the transfer's relay and im-rest's worker use the same
// (unique) exchange and queue names, the worker calls `webhook_url`, the relay coalesces for 300 ms.
// (The Cluster's default per-database names cannot be passed to im-rest: the database name is made
// inside the Cluster's constructor, so both processes get these names instead; --set's last value wins.)
inline ClusterOptions push_cluster_options(const std::string& name, const std::string& webhook_url,
                                           std::string coalesce = "300ms") {
    const auto& env = TestEnv::get();
    const auto s = unique_suffix();
    const std::vector<std::string> names = {
        "rabbitmq.exchange=im.push.pt" + s,
        "rabbitmq.queue=im.push.events.pt" + s,
        "rabbitmq.dead_letter_exchange=im.push.dead.pt" + s,
        "rabbitmq.dead_letter_queue=im.push.deadq.pt" + s,
    };
    ClusterOptions o;
    o.connectors = 2;
    o.name = name;
    o.transfer_sets = names;
    o.transfer_sets.push_back("push.coalesce_delay=" + coalesce);
    o.rest_sets = names;
    for (const auto& kv : {"push.enabled=true", "push.retry_backoff=200ms"}) o.rest_sets.emplace_back(kv);
    o.rest_sets.push_back("push.webhook_url=" + webhook_url);
    o.rest_sets.push_back("rabbitmq.port=" + std::to_string(env.rabbitmq_port));
    o.rest_sets.push_back("rabbitmq.user=" + env.rabbitmq_user);
    o.rest_sets.push_back("rabbitmq.password=" + env.rabbitmq_password);
    return o;
}

inline std::uint64_t outbox_rows(Cluster& cl) {
    auto& st = cl.db().db().prepare("SELECT COUNT(*) FROM push_pending");
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    rs->next();
    return rs->getUInt64(1);
}

}  // namespace im::test::platform
