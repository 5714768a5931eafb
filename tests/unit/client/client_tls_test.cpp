// TLS to the connector: the CA is verified, SNI and the host name come from tls_server_name.

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>

#include "client_harness.hpp"
#include "im/wire/frame_codec.hpp"

namespace im::test {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// A throwaway CA and a server certificate for "localhost", made with the openssl tool.
class TlsFiles {
  public:
    TlsFiles() {
        dir_ = (std::filesystem::temp_directory_path() /
                ("imclient-tls-" + std::to_string(::getpid()) + "-" +
                 std::to_string(Clock::now().time_since_epoch().count())))
                   .string();
        const std::string cmd = "set -e; mkdir -p " + dir_ + "; cd " + dir_ +
                                "; openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "
                                "/CN=im-test-ca -keyout ca.key -out ca.pem 2>/dev/null"
                                "; openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "
                                "server.key -out server.csr 2>/dev/null"
                                "; printf 'subjectAltName=DNS:localhost\\n' > ext.cnf"
                                "; openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key "
                                "-CAcreateserial -days 1 -extfile ext.cnf "
                                "-out server.pem 2>/dev/null";
        ok_ = std::system(cmd.c_str()) == 0;
    }
    ~TlsFiles() { std::filesystem::remove_all(dir_); }
    bool ok() const { return ok_; }
    std::string file(const std::string& name) const { return dir_ + "/" + name; }

  private:
    std::string dir_;
    bool ok_ = false;
};

// Accepts TLS connections one at a time: answers Login with a LoginResult, records the SNI.
class TlsConnector {
  public:
    explicit TlsConnector(const TlsFiles& files) : ctx_(ssl::context::tls_server) {
        ctx_.use_certificate_chain_file(files.file("server.pem"));
        ctx_.use_private_key_file(files.file("server.key"), ssl::context::pem);
        acceptor_.open(tcp::v4());
        acceptor_.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        acceptor_.listen();
        thread_ = std::thread([this] { serve(); });
    }
    ~TlsConnector() {
        stop_ = true;
        boost::system::error_code ec;
        ::shutdown(acceptor_.native_handle(), SHUT_RDWR);  // wakes accept(); close after the join
        thread_.join();
        acceptor_.close(ec);
    }
    std::string address() const {
        return "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
    }
    std::string sni() const {
        std::lock_guard lock(mu_);
        return sni_;
    }
    int handshakes() const { return handshakes_; }

  private:
    void serve() {
        while (!stop_) {
            ssl::stream<tcp::socket> stream(io_, ctx_);
            boost::system::error_code ec;
            acceptor_.accept(stream.next_layer(), ec);
            if (ec) return;
            stream.handshake(ssl::stream_base::server, ec);
            if (ec) continue;
            ++handshakes_;
            if (const char* name =
                    SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name)) {
                std::lock_guard lock(mu_);
                sni_ = name;
            }
            im::wire::FrameDecoder decoder;
            char buf[4096];
            bool answered = false;
            while (!stop_) {
                const std::size_t n = stream.read_some(asio::buffer(buf), ec);
                if (ec) break;
                decoder.feed(buf, n, [&](std::string_view body) {
                    Envelope in;
                    if (im::wire::parse_body(body, in) != im::wire::FrameError::none) return false;
                    if (in.body_case() == Envelope::kLogin && !answered) {
                        answered = true;
                        auto out = FakeConnector::login_result(9, 1, 30);
                        out.set_request_id(in.request_id());
                        asio::write(stream, asio::buffer(im::wire::encode_frame(out)), ec);
                    }
                    return true;
                });
            }
        }
    }

    asio::io_context io_;
    ssl::context ctx_;
    tcp::acceptor acceptor_{io_};
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::atomic<int> handshakes_{0};
    mutable std::mutex mu_;
    std::string sni_;
};

TEST(ClientTls, VerifiesTheCaAndUsesTheServerName) {
    TlsFiles files;
    if (!files.ok()) GTEST_SKIP() << "the openssl tool is missing";
    TlsConnector server(files);
    imclient::Options opts;
    opts.connectors = {server.address()};
    opts.tls = true;
    opts.tls_ca_file = files.file("ca.pem");
    opts.tls_server_name = "localhost";
    opts.connect_timeout = 2000ms;
    opts.device_id = "tls-device";
    imclient::Client client(opts);
    auto f = client.login_with_token("tok");
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(f.get().user_id, 9u);
    EXPECT_EQ(server.sni(), "localhost");
    EXPECT_EQ(client.state(), imclient::State::connected);
}

TEST(ClientTls, RefusesACertificateForAnotherName) {
    TlsFiles files;
    if (!files.ok()) GTEST_SKIP() << "the openssl tool is missing";
    TlsConnector server(files);
    imclient::Options opts;
    opts.connectors = {server.address()};
    opts.tls = true;
    opts.tls_ca_file = files.file("ca.pem");
    opts.tls_server_name = "im.example.org";  // the certificate is for localhost
    opts.connect_timeout = 2000ms;
    imclient::Client client(opts);
    auto f = client.login_with_token("tok");
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    try {
        f.get();
        FAIL() << "TLS accepted a certificate for another name";
    } catch (const imclient::Error& e) {
        EXPECT_EQ(e.code(), imclient::ErrorCode::unreachable);
    }
    EXPECT_EQ(server.handshakes(), 0);
}

}  // namespace
}  // namespace im::test
