// im-rest at the HTTP level: error statuses and bodies, size limits (Content-Length, chunked, a
// Content-Length that lies), malformed input, keep-alive, health/readiness/metrics, TLS with a
// throwaway CA made by openssl at test time, and graceful SIGTERM.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "rest_fixture.hpp"

namespace im::test {
namespace {

// Raw socket exchange, for requests a well-behaved client library would not send.
class RawConn {
public:
    explicit RawConn(std::uint16_t port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(port);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("connect");
        timeval tv{5, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    ~RawConn() { ::close(fd_); }
    // false when the peer closed the connection (EPIPE/ECONNRESET) before everything was sent.
    bool send(const std::string& data) {
        std::size_t off = 0;
        while (off < data.size()) {
            const auto n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
            if (n <= 0) return false;
            off += static_cast<std::size_t>(n);
        }
        return true;
    }
    // Reads until the peer closes or the timeout; returns what arrived.
    std::string read_all() {
        std::string out;
        char buf[4096];
        for (;;) {
            const auto n = ::recv(fd_, buf, sizeof buf, 0);
            if (n <= 0) break;
            out.append(buf, static_cast<std::size_t>(n));
        }
        return out;
    }
    std::string read_some() {
        char buf[65536];
        const auto n = ::recv(fd_, buf, sizeof buf, 0);
        return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
    }

private:
    int fd_ = -1;
};

int status_of(const std::string& response) {
    if (response.rfind("HTTP/1.1 ", 0) != 0) return 0;
    return std::atoi(response.c_str() + 9);
}

class RestHttp : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        db_ = new TestDatabase();
        rest_ = new RestServer(*db_, "im:t" + unique_suffix() + ":",
                               {{"http.max_body_bytes=4KiB", "http.read_timeout=2s"}, "rest-http"});
    }
    static void TearDownTestSuite() {
        delete rest_;
        delete db_;
    }
    static TestDatabase* db_;
    static RestServer* rest_;
};
TestDatabase* RestHttp::db_ = nullptr;
RestServer* RestHttp::rest_ = nullptr;

TEST_F(RestHttp, HealthReadinessMetrics) {
    auto http = rest_->client();
    auto h = http->get("/healthz");
    EXPECT_EQ(h.status, 200);
    auto r = http->get("/readyz");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["mysql"], "ok");
    EXPECT_EQ(r.json()["redis"], "ok");
    http->get("/v1/users/me");  // a 401, counted
    HttpClient admin("127.0.0.1", rest_->admin_port());
    auto m = admin.get("/metrics");
    ASSERT_EQ(m.status, 200);
    EXPECT_NE(m.body.find("im_http_requests_total{"), std::string::npos) << m.body;
    EXPECT_NE(m.body.find("status=\"401\""), std::string::npos);
    EXPECT_NE(m.body.find("process_resident_memory_bytes"), std::string::npos);
}

// Issue 17, item 10: the metrics are not public. im-rest serves /metrics on its admin listener
// (admin.host/admin.port, loopback by default), like im-connector and im-transfer; its public port
// answers 404 there and keeps /healthz and /readyz (load balancers, docker's healthcheck).
TEST(Issue17, Item10_MetricsOnlyOnTheAdminPort) {
    TestDatabase db;
    RestServer rest(db, "im:t" + unique_suffix() + ":", {{}, "rest-admin"});
    auto http = rest.client();
    http->get("/v1/users/me");  // a 401, counted

    const auto pub = http->get("/metrics");
    EXPECT_EQ(pub.status, 404) << "the public port serves the metrics:\n" << pub.body.substr(0, 400);
    const auto pub_json = pub.json();
    EXPECT_TRUE(pub_json.is_object() && pub_json.contains("error") && pub_json["error"]["code"] == "not_found")
        << pub.body.substr(0, 400);
    EXPECT_EQ(pub.body.find("im_http_requests_total"), std::string::npos);
    EXPECT_EQ(http->request("HEAD", "/metrics").status, 404);
    EXPECT_EQ(http->get("/healthz").status, 200);
    EXPECT_EQ(http->get("/readyz").status, 200);

    HttpResult m, health;
    try {
        HttpClient admin("127.0.0.1", rest.admin_port());
        m = admin.get("/metrics");
        health = admin.get("/healthz");
    } catch (const std::exception& e) {
        FAIL() << "nothing answers on the admin port " << rest.admin_port() << ": " << e.what();
    }
    ASSERT_EQ(m.status, 200) << m.body;
    EXPECT_EQ(m.header("content-type").rfind("text/plain; version=0.0.4", 0), 0u) << m.header("content-type");
    EXPECT_NE(m.body.find("im_http_requests_total{"), std::string::npos) << m.body;
    EXPECT_NE(m.body.find("status=\"401\""), std::string::npos);
    EXPECT_NE(m.body.find("process_resident_memory_bytes"), std::string::npos);
    EXPECT_EQ(health.status, 200);
    // Ready once MySQL and Redis answered (probed in the background, never on the I/O thread).
    bool ready = false;
    for (int i = 0; i < 50 && !ready; ++i) {
        HttpClient admin("127.0.0.1", rest.admin_port());
        ready = admin.get("/readyz").status == 200;
        if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_TRUE(ready) << "the admin /readyz never said ready";

    // Loopback by default, as the other processes' admin listeners.
    const std::string cmd = bin_dir() + "/im-rest --print-config 2>&1";
    std::string printed;
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
        char buf[4096];
        std::size_t n = 0;
        while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) printed.append(buf, n);
        ::pclose(p);
    }
    EXPECT_NE(printed.find("admin.host = 127.0.0.1"), std::string::npos) << printed;
    EXPECT_NE(printed.find("admin.port = 8090"), std::string::npos) << printed;
}

