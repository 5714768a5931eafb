#include "rest.hpp"

#include <sys/socket.h>
#include <sys/time.h>

#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "json_lite.hpp"

namespace imbench {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using imclient::detail::json_quote;
using imclient::detail::parse_json;

namespace {
constexpr int kIoTimeoutSeconds = 30;  // every blocking read/write (SO_RCVTIMEO/SO_SNDTIMEO)
constexpr std::uint64_t kMaxBodyBytes = 4 << 20;
}  // namespace

struct HttpConnection::Impl {
    std::string host, port;
    asio::io_context io;
    std::optional<tcp::socket> socket;
    boost::beast::flat_buffer buffer;

    void connect() {
        socket.reset();
        tcp::resolver resolver(io);
        tcp::socket s(io);
        asio::connect(s, resolver.resolve(host, port));
        s.set_option(tcp::no_delay(true));
        timeval tv{kIoTimeoutSeconds, 0};
        ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(s.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        socket.emplace(std::move(s));
        buffer.clear();
    }
};

HttpConnection::HttpConnection(std::string host, std::string port)
    : impl_(std::make_unique<Impl>()) {
    impl_->host = std::move(host);
    impl_->port = std::move(port);
}

HttpConnection::~HttpConnection() = default;

HttpAnswer HttpConnection::request(const std::string& method, const std::string& target,
                                   const std::string& body, const std::string& bearer) {
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    req.set(http::field::host, impl_->host + ":" + impl_->port);
    req.set(http::field::user_agent, "im-bench");
    if (!bearer.empty()) req.set(http::field::authorization, "Bearer " + bearer);
    if (!body.empty()) req.set(http::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    for (int attempt = 0; attempt < 2; ++attempt) {
        try {
            if (!impl_->socket) impl_->connect();
            http::write(*impl_->socket, req);
            http::response_parser<http::string_body> parser;
            parser.body_limit(kMaxBodyBytes);
            http::read(*impl_->socket, impl_->buffer, parser);
            auto res = parser.release();
            if (!res.keep_alive()) impl_->socket.reset();
            return {static_cast<int>(res.result_int()), std::move(res.body())};
        } catch (const std::exception& e) {
            impl_->socket.reset();  // a stale kept-alive connection: one fresh attempt
            if (attempt == 1) return {0, e.what()};
        }
    }
    return {0, "unreachable"};
}

bool parse_rest_target(const std::string& url, RestTarget& out) {
    std::string s = url;
    if (s.rfind("http://", 0) == 0) s = s.substr(7);
    while (!s.empty() && s.back() == '/')
        s.pop_back();
    const auto colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) return false;
    out.host = s.substr(0, colon);
    out.port = s.substr(colon + 1);
    return out.port.find_first_not_of("0123456789") == std::string::npos;
}

bool parallel_rest(const RestTarget& target, std::uint64_t n, int threads,
                   const std::function<bool(HttpConnection&, std::uint64_t)>& fn) {
    std::atomic<std::uint64_t> next{0};
    std::atomic<bool> ok{true};
    std::vector<std::thread> workers;
    const auto count = static_cast<std::uint64_t>(threads < 1 ? 1 : threads);
    for (std::uint64_t t = 0; t < std::min(count, n); ++t) {
        workers.emplace_back([&] {
            HttpConnection c(target.host, target.port);
            for (std::uint64_t i = next++; i < n && ok; i = next++) {
                if (!fn(c, i)) ok = false;
            }
        });
    }
    for (auto& w : workers)
        w.join();
    return ok;
}

namespace {

std::mutex g_err_mu;

bool fail(const std::string& what, const HttpAnswer& a) {
    std::lock_guard lock(g_err_mu);
    std::cerr << "im-bench: " << what << ": HTTP " << a.status << " " << a.body.substr(0, 300)
              << "\n";
    return false;
}

std::optional<std::uint64_t> u64_member(const imclient::detail::JsonValue& v,
                                        std::string_view key) {
    const auto* m = v.find(key);
    return m ? m->as_u64() : std::nullopt;
}

}  // namespace

bool login_users(const RestTarget& target, const UserSet& set, std::uint64_t n,
                 std::uint64_t users_n, const std::function<std::string(std::uint64_t)>& device_of,
                 int threads, std::vector<BenchUser>& users, Samples* latency,
                 std::vector<std::string>* connectors) {
    users.assign(n, {});
    std::vector<std::int64_t> lat(latency ? n : 0);
    std::mutex mu;
    const bool ok = parallel_rest(target, n, threads, [&](HttpConnection& c, std::uint64_t login) {
        const std::uint64_t i = users_n ? login % users_n : login;  // the user
        const auto body = "{\"username\":" + json_quote(user_name(set, i)) +
                          ",\"password\":" + json_quote(set.password) +
                          ",\"device_id\":" + json_quote(device_of(login)) + "}";
        const auto t0 = now_ns();
        auto a = c.request("POST", "/v1/sessions", body);
        if (latency) lat[login] = now_ns() - t0;
        if (a.status != 201) return fail("login " + user_name(set, i), a);
        auto j = parse_json(a.body);
        const auto* token = j ? j->find("token") : nullptr;
        const auto* user = j ? j->find("user") : nullptr;
        const auto id = user ? u64_member(*user, "id") : std::nullopt;
        if (!token || !token->as_string() || !id)
            return fail("login answer " + user_name(set, i), a);
        users[login] = {i, *id, *token->as_string()};
        if (connectors && login == 0) {
            std::lock_guard lock(mu);
            if (const auto* list = j->find("connectors")) {
                for (const auto& item : list->items)
                    if (const auto* s = item.as_string()) connectors->push_back(*s);
            }
        }
        return true;
    });
    if (latency)
        for (auto v : lat)
            latency->add(v);
    return ok;
}

namespace {

bool register_user(HttpConnection& c, const UserSet& set, std::uint64_t i) {
    const auto body = "{\"username\":" + json_quote(user_name(set, i)) +
                      ",\"password\":" + json_quote(set.password) + "}";
    auto a = c.request("POST", "/v1/users", body);
    if (a.status == 201 || a.status == 409) return true;  // 409: seeded by an earlier run
    return fail("register " + user_name(set, i), a);
}

}  // namespace

// u{2k} asks, u{2k+1} accepts; already friends is fine, a pending request (an interrupted earlier
// seed) is accepted.
bool befriend(HttpConnection& c, const BenchUser& a, const BenchUser& b) {
    auto r = c.request("POST", "/v1/friends/requests",
                       "{\"to_user_id\":" + std::to_string(b.user_id) + "}", a.token);
    std::optional<std::uint64_t> request_id;
    if (r.status == 201) {
        if (auto j = parse_json(r.body)) request_id = u64_member(*j, "id");
    } else if (r.status == 409 && r.body.find("already_friends") != std::string::npos) {
        return true;
    } else if (r.status != 409) {
        return fail("friend request", r);
    }
    if (!request_id) {  // request_pending: find it among b's incoming requests
        auto in = c.request("GET", "/v1/friends/requests?direction=in", "", b.token);
        auto j = parse_json(in.body);
        const auto* list = j ? j->find("requests") : nullptr;
        if (in.status != 200 || !list) return fail("list requests", in);
        for (const auto& item : list->items) {
            if (u64_member(item, "from_user_id") == a.user_id) request_id = u64_member(item, "id");
        }
        if (!request_id) return fail("pending request not found", in);
    }
    auto acc = c.request("POST", "/v1/friends/requests/" + std::to_string(*request_id) + "/accept",
                         "", b.token);
    if (acc.status == 200 ||
        (acc.status == 409 && acc.body.find("not_pending") != std::string::npos))
        return true;
    return fail("accept", acc);
}

std::uint64_t create_group(HttpConnection& c, const BenchUser& owner, const std::string& name,
                           const std::vector<std::uint64_t>& members) {
    std::string body = "{\"name\":" + json_quote(name) + ",\"members\":[";
    for (std::size_t i = 0; i < members.size(); ++i)
        body += (i ? "," : "") + std::to_string(members[i]);
    body += "]}";
    auto a = c.request("POST", "/v1/groups", body, owner.token);
    auto j = a.status == 201 ? parse_json(a.body) : std::nullopt;
    const auto id = j ? u64_member(*j, "group_id") : std::nullopt;
    if (!id || *id == 0) {
        fail("create group " + name, a);
        return 0;
    }
    return *id;
}

int run_seed(const RestTarget& target, const UserSet& set, std::uint64_t n, int threads,
             const std::string& tokens_file, const std::string& json_out) {
    const auto t0 = now_ns();
    if (!parallel_rest(target, n, threads, [&](HttpConnection& c, std::uint64_t i) {
            return register_user(c, set, i);
        }))
        return 1;
    const auto t1 = now_ns();
    std::vector<BenchUser> users;
    std::vector<std::string> connectors;
    if (!login_users(
            target, set, n, 0, [](std::uint64_t) { return std::string("bench"); }, threads, users,
            nullptr, &connectors))
        return 1;
    const auto t2 = now_ns();
    if (!parallel_rest(target, n / 2, threads, [&](HttpConnection& c, std::uint64_t k) {
            return befriend(c, users[2 * k], users[2 * k + 1]);
        }))
        return 1;
    const auto t3 = now_ns();

    std::ofstream f(tokens_file, std::ios::trunc);
    f << "# im-bench tokens: index user_id token (device bench)\n# connectors ";
    for (std::size_t i = 0; i < connectors.size(); ++i)
        f << (i ? "," : "") << connectors[i];
    f << "\n";
    for (const auto& u : users)
        f << u.index << " " << u.user_id << " " << u.token << "\n";
    f.close();
    if (!f) {
        std::cerr << "im-bench: cannot write " << tokens_file << "\n";
        return 1;
    }
    auto secs = [](std::int64_t a, std::int64_t b) { return static_cast<double>(b - a) / 1e9; };
    Report r("seed");
    r.add("users", n);
    r.add("pairs", n / 2);
    r.add("register_s", secs(t0, t1), 2);
    r.add("login_s", secs(t1, t2), 2);
    r.add("befriend_s", secs(t2, t3), 2);
    r.add("users_per_s", static_cast<double>(n) / secs(t0, t3), 0);
    r.add_text("tokens_file", tokens_file);
    return r.emit(json_out) ? 0 : 1;
}

bool read_tokens(const std::string& file, std::vector<BenchUser>& users,
                 std::vector<std::string>& connectors) {
    std::ifstream f(file);
    if (!f) return false;
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("# connectors ", 0) == 0) {
            std::istringstream in(line.substr(13));
            std::string c;
            while (std::getline(in, c, ','))
                if (!c.empty()) connectors.push_back(c);
            continue;
        }
        if (line.empty() || line[0] == '#') continue;
        std::istringstream in(line);
        BenchUser u;
        if (!(in >> u.index >> u.user_id >> u.token)) return false;
        if (u.index != users.size()) return false;
        users.push_back(std::move(u));
    }
    return true;
}

}  // namespace imbench
