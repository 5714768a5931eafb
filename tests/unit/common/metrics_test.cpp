#include "im/server/metrics.hpp"

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <thread>

#include "im/server/admin_server.hpp"

namespace im {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;

TEST(Metrics, TextExposition) {
    Metrics m;
    m.counter("im_test_frames_total", "Frames.", {{"dir", "in"}}).Increment(3);
    m.counter("im_test_frames_total", "Frames.", {{"dir", "in"}}).Increment(2);  // same object
    m.gauge("im_test_sessions", "Sessions.").Set(7);
    m.histogram("im_test_latency_seconds", "Latency.", Metrics::latency_buckets()).Observe(0.0003);
    const auto text = m.text();
    EXPECT_NE(text.find("# TYPE im_test_frames_total counter"), std::string::npos) << text;
    EXPECT_NE(text.find("im_test_frames_total{dir=\"in\"} 5"), std::string::npos) << text;
    EXPECT_NE(text.find("im_test_sessions 7"), std::string::npos) << text;
    EXPECT_NE(text.find("im_test_latency_seconds_bucket{le=\"0.0005\"} 1"), std::string::npos) << text;
    EXPECT_NE(text.find("process_resident_memory_bytes "), std::string::npos) << text;
}

TEST(Metrics, ProcessStatsOfThisProcess) {
    const auto s = read_process_stats();
    EXPECT_GT(s.rss_bytes, 1u << 20);
    EXPECT_GE(s.threads, 1u);
    EXPECT_GE(s.open_fds, 3u);
    EXPECT_GT(s.start_time_seconds, 1.7e9);
}

std::pair<int, std::string> get(std::uint16_t port, const std::string& target) {
    asio::io_context io;
    asio::ip::tcp::socket sock(io);
    sock.connect({asio::ip::make_address("127.0.0.1"), port});
    http::request<http::empty_body> req(http::verb::get, target, 11);
    req.set(http::field::host, "127.0.0.1");
    http::write(sock, req);
    boost::beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(sock, buf, res);
    return {res.result_int(), res.body()};
}

TEST(AdminServer, ServesMetricsHealthAndReadiness) {
    asio::io_context io;
    Metrics m;
    m.counter("im_admin_test_total", "Test.").Increment();
    std::atomic<bool> ready{false};
    AdminServer admin(io, m, [&] { return AdminServer::Readiness{ready.load(), "mysql down"}; });
    const auto port = admin.start("127.0.0.1", 0);
    ASSERT_NE(port, 0);
    std::thread t([&] { io.run(); });

    auto [code, body] = get(port, "/metrics");
    EXPECT_EQ(code, 200);
    EXPECT_NE(body.find("im_admin_test_total 1"), std::string::npos) << body;
    EXPECT_EQ(get(port, "/healthz").first, 200);
    auto [rcode, rbody] = get(port, "/readyz");
    EXPECT_EQ(rcode, 503);
    EXPECT_NE(rbody.find("mysql down"), std::string::npos);
    ready = true;
    EXPECT_EQ(get(port, "/readyz").first, 200);
    EXPECT_EQ(get(port, "/nope").first, 404);

    admin.stop();
    io.stop();
    t.join();
}

}  // namespace
}  // namespace im