TEST_F(RestHttp, ReadinessFailsWhenRedisIsUnreachable) {
    TestDatabase db;
    RestServer bad(db, "im:t" + unique_suffix() + ":",
                   {{"redis.port=" + std::to_string(pick_free_port()), "redis.connect_timeout=200ms"}, "rest-noredis"});
    auto http = bad.client();
    auto r = http->get("/readyz");
    EXPECT_EQ(r.status, 503) << r.body;
    EXPECT_EQ(r.json()["redis"], "unreachable");
    EXPECT_EQ(r.json()["mysql"], "ok");
    EXPECT_EQ(http->get("/healthz").status, 200) << "alive even when not ready";
    // Redis is a cache: registration and login still work without it.
    auto u = register_and_login(*http, "nored" + unique_suffix().substr(0, 5));
    EXPECT_EQ(http->get("/v1/users/me", u.token).status, 200);
}

TEST_F(RestHttp, UnknownPathAndMethod) {
    auto http = rest_->client();
    auto nf = http->get("/v1/nothing-here");
    EXPECT_EQ(nf.status, 404);
    EXPECT_EQ(nf.json()["error"]["code"], "not_found");
    auto na = http->request("PUT", "/v1/users");
    EXPECT_EQ(na.status, 405);
    EXPECT_EQ(na.json()["error"]["code"], "method_not_allowed");
    EXPECT_NE(na.header("allow").find("POST"), std::string::npos);
}

