#include "raw_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <future>
#include <optional>
#include <random>
#include <stdexcept>

#include "im/wire/frame_codec.hpp"

namespace im::test {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

std::string random_cmid() {
    static thread_local std::mt19937_64 rng(std::random_device{}());
    std::string s(16, '\0');
    for (auto& c : s) c = static_cast<char>(rng() & 0xff);
    return s;
}

struct RawClient::Impl {
    asio::io_context io;
    asio::ssl::context tls_ctx{asio::ssl::context::tls_client};
    std::unique_ptr<tcp::socket> plain;
    std::unique_ptr<asio::ssl::stream<tcp::socket>> tls;
    std::thread reader;
    mutable std::mutex mu;
    std::condition_variable cv;
    std::deque<client::Envelope> unconsumed;
    std::vector<client::Envelope> all;
    bool is_closed = false;
    std::mutex write_mu;
    wire::FrameDecoder decoder{64u << 20};
    // TLS: an SSL object may not be read in one thread and written in another, so a TLS client
    // does both on the reader thread (io.run(), asynchronously); send() waits for its write there.
    std::array<char, 65536> tls_buf{};
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> tls_work;

    // False on a framing error.
    bool deliver(const char* data, std::size_t n) {
        const auto err = decoder.feed(data, n, [&](std::string_view body) {
            client::Envelope env;
            if (wire::parse_body(body, env) == wire::FrameError::none) {
                std::lock_guard l(mu);
                unconsumed.push_back(env);
                all.push_back(std::move(env));
            }
            cv.notify_all();
            return true;
        });
        return err == wire::FrameError::none;
    }

    void mark_closed() {
        std::lock_guard l(mu);
        is_closed = true;
        cv.notify_all();
    }

    void read_loop() {  // plain TCP, blocking
        char buf[65536];
        for (;;) {
            boost::system::error_code ec;
            const std::size_t n = plain->read_some(asio::buffer(buf), ec);
            if (ec || n == 0 || !deliver(buf, n)) break;
        }
        mark_closed();
    }

    void tls_read_next() {
        tls->async_read_some(asio::buffer(tls_buf), [this](const boost::system::error_code& ec, std::size_t n) {
            if (ec || n == 0 || !deliver(tls_buf.data(), n)) {
                mark_closed();
                return;
            }
            tls_read_next();
        });
    }
};

RawClient::RawClient(std::uint16_t port, std::string ca_file) : impl_(std::make_unique<Impl>()) {
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
    if (ca_file.empty()) {
        impl_->plain = std::make_unique<tcp::socket>(impl_->io);
        impl_->plain->connect(ep);
        impl_->plain->set_option(tcp::no_delay(true));
        impl_->reader = std::thread([this] { impl_->read_loop(); });
    } else {
        impl_->tls_ctx.load_verify_file(ca_file);
        impl_->tls_ctx.set_verify_mode(asio::ssl::verify_peer);
        impl_->tls = std::make_unique<asio::ssl::stream<tcp::socket>>(impl_->io, impl_->tls_ctx);
        impl_->tls->set_verify_callback(asio::ssl::host_name_verification("localhost"));
        impl_->tls->lowest_layer().connect(ep);
        impl_->tls->handshake(asio::ssl::stream_base::client);  // throws when the CA is not trusted
        impl_->tls_work.emplace(asio::make_work_guard(impl_->io));
        impl_->tls_read_next();
        impl_->reader = std::thread([this] { impl_->io.run(); });
    }
}

RawClient::~RawClient() {
    boost::system::error_code ec;
    if (impl_->plain) {
        // shutdown() ends the reader's blocking read (EOF); the socket is closed only after the
        // reader has stopped using it (closing it under a blocked read is a data race).
        impl_->plain->shutdown(tcp::socket::shutdown_both, ec);
        if (impl_->reader.joinable()) impl_->reader.join();
        impl_->plain->close(ec);
        return;
    }
    asio::post(impl_->io, [this] {
        boost::system::error_code e;
        impl_->tls->lowest_layer().shutdown(tcp::socket::shutdown_both, e);
        impl_->tls->lowest_layer().close(e);
    });
    impl_->tls_work.reset();
    if (impl_->reader.joinable()) impl_->reader.join();
}

void RawClient::send(const client::Envelope& env) { send_bytes(wire::encode_frame(env)); }

void RawClient::send_bytes(const std::string& raw) {
    std::lock_guard l(impl_->write_mu);
    if (impl_->plain) {
        boost::system::error_code ec;
        asio::write(*impl_->plain, asio::buffer(raw), ec);
        return;
    }
    std::promise<void> written;
    asio::post(impl_->io, [&] {
        asio::async_write(*impl_->tls, asio::buffer(raw),
                          [&](const boost::system::error_code&, std::size_t) { written.set_value(); });
    });
    written.get_future().wait();
}

std::optional<client::Envelope> RawClient::wait_for(const std::function<bool(const client::Envelope&)>& pred,
                                                    std::chrono::milliseconds timeout) {
    std::unique_lock l(impl_->mu);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        for (auto it = impl_->unconsumed.begin(); it != impl_->unconsumed.end(); ++it) {
            if (pred(*it)) {
                auto env = std::move(*it);
                impl_->unconsumed.erase(it);
                return env;
            }
        }
        if (impl_->is_closed) return std::nullopt;
        if (impl_->cv.wait_until(l, deadline) == std::cv_status::timeout) {
            for (auto it = impl_->unconsumed.begin(); it != impl_->unconsumed.end(); ++it) {
                if (pred(*it)) {
                    auto env = std::move(*it);
                    impl_->unconsumed.erase(it);
                    return env;
                }
            }
            return std::nullopt;
        }
    }
}

