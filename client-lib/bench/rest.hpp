#pragma once
// im-bench's REST side: a blocking keep-alive HTTP/1.1 client (one per worker thread; the REST
// calls are set-up and the login measurement, never on the chat I/O threads), bulk seeding of the
// bench users and their friendships, and logins that produce tokens.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "report.hpp"

namespace imbench {

struct HttpAnswer {
    int status = 0;  // 0: transport error (message in body)
    std::string body;
};

class HttpConnection {
  public:
    HttpConnection(std::string host, std::string port);
    ~HttpConnection();
    HttpConnection(const HttpConnection&) = delete;
    HttpConnection& operator=(const HttpConnection&) = delete;

    // One request; reconnects once when a kept-alive connection was closed by the server.
    HttpAnswer request(const std::string& method, const std::string& target,
                       const std::string& body, const std::string& bearer = {});

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

struct RestTarget {
    std::string host = "127.0.0.1";
    std::string port = "8080";
};
// "http://host:port" or "host:port"; false when malformed.
bool parse_rest_target(const std::string& url, RestTarget& out);

struct BenchUser {
    std::uint64_t index = 0;  // i of u{i}
    std::uint64_t user_id = 0;
    std::string token;
};

struct UserSet {
    std::string prefix = "bench";  // user i is bench{i} (usernames are at least 3 characters)
    std::string password = "bench-password";
};

inline std::string user_name(const UserSet& set, std::uint64_t i) {
    return set.prefix + std::to_string(i);
}

// Runs fn(worker_connection, i) for i in [0, n) on `threads` worker threads, each with its own
// keep-alive connection. Returns false (and stops early) as soon as one call returns false.
bool parallel_rest(const RestTarget& target, std::uint64_t n, int threads,
                   const std::function<bool(HttpConnection&, std::uint64_t)>& fn);

// n logins (one POST /v1/sessions each): login i is user i % users_n (users_n 0: n) with device
// device_of(i). Fills users (login order) and the per-login latency; connectors from the first
// answer. Errors go to stderr; false on failure.
bool login_users(const RestTarget& target, const UserSet& set, std::uint64_t n,
                 std::uint64_t users_n, const std::function<std::string(std::uint64_t)>& device_of,
                 int threads, std::vector<BenchUser>& users, Samples* latency,
                 std::vector<std::string>* connectors);

// a asks b for friendship, b accepts; already friends (or a request pending from an interrupted
// earlier run) is fine. Errors go to stderr.
bool befriend(HttpConnection& c, const BenchUser& a, const BenchUser& b);

// POST /v1/groups as owner with the given members (owner's friends): the group id, or 0 (the
// error on stderr).
std::uint64_t create_group(HttpConnection& c, const BenchUser& owner, const std::string& name,
                           const std::vector<std::uint64_t>& members);

// seed: registers u0..u{n-1} (an existing one is fine when the password matches), logs each in with
// device "bench", befriends u{2k} with u{2k+1}, and writes the token file.
int run_seed(const RestTarget& target, const UserSet& set, std::uint64_t n, int threads,
             const std::string& tokens_file, const std::string& json_out);

// The token file written by seed: "index user_id token" per line, plus "# connectors a:p,b:q".
bool read_tokens(const std::string& file, std::vector<BenchUser>& users,
                 std::vector<std::string>& connectors);

}  // namespace imbench