TEST_F(RestHttp, MalformedJsonAndWrongContentType) {
    auto http = rest_->client();
    auto bad = http->request("POST", "/v1/users", "{\"username\": ", {{"Content-Type", "application/json"}});
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(bad.json()["error"]["code"], "malformed_json");
    auto arr = http->request("POST", "/v1/users", "[1,2]", {{"Content-Type", "application/json"}});
    EXPECT_EQ(arr.status, 400);
    auto utf = http->request("POST", "/v1/users", "{\"username\": \"\xff\xfe\"}", {{"Content-Type", "application/json"}});
    EXPECT_EQ(utf.status, 400) << "invalid UTF-8 is malformed JSON";
    auto text = http->request("POST", "/v1/users", "username=x", {{"Content-Type", "application/x-www-form-urlencoded"}});
    EXPECT_EQ(text.status, 415);
    EXPECT_EQ(text.json()["error"]["code"], "unsupported_media_type");
    auto none = http->request("POST", "/v1/users", "{}");
    EXPECT_EQ(none.status, 415);
    auto charset = http->request("POST", "/v1/users", "{}", {{"Content-Type", "application/json; charset=utf-8"}});
    EXPECT_EQ(charset.status, 400) << "JSON with a charset parameter is accepted (then fails validation)";
}

TEST_F(RestHttp, OversizedBodyByContentLength) {
    RawConn c(rest_->port());
    // Announced too big: refused from the header alone, before the body is read.
    c.send("POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n");
    const auto res = c.read_all();
    EXPECT_EQ(status_of(res), 413) << res;
    EXPECT_NE(res.find("payload_too_large"), std::string::npos) << res;
}

TEST_F(RestHttp, OversizedChunkedBody) {
    RawConn c(rest_->port());
    std::string req = "POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    c.send(req);
    const std::string chunk(1024, 'a');
    char size_line[16];
    std::snprintf(size_line, sizeof size_line, "%zx\r\n", chunk.size());
    std::string response;
    for (int i = 0; i < 64; ++i) {  // 64 KiB in total, far over the 4 KiB limit
        if (!c.send(std::string(size_line) + chunk + "\r\n")) break;
    }
    response = c.read_all();
    EXPECT_EQ(status_of(response), 413) << response;
}

TEST_F(RestHttp, ContentLengthThatLies) {
    // Claims 20 bytes but sends 1 MiB: the server reads exactly 20, answers, then treats the rest as
    // (garbage) pipelined requests: 400 and close. It never buffers the extra megabyte.
    RawConn c(rest_->port());
    const std::string body = "{\"username\":\"abcdef\"" + std::string(1 << 20, 'x');
    c.send("POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n" +
           body);
    const auto res = c.read_all();
    EXPECT_EQ(status_of(res), 400) << res.substr(0, 300);
    EXPECT_NE(res.find("malformed_json"), std::string::npos);
    // The garbage that followed got its own 400 (or the connection closed): never a 2xx.
    EXPECT_EQ(res.find("HTTP/1.1 2"), std::string::npos);

    // Claims more than it sends: the read times out and the connection is closed, no answer.
    RawConn slow(rest_->port());
    slow.send("POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":");
    const auto start = std::chrono::steady_clock::now();
    const auto nothing = slow.read_all();
    EXPECT_TRUE(nothing.empty()) << nothing;
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5)) << "read_timeout=2s closes it";

    // The server is fine afterwards.
    EXPECT_EQ(rest_->client()->get("/healthz").status, 200);
}

TEST_F(RestHttp, HugeHeaderIs413AndGarbageIs400) {
    RawConn big(rest_->port());
    big.send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(64 * 1024, 'h') + "\r\n\r\n");
    EXPECT_EQ(status_of(big.read_all()), 413);
    RawConn junk(rest_->port());
    junk.send("\x16\x03\x01 this is not http\r\n\r\n");
    EXPECT_EQ(status_of(junk.read_all()), 400);
}

TEST_F(RestHttp, KeepAliveServesManyRequestsOnOneConnection) {
    RawConn c(rest_->port());
    std::string pipelined;
    for (int i = 0; i < 10; ++i) pipelined += "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    c.send(pipelined + "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const auto all = c.read_all();
    std::size_t count = 0;
    for (auto p = all.find("HTTP/1.1 200"); p != std::string::npos; p = all.find("HTTP/1.1 200", p + 1)) ++count;
    EXPECT_EQ(count, 11u);
}

