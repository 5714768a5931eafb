#include "transfer_gateway.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/system/system_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <optional>
#include <random>

#include "im/proto/internal.pb.h"
#include "im/server/clock.hpp"
#include "im/server/link_auth.hpp"
#include "im/wire/frame_codec.hpp"
#include "im/wire/ids.hpp"

namespace im::rest {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// One blocking link whose every step (connect, TLS handshake, each write and read) must finish
// before the link's deadline. The steps run as asynchronous operations on the link's own
// io_context for the time left: socket options (SO_RCVTIMEO) cannot bound Asio's synchronous
// calls, which poll again without a timeout after EAGAIN, so a peer that accepts and stays
// silent would hold the pool thread forever.
class Link {
public:
    using Clock = std::chrono::steady_clock;

    Link(const std::string& address, Clock::time_point deadline, asio::ssl::context* tls)
        : socket_(io_), deadline_(deadline) {
        const auto colon = address.rfind(':');
        if (colon == std::string::npos) throw std::runtime_error("bad transfer address");
        tcp::endpoint ep(asio::ip::make_address(address.substr(0, colon)),
                         static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
        run("connect", [&](auto done) { socket_.async_connect(ep, done); });
        if (tls != nullptr) {
            tls_.emplace(socket_, *tls);
            run("TLS handshake", [&](auto done) { tls_->async_handshake(asio::ssl::stream_base::client, done); });
        }
    }
    void send(const internal::LinkEnvelope& env) {
        const auto frame = wire::encode_frame(env);
        run("write", [&](auto done) {
            if (tls_)
                asio::async_write(*tls_, asio::buffer(frame), done);
            else
                asio::async_write(socket_, asio::buffer(frame), done);
        });
    }
    internal::LinkEnvelope receive() {
        char header[wire::kHeaderBytes];
        read(asio::buffer(header));
        const auto n = wire::read_header(header);
        if (n == 0 || n > (16u << 20)) throw std::runtime_error("bad frame from transfer");
        std::string body(n, '\0');
        read(asio::buffer(body));
        internal::LinkEnvelope env;
        if (wire::parse_body(body, env) != wire::FrameError::none) throw std::runtime_error("unparsable frame");
        return env;
    }

private:
    void read(asio::mutable_buffer b) {
        run("read", [&](auto done) {
            if (tls_)
                asio::async_read(*tls_, b, done);
            else
                asio::async_read(socket_, b, done);
        });
    }
    // Starts one operation (start(handler)) and runs it until it completes or the deadline
    // passes (the socket is closed then, and the link is unusable). Throws on either failure.
    template <class Start>
    void run(const char* what, Start&& start) {
        bool done = false;
        boost::system::error_code result;
        start([&done, &result](const boost::system::error_code& ec, auto&&...) {
            done = true;
            result = ec;
        });
        io_.restart();
        const auto left = deadline_ - Clock::now();
        if (left > Clock::duration::zero()) io_.run_for(left);
        if (!done) {
            boost::system::error_code ignored;
            socket_.close(ignored);  // aborts the operation; its handler runs below
            io_.restart();
            io_.run();
            throw std::runtime_error(std::string(what) + " timed out");
        }
        if (result) throw boost::system::system_error(result, what);
    }

    asio::io_context io_;
    tcp::socket socket_;
    std::optional<asio::ssl::stream<tcp::socket&>> tls_;
    Clock::time_point deadline_;
};

}  // namespace

void TransferGateway::set_tls(std::shared_ptr<asio::ssl::context> ctx) {
    std::lock_guard lock(mu_);
    tls_ = std::move(ctx);
}

std::shared_ptr<asio::ssl::context> TransferGateway::tls_context() const {
    std::lock_guard lock(mu_);
    return tls_;
}

bool TransferGateway::exchange(const std::vector<TransferAddress>& transfers, std::uint64_t user,
                               std::uint64_t conversation_id, const client::Envelope& request, bool ping_behind,
                               const FrameFn& on_frame, std::string& detail) const {
    using Clock = std::chrono::steady_clock;
    const auto shard = shard_of(conversation_id);
    // Two passes: a hand-over may move the shard between the HelloAck and the request.
    for (int pass = 0; pass < 2; ++pass) {
        for (const auto& t : transfers) {
            try {
                const auto tls = tls_context();
                Link link(t.address, Clock::now() + timeout_, tls.get());
                internal::LinkEnvelope hello;
                const std::string gateway_id = "im-rest-gateway";
                const std::uint64_t epoch = std::random_device{}();
                hello.mutable_hello()->set_connector_id(gateway_id);
                hello.mutable_hello()->set_connector_epoch(epoch);
                const auto proof = link_auth::prove_hello(secret_, gateway_id, epoch, wall_ms());
                hello.mutable_hello()->set_auth_nonce(proof.nonce);
                hello.mutable_hello()->set_auth_time_ms(proof.time_ms);
                hello.mutable_hello()->set_auth_mac(proof.mac);
                link.send(hello);
                auto ack = link.receive();
                if (!ack.has_hello_ack()) continue;
                const auto& a = ack.hello_ack();
                if (!link_auth::verify_ack(secret_, a.transfer_id(), a.transfer_epoch(), proof.nonce, a.auth_mac())) {
                    detail = t.id + ": the transfer did not prove the cluster secret";
                    continue;
                }
                bool owns = false;
                for (const auto& r : a.owned()) owns = owns || (shard >= r.first() && shard <= r.last());
                if (!owns) continue;
                internal::LinkEnvelope req;
                auto* cr = req.mutable_client_request();
                cr->mutable_session()->set_user_id(user);
                cr->mutable_session()->set_device_id("rest");
                *cr->mutable_request() = request;
                link.send(req);
                if (ping_behind) {
                    internal::LinkEnvelope ping;
                    ping.mutable_ping()->set_time_ms(1);
                    link.send(ping);
                }
                bool bounced = false;
                // Frames before the answer (e.g. pushes) are skipped, within a budget of frames
                // and the link's deadline (a read past it throws).
                for (int i = 0; i < 64 && !bounced; ++i) {
                    auto f = link.receive();
                    if (f.has_bounce()) {
                        bounced = true;
                        break;
                    }
                    switch (on_frame(f, detail)) {
                        case Verdict::answered:
                            return true;
                        case Verdict::refused:
                            detail = t.id + " refused it: " + detail;
                            return false;
                        case Verdict::keep_reading:
                            break;
                    }
                }
                detail = bounced ? t.id + " no longer owns the conversation" : "no answer from " + t.id;
            } catch (const std::exception& e) {
                detail = t.id + ": " + e.what();
            }
        }
    }
    if (detail.empty()) detail = transfers.empty() ? "no live transfer" : "no transfer owns the conversation";
    return false;
}

bool TransferGateway::forward(const std::vector<TransferAddress>& transfers, std::uint64_t user,
                              std::uint64_t conversation_id, const client::Envelope& request, std::string& detail) const {
    return exchange(
        transfers, user, conversation_id, request, /*ping_behind=*/true,
        [](const internal::LinkEnvelope& f, std::string& why) {
            if (f.has_pong()) return Verdict::answered;  // queued behind everything before the ping
            if (f.has_client_response() && f.client_response().response().has_error()) {
                // The owner refused the request (e.g. a full writer lane): not queued.
                why = f.client_response().response().error().message();
                return Verdict::refused;
            }
            return Verdict::keep_reading;
        },
        detail);
}

std::optional<client::Envelope> TransferGateway::call(const std::vector<TransferAddress>& transfers,
                                                      std::uint64_t user, std::uint64_t conversation_id,
                                                      const client::Envelope& request, std::string& detail) const {
    std::optional<client::Envelope> answer;
    const auto rid = request.request_id();
    const bool ok = exchange(
        transfers, user, conversation_id, request, /*ping_behind=*/false,
        [&answer, rid](const internal::LinkEnvelope& f, std::string&) {
            if (!f.has_client_response() || f.client_response().response().request_id() != rid) {
                return Verdict::keep_reading;
            }
            answer = f.client_response().response();
            return Verdict::answered;
        },
        detail);
    if (!ok) return std::nullopt;
    return answer;
}

}  // namespace im::rest