std::optional<client::Envelope> RawClient::wait_body(client::Envelope::BodyCase body, std::chrono::milliseconds timeout) {
    return wait_for([body](const client::Envelope& e) { return e.body_case() == body; }, timeout);
}

std::vector<client::Envelope> RawClient::all_frames() const {
    std::lock_guard l(impl_->mu);
    return impl_->all;
}

std::vector<client::Envelope> RawClient::take_all(client::Envelope::BodyCase body) {
    std::lock_guard l(impl_->mu);
    std::vector<client::Envelope> out;
    for (auto it = impl_->unconsumed.begin(); it != impl_->unconsumed.end();) {
        if (it->body_case() == body) {
            out.push_back(std::move(*it));
            it = impl_->unconsumed.erase(it);
        } else {
            ++it;
        }
    }
    return out;
}

bool RawClient::closed() const {
    std::lock_guard l(impl_->mu);
    return impl_->is_closed;
}

bool RawClient::wait_closed(std::chrono::milliseconds timeout) {
    std::unique_lock l(impl_->mu);
    return impl_->cv.wait_for(l, timeout, [this] { return impl_->is_closed; });
}

client::Envelope RawClient::login(const std::string& token, const std::string& device, std::uint64_t request_id) {
    client::Envelope env;
    env.set_request_id(request_id);
    auto* l = env.mutable_login();
    l->set_token(token);
    l->set_device_id(device);
    l->set_client_version("raw-test-client");
    l->set_protocol_version(1);
    send(env);
    auto res = wait_for([](const client::Envelope& e) {
        return e.has_login_result() || e.has_error();
    });
    if (!res) throw std::runtime_error("no answer to Login");
    if (res->has_login_result()) {
        user_id = res->login_result().user_id();
        login_epoch = res->login_result().login_epoch();
    }
    return *res;
}

client::Envelope RawClient::make_send(std::uint64_t peer, const std::string& text, std::uint64_t stream_seq,
                                      std::uint64_t stream_acked, std::string* cmid) {
    client::Envelope env;
    env.set_request_id(next_request_id());
    auto* s = env.mutable_send();
    s->set_peer_user_id(peer);
    s->set_client_msg_id(random_cmid());
    s->set_stream_seq(stream_seq);
    s->set_stream_acked(stream_acked);
    s->set_type(client::TEXT);
    s->set_text(text);
    if (cmid != nullptr) *cmid = s->client_msg_id();
    return env;
}

}  // namespace im::test