TEST_F(RestHttp, PercentEncodedQuery) {
    auto http = rest_->client();
    auto u = register_and_login(*http, "pct" + unique_suffix().substr(0, 5));
    auto r = http->get("/v1/users?username=" + u.username.substr(0, 1) + "%" +
                           [&] {
                               char b[3];
                               std::snprintf(b, sizeof b, "%02X", static_cast<unsigned char>(u.username[1]));
                               return std::string(b);
                           }() +
                           u.username.substr(2),
                       u.token);
    EXPECT_EQ(r.status, 200) << r.body;
    auto bad = http->get("/v1/users?username=%zz", u.token);
    EXPECT_EQ(bad.status, 400);
}

TEST(RestTls, AnswersOverHttpsWithAThrowawayCa) {
    const auto dir = TestEnv::get().run_dir + "/tls-" + unique_suffix();
    const std::string cmd =
        "set -e; mkdir -p " + dir + "; cd " + dir +
        "; openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=im-test-ca -keyout ca.key -out ca.pem 2>/dev/null"
        "; openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null"
        "; printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext.cnf"
        "; openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf "
        "-out server.pem 2>/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "openssl failed";

    TestDatabase db;
    RestServer tls(db, "im:t" + unique_suffix() + ":",
                   {{"tls.enabled=true", "tls.cert_file=" + dir + "/server.pem", "tls.key_file=" + dir + "/server.key"},
                    "rest-tls"});
    auto https = tls.client(dir + "/ca.pem");
    auto h = https->get("/healthz");
    EXPECT_EQ(h.status, 200);
    auto u = register_and_login(*https, "tls" + unique_suffix().substr(0, 5));
    EXPECT_EQ(https->get("/v1/users/me", u.token).json()["username"], u.username);

    // Plain HTTP to the TLS port gets no HTTP answer.
    RawConn plain(tls.port());
    plain.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(status_of(plain.read_all()), 0);

    // A client that does not trust the CA refuses the server.
    const auto other = dir + "/other";
    ASSERT_EQ(std::system(("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=other -keyout " + other +
                           ".key -out " + other + ".pem 2>/dev/null")
                              .c_str()),
              0);
    HttpClient untrusting("127.0.0.1", tls.port(), other + ".pem");
    EXPECT_ANY_THROW(untrusting.get("/healthz"));
}

TEST(RestSignals, SigtermDrainsAndExitsCleanly) {
    TestDatabase db;
    RestServer rest(db, "im:t" + unique_suffix() + ":", {{}, "rest-sigterm"});
    auto http = rest.client();
    ASSERT_EQ(http->get("/healthz").status, 200);
    const auto start = std::chrono::steady_clock::now();
    const auto status = rest.process().stop(SIGTERM, std::chrono::seconds(15));
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFEXITED(*status)) << "exited, not killed";
    EXPECT_EQ(WEXITSTATUS(*status), 0);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(12));
    const auto log = rest.log();
    EXPECT_NE(log.find("draining"), std::string::npos) << log;
    EXPECT_NE(log.find("stopped"), std::string::npos) << log;
}

TEST(RestConfigErrors, BadConfigExitsWithAClearMessage) {
    ChildProcess p;
    const auto log = TestEnv::get().run_dir + "/rest-badconfig-" + unique_suffix() + ".log";
    p.start(bin_dir() + "/im-rest", {"--set", "http.port=notaport", "--set", "auth.mode=kerberos"}, {}, log);
    const auto st = p.stop(0, std::chrono::seconds(10));  // signal 0 only waits for the exit
    ASSERT_TRUE(st.has_value());
    EXPECT_TRUE(WIFEXITED(*st));
    EXPECT_EQ(WEXITSTATUS(*st), 2);
    const auto text = p.log_contents();
    EXPECT_NE(text.find("http.port: 'notaport' is not an integer (from --set http.port)"), std::string::npos) << text;
    EXPECT_NE(text.find("auth.mode"), std::string::npos) << text;
}

}  // namespace
}  // namespace im::test
