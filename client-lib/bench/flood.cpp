#include "flood.hpp"

#include <future>
#include <random>

#include <boost/asio/post.hpp>

namespace imbench {

namespace {
constexpr std::uint64_t kFirstRequestId = 16;  // 1 (Login) and 2 (Ping) are the session's own
}

Flooder::Flooder(Worker& worker, std::uint64_t window, std::size_t size, bool pings)
    : worker_(worker),
      sender_(worker, *this, 0),
      friend_(worker, *this, 1),
      window_(window),
      pings_(pings),
      payload_(size, 'f'),
      nonce_(std::random_device{}()) {}

void Flooder::start(const tcp::endpoint& sender_ep, const tcp::endpoint& friend_ep, const std::string& sender_token,
                    const std::string& friend_token, std::uint64_t to_user_id) {
    to_user_ = to_user_id;
    asio::post(worker_.io(), [=, this] {
        sender_.start(sender_ep, std::nullopt, sender_token, "bench");  // the seeded tokens' device
        friend_.start(friend_ep, std::nullopt, friend_token, "bench");
    });
}

void Flooder::begin() {
    sending_ = true;
    asio::post(worker_.io(), [this] { fill(); });
}

void Flooder::stop() { sending_ = false; }

void Flooder::close() {
    closing_ = true;
    sending_ = false;
    std::promise<void> done;
    asio::post(worker_.io(), [this, &done] {
        sender_.close();
        friend_.close();
        done.set_value();
    });
    done.get_future().wait();
}

std::string Flooder::first_error() {
    std::lock_guard lock(mu_);
    return first_error_;
}

void Flooder::fill() {
    while (sending_ && inflight_ < window_ && !sender_.closed()) {
        pb::Envelope env;
        env.set_request_id(kFirstRequestId + counter_++);
        if (pings_) {
            env.mutable_ping()->set_client_time_ms(1);
            sender_.send(env);
            ++inflight_;
            ++sent;
            continue;
        }
        auto* m = env.mutable_send();
        m->set_peer_user_id(to_user_);
        std::string id(16, '\0');
        for (int b = 0; b < 8; ++b) id[static_cast<std::size_t>(b)] = static_cast<char>((counter_ >> (8 * b)) & 0xff);
        for (int b = 0; b < 4; ++b) id[static_cast<std::size_t>(8 + b)] = static_cast<char>((nonce_ >> (8 * b)) & 0xff);
        m->set_client_msg_id(id);
        m->set_stream_seq(next_stream_++);
        m->set_type(pb::TEXT);
        m->set_text(payload_);
        sender_.send(env);
        ++inflight_;
        ++sent;
    }
}

void Flooder::on_login(Session&, bool ok, const std::string& error) {
    if (ok) {
        ++logged_in;
        return;
    }
    ++login_failed;
    std::lock_guard lock(mu_);
    if (first_error_.empty()) first_error_ = "login: " + error;
}

void Flooder::on_envelope(Session& s, const pb::Envelope& e) {
    if (&s == &friend_) {
        if (e.has_deliver()) ++delivered;
        return;
    }
    if (e.has_kick()) {
        kicked = true;
        return;
    }
    if (e.has_pong() && pings_ && e.request_id() >= kFirstRequestId) {
        if (inflight_ > 0) --inflight_;
        ++acked;  // answered
        fill();
        return;
    }
    if (!e.has_send_result()) return;
    const auto& r = e.send_result();
    if (inflight_ > 0) --inflight_;
    switch (r.code()) {
        case pb::ERROR_NONE:
            ++acked;
            break;
        case pb::RATE_LIMITED:
            ++rate_limited;  // ignored: no pause, another send replaces it at once
            break;
        case pb::OUT_OF_ORDER:  // a gap left by refused numbers: continue where the owner is
            ++other_errors;
            if (r.expected_stream_seq() != 0) next_stream_ = r.expected_stream_seq();
            break;
        default:
            ++other_errors;
            break;
    }
    fill();
}

void Flooder::on_closed(Session& s, const std::string& why) {
    if (closing_) return;
    std::lock_guard lock(mu_);
    if (first_error_.empty()) first_error_ = std::string(&s == &sender_ ? "flooder" : "its friend") + " closed: " + why;
}

}  // namespace imbench
