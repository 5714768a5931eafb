#include "link.hpp"

#include "tls_sni.hpp"

#include <openssl/ssl.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace imclient::detail {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {
constexpr std::size_t kReadBufferBytes = 64 * 1024;
}

Link::Link(asio::io_context& io, Config config, LinkHandler& handler)
    : io_(io),
      config_(std::move(config)),
      handler_(handler),
      socket_(io),
      connect_timer_(io),
      decoder_(config_.max_receive_frame_bytes) {
    if (config_.tls != nullptr) {
        tls_ = std::make_unique<ssl::stream<tcp::socket>>(io, *config_.tls);
    }
}

tcp::socket& Link::lowest() {
    return tls_ ? tls_->next_layer() : socket_;
}

void Link::start() {
    asio::co_spawn(
        io_, [self = shared_from_this()] { return self->run(); }, asio::detached);
}

asio::awaitable<void> Link::run() {
    auto self = shared_from_this();  // keeps the link alive while the coroutine runs
    boost::system::error_code ec;

    connect_timer_.expires_after(config_.connect_timeout);
    connect_timer_.async_wait([weak = weak_from_this()](boost::system::error_code wait_ec) {
        auto link = weak.lock();
        if (wait_ec || !link || link->open_ || link->closed_) return;
        link->timed_out_ = true;
        boost::system::error_code ignored;
        link->lowest().close(ignored);  // aborts the resolve/connect/handshake in progress
    });

    tcp::resolver resolver(io_);
    const auto endpoints = co_await resolver.async_resolve(
        config_.host, config_.port, asio::redirect_error(asio::use_awaitable, ec));
    if (closed_) co_return;
    if (ec) {
        fail("resolve " + address() + ": " + ec.message());
        co_return;
    }
    co_await asio::async_connect(lowest(), endpoints,
                                 asio::redirect_error(asio::use_awaitable, ec));
    if (closed_) co_return;
    if (ec || timed_out_) {
        fail("connect " + address() + ": " + (timed_out_ ? std::string("timeout") : ec.message()));
        co_return;
    }
    lowest().set_option(tcp::no_delay(true), ec);
    if (tls_) {
        const std::string name =
            config_.tls_server_name.empty() ? config_.host : config_.tls_server_name;
        set_sni(tls_->native_handle(), name);
        tls_->set_verify_mode(ssl::verify_peer);
        tls_->set_verify_callback(ssl::host_name_verification(name));
        co_await tls_->async_handshake(ssl::stream_base::client,
                                       asio::redirect_error(asio::use_awaitable, ec));
        if (closed_) co_return;
        if (ec || timed_out_) {
            fail("TLS handshake with " + address() + ": " +
                 (timed_out_ ? std::string("timeout") : ec.message()));
            co_return;
        }
    }
    connect_timer_.cancel();
    open_ = true;
    handler_.on_link_open(*this);
    start_write();

    std::string buffer(kReadBufferBytes, '\0');
    while (!closed_) {
        const std::size_t n =
            tls_ ? co_await tls_->async_read_some(asio::buffer(buffer),
                                                  asio::redirect_error(asio::use_awaitable, ec))
                 : co_await socket_.async_read_some(asio::buffer(buffer),
                                                    asio::redirect_error(asio::use_awaitable, ec));
        if (closed_) co_return;
        if (ec) {
            fail(ec == asio::error::eof ? std::string("closed by the server")
                                        : "read: " + ec.message());
            co_return;
        }
        bool bad_body = false;
        const auto err = decoder_.feed(buffer.data(), n, [&](std::string_view body) {
            frame_.Clear();
            if (im::wire::parse_body(body, frame_) != im::wire::FrameError::none) {
                bad_body = true;
                return false;
            }
            return handler_.on_link_frame(*this, frame_) && !closed_;
        });
        if (closed_) co_return;
        if (bad_body || err != im::wire::FrameError::none) {
            fail(std::string("bad frame from the server: ") +
                 im::wire::to_string(bad_body ? im::wire::FrameError::unparsable : err));
            co_return;
        }
        handler_.on_link_batch_end(*this);
    }
}

bool Link::send(const im::client::Envelope& frame) {
    if (closed_) return false;
    im::wire::append_frame(pending_, frame);
    if (pending_.size() + writing_.size() > config_.max_write_queue_bytes) {
        fail("write queue overflow");
        return false;
    }
    if (open_) start_write();
    return true;
}

void Link::start_write() {
    if (writing_now_ || pending_.empty() || closed_ || !open_) return;
    writing_now_ = true;
    writing_.swap(pending_);  // both buffers keep their capacity
    pending_.clear();
    auto done = [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
        self->writing_now_ = false;
        if (self->closed_) return;
        if (ec) {
            self->fail("write: " + ec.message());
            return;
        }
        self->writing_.clear();
        self->start_write();
    };
    if (tls_) {
        asio::async_write(*tls_, asio::buffer(writing_), std::move(done));
    } else {
        asio::async_write(socket_, asio::buffer(writing_), std::move(done));
    }
}

void Link::close() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    connect_timer_.cancel();
    lowest().shutdown(tcp::socket::shutdown_both, ignored);
    lowest().close(ignored);
}

void Link::fail(const std::string& reason) {
    if (closed_) return;
    close();
    handler_.on_link_closed(*this, reason);
}

}  // namespace imclient::detail
