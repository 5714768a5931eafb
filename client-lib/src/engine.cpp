// Login, the connection life cycle, heartbeat, frame dispatch and request bookkeeping.

#include "engine.hpp"

#include <algorithm>

#include "invoke.hpp"
#include "random_id.hpp"
#include "rest_login.hpp"

namespace imclient::detail {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using namespace std::chrono_literals;

namespace {

constexpr std::uint32_t kProtocolVersion = 1;
// LoginResult.heartbeat_interval_s counts whole seconds: 0 is what a connector whose interval is
// below one second announces (it truncates). Ping often enough for such a connector; call the
// server silent only after 3 s (3 x the shortest interval the field can express).
constexpr std::chrono::milliseconds kSubSecondHeartbeat{250};
constexpr std::chrono::milliseconds kMinSilence{3000};

// "host:port" or "[v6]:port".
void split_address(const std::string& address, std::string& host, std::string& port) {
    if (!address.empty() && address.front() == '[') {
        const auto close = address.find(']');
        host = address.substr(1, close == std::string::npos ? std::string::npos : close - 1);
        port = close != std::string::npos && close + 1 < address.size() ? address.substr(close + 2)
                                                                        : "";
        return;
    }
    const auto colon = address.rfind(':');
    host = address.substr(0, colon);
    port = colon == std::string::npos ? "" : address.substr(colon + 1);
}

}  // namespace

Engine::Engine(asio::io_context& io, Options options, std::atomic<std::size_t>& queued,
               StateLog* state)
    : io_(io),
      opts_(std::move(options)),
      queued_(queued),
      store_(opts_.cursor_store),
      jitter_(std::random_device{}()),
      reconnect_timer_(io),
      login_timer_(io),
      heartbeat_timer_(io),
      tick_timer_(io),
      outbox_(Outbox::Config{opts_.max_in_flight, opts_.request_timeout, opts_.reconnect_min,
                             std::min<std::chrono::milliseconds>(opts_.reconnect_max, 2000ms)}),
      state_log_(state) {
    if (opts_.tls) {
        tls_ = std::make_unique<ssl::context>(ssl::context::tls_client);
        tls_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                          ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                          ssl::context::no_tlsv1_1);
        if (opts_.tls_ca_file.empty()) {
            tls_->set_default_verify_paths();
        } else {
            tls_->load_verify_file(opts_.tls_ca_file);  // throws: a bad CA file is a start-up error
        }
    }
}

Engine::~Engine() = default;

// ---- login and session life cycle ----------------------------------------------------------

void Engine::login(std::string username, std::string password, std::promise<LoginInfo> promise) {
    if (phase_ != Phase::idle && phase_ != Phase::stopped) {
        promise.set_exception(std::make_exception_ptr(
            Error(ErrorCode::already_logged_in, "imclient: login() while a session is active")));
        return;
    }
    const std::uint64_t generation = ++session_generation_;
    phase_ = Phase::rest_login;
    login_promise_ = std::move(promise);
    set_state(State::connecting, "logging in at " + opts_.rest_url);
    RestLoginRequest req{opts_.rest_url,        std::move(username),  std::move(password),
                         opts_.device_id,       opts_.client_version, opts_.tls_ca_file,
                         opts_.connect_timeout, opts_.request_timeout};
    rest_login(io_, std::move(req), [this, generation](RestLoginResult r) {
        if (generation != session_generation_ || phase_ != Phase::rest_login) return;  // closed
        if (r.code == ErrorCode::unauthenticated) {
            stop(State::auth_failed, r.message, ErrorCode::unauthenticated);
            return;
        }
        if (r.code != ErrorCode::none) {
            stop(State::closed, r.message, r.code);
            return;
        }
        auto connectors = opts_.connectors.empty() ? std::move(r.connectors) : opts_.connectors;
        auto promise_taken = std::move(*login_promise_);
        login_promise_.reset();
        start_session(std::move(r.token), r.user_id, std::move(connectors),
                      std::move(promise_taken));
    });
}

void Engine::login_with_token(std::string token, std::uint64_t user_id,
                              std::vector<std::string> connectors,
                              std::promise<LoginInfo> promise) {
    if (phase_ != Phase::idle && phase_ != Phase::stopped) {
        promise.set_exception(std::make_exception_ptr(
            Error(ErrorCode::already_logged_in, "imclient: login while a session is active")));
        return;
    }
    ++session_generation_;
    start_session(std::move(token), user_id,
                  connectors.empty() ? opts_.connectors : std::move(connectors),
                  std::move(promise));
}

void Engine::start_session(std::string token, std::uint64_t user_id,
                           std::vector<std::string> connectors, std::promise<LoginInfo> promise) {
    if (token.empty() || connectors.empty()) {
        promise.set_exception(std::make_exception_ptr(Error(
            ErrorCode::invalid_argument,
            token.empty() ? "imclient: empty token" : "imclient: no connector to connect to")));
        phase_ = Phase::stopped;
        set_state(State::closed, "no connector");
        return;
    }
    token_ = std::move(token);
    connectors_ = std::move(connectors);
    connector_index_ = 0;
    failed_in_a_row_ = 0;
    ever_connected_ = false;
    attempts_ = 0;
    if (user_id != 0) user_id_ = user_id;
    login_promise_ = std::move(promise);
    phase_ = Phase::connecting;
    set_state(State::connecting, "connecting to " + connectors_.front());
    arm_tick();
    connect();
}

void Engine::connect() {
    const std::string& address = connectors_[connector_index_ % connectors_.size()];
    Link::Config cfg;
    split_address(address, cfg.host, cfg.port);
    cfg.tls = tls_.get();
    cfg.tls_server_name = opts_.tls_server_name;
    cfg.connect_timeout = opts_.connect_timeout;
    cfg.max_receive_frame_bytes = opts_.max_receive_frame_bytes;
    cfg.max_write_queue_bytes = opts_.max_write_queue_bytes;
    phase_ = Phase::connecting;
    link_ = std::make_shared<Link>(io_, std::move(cfg), *this);
    link_->start();
}

void Engine::on_link_open(Link& link) {
    if (&link != link_.get()) return;
    phase_ = Phase::awaiting_login;
    last_received_ = Clock::now();
    Envelope env;
    env.set_request_id(next_request_id());
    auto* login = env.mutable_login();
    login->set_token(token_);
    login->set_device_id(opts_.device_id);
    login->set_client_version(opts_.client_version);
    login->set_protocol_version(kProtocolVersion);
    if (!send_frame(env)) return;
    const std::uint64_t generation = session_generation_;
    login_timer_.expires_after(opts_.request_timeout);
    login_timer_.async_wait(
        [this, generation, weak = std::weak_ptr<Link>(link_)](boost::system::error_code ec) {
            if (ec || generation != session_generation_ || phase_ != Phase::awaiting_login) return;
            if (weak.lock() != link_) return;
            session_down("no LoginResult within the request timeout", true, Reconnect::backoff);
        });
}

void Engine::on_link_closed(Link& link, const std::string& reason) {
    if (&link != link_.get()) return;
    session_down(reason, phase_ != Phase::live, Reconnect::backoff);
}

void Engine::session_down(const std::string& reason, bool connector_failed, Reconnect how) {
    if (link_) {
        link_->close();
        link_.reset();
    }
    login_timer_.cancel();
    heartbeat_timer_.cancel();
    // App requests in flight wait for the next session; internal ones restart with it.
    for (auto& [id, r] : pending_) {
        if (r.survives_reconnect) parked_.push_back(std::move(r));
    }
    pending_.clear();
    sends_on_wire_.clear();  // the connector forgets a closed session's requests
    reset_receive_session();

    if (connector_failed || how == Reconnect::next_at_once) {
        connector_index_ = (connector_index_ + 1) % connectors_.size();
    }
    if (!ever_connected_ && connector_failed && ++failed_in_a_row_ >= connectors_.size()) {
        stop(State::closed, "no connector reachable: " + reason, ErrorCode::unreachable);
        return;
    }
    phase_ = Phase::connecting;
    set_state(ever_connected_ ? State::reconnecting : State::connecting, reason);
    const auto delay = std::max(how == Reconnect::next_at_once ? 0ms : reconnect_delay(), reconnect_hint_);
    reconnect_hint_ = 0ms;
    const std::uint64_t generation = session_generation_;
    reconnect_timer_.expires_after(delay);
    reconnect_timer_.async_wait([this, generation](boost::system::error_code ec) {
        if (ec || generation != session_generation_ || phase_ != Phase::connecting) return;
        connect();
    });
}

void Engine::stop(State state, const std::string& detail, ErrorCode code) {
    ++session_generation_;
    phase_ = Phase::stopped;
    if (link_) {
        link_->close();
        link_.reset();
    }
    reconnect_timer_.cancel();
    login_timer_.cancel();
    heartbeat_timer_.cancel();
    tick_timer_.cancel();
    auto pending = std::move(pending_);
    pending_.clear();
    auto parked = std::move(parked_);
    parked_.clear();
    sends_on_wire_.clear();
    reset_receive_session();
    flush_state();
    set_state(state, detail);
    fail_login(code, detail);  // after the state: a woken waiter sees the final state
    for (auto& [id, r] : pending) {
        if (r.survives_reconnect) r.done(nullptr, code);
    }
    for (auto& r : parked)
        r.done(nullptr, code);
}

void Engine::close(const std::string& reason) {
    if (phase_ == Phase::stopped && state_ == State::closed) return;
    stop(State::closed, reason, ErrorCode::closed);
}

void Engine::fail_login(ErrorCode code, const std::string& detail) {
    if (!login_promise_) return;
    login_promise_->set_exception(std::make_exception_ptr(Error(code, detail)));
    login_promise_.reset();
}

void Engine::set_state(State state, const std::string& detail) {
    if (state_.exchange(state) == state) return;
    invoke_app(callbacks.state, state, detail);
}

std::chrono::milliseconds Engine::reconnect_delay() {
    auto base = opts_.reconnect_min;
    for (unsigned i = 0; i < attempts_ && base < opts_.reconnect_max; ++i)
        base *= 2;
    base = std::min(base, opts_.reconnect_max);
    ++attempts_;
    // Equal jitter: half fixed, half random, so a fleet of clients spreads out.
    const auto half = base.count() / 2;
    std::uniform_int_distribution<std::int64_t> spread(0, std::max<std::int64_t>(half, 0));
    return std::chrono::milliseconds(base.count() - half + spread(jitter_));
}

void Engine::handle_login_result(const Envelope& frame) {
    if (phase_ != Phase::awaiting_login) return;
    login_timer_.cancel();
    const auto& r = frame.login_result();
    phase_ = Phase::live;
    ever_connected_ = true;
    attempts_ = 0;
    failed_in_a_row_ = 0;
    if (r.user_id() != 0) user_id_ = r.user_id();
    if (store_->owner() != user_id_) {
        if (store_->owner() != 0) {  // the store belongs to someone else: start afresh
            store_->clear();
            inbox_.clear();
        }
        store_->set_owner(user_id_);
        store_->flush();
    }
    // Queued messages go only as the user who queued them (a state directory may hold another
    // user's, restored from an earlier run); those queued before any login are this user's.
    session_user_ = user_id_.load();
    if (state_log_) state_log_->login(user_id_);
    for (const auto& m : outbox_.adopt(user_id_)) {
        --queued_;
        forget(m.client_msg_id);
        report_send_failure(m, ErrorCode::other_user,
                            "queued by user " + std::to_string(m.owner) + ", not sent as user " +
                                std::to_string(user_id_));
    }
    flush_state();
    session_ =
        LoginInfo{user_id_, r.login_epoch(),          link_->address(),    r.connector_id(),
                  token_,   r.heartbeat_interval_s(), r.max_frame_bytes(), r.server_time_ms()};
    max_frame_bytes_ =
        r.max_frame_bytes() != 0 ? r.max_frame_bytes() : im::wire::kDefaultMaxFrameBytes;
    set_state(State::connected, link_->address());
    if (login_promise_) {
        login_promise_->set_value(session_);
        login_promise_.reset();
    }
    if (phase_ != Phase::live) return;  // a state callback cannot close synchronously, but be safe
    arm_heartbeat();
    // The new epoch: every unacknowledged message goes again, renumbered from 1, in order.
    outbox_.restart_streams();
    pump_outbox();
    watermarks_due_ = false;
    resend_watermarks();
    auto parked = std::move(parked_);
    parked_.clear();
    for (auto& r2 : parked)
        issue(std::move(r2));
    sync_after_login();
}

void Engine::handle_kick(const Envelope& frame) {
    const auto& k = frame.kick();
    const std::string detail = std::string("kicked (") + im::client::KickReason_Name(k.reason()) +
                               (k.message().empty() ? ")" : "): " + k.message());
    switch (k.reason()) {
        case im::client::REPLACED:
        case im::client::LOGGED_OUT:
            stop(State::kicked, detail, ErrorCode::kicked);
            return;
        case im::client::RECONNECT:
            session_down(detail, false, Reconnect::next_at_once);
            return;
        default:
            session_down(detail, false, Reconnect::backoff);
            return;
    }
}

void Engine::handle_error(const Envelope& frame) {
    const auto& e = frame.error();
    const auto code = static_cast<ErrorCode>(e.code());
    const std::string detail =
        std::string(to_string(code)) + (e.message().empty() ? "" : ": " + e.message());
    if (phase_ == Phase::awaiting_login) {
        if (code == ErrorCode::unauthenticated) {
            stop(State::auth_failed, "token refused: " + detail, ErrorCode::unauthenticated);
        } else if (code == ErrorCode::version_unsupported) {
            stop(State::closed, "protocol version refused: " + detail, code);
        } else {
            reconnect_hint_ = std::chrono::milliseconds(e.retry_after_ms());  // e.g. RATE_LIMITED
            session_down("login failed: " + detail, true, Reconnect::backoff);
        }
        return;
    }
    const std::uint64_t rid = frame.request_id();
    if (rid == 0) return;  // connection-level: the server closes the connection itself
    sends_on_wire_.erase(rid);
    if (pending_.count(rid) != 0) {
        answer(rid, nullptr, code);
        return;
    }
    if (auto id = outbox_.message_of_request(rid)) {
        send_answered(*id, rid, code, e.retryable(), 0, detail, nullptr,
                      std::chrono::milliseconds(e.retry_after_ms()));
        return;
    }
    // Neither a request nor a send: a receipt the server could not take (a full writer lane, or
    // RATE_LIMITED: then no sooner than its retry_after_ms). Watermarks are idempotent: resend
    // them all with a conversation sync a little later. (A refused Typing is not retryable.)
    if (e.retryable() && phase_ == Phase::live && !watermarks_due_) {
        watermarks_due_ = true;
        const auto wait = std::max<std::chrono::milliseconds>(retry_delay(1), std::chrono::milliseconds(e.retry_after_ms()));
        if (!list_retry_at_) list_retry_at_ = Clock::now() + wait;
    }
}

// ---- heartbeat and periodic work -----------------------------------------------------------

void Engine::arm_heartbeat() {
    const std::chrono::milliseconds interval =
        session_.heartbeat_interval_s != 0 ? std::chrono::seconds(session_.heartbeat_interval_s)
                                           : kSubSecondHeartbeat;
    const auto silence = std::max(3 * interval, kMinSilence);
    const std::uint64_t generation = session_generation_;
    heartbeat_timer_.expires_after(interval);
    heartbeat_timer_.async_wait([this, generation, silence](boost::system::error_code ec) {
        if (ec || generation != session_generation_ || phase_ != Phase::live) return;
        if (Clock::now() - last_received_ >= silence) {
            session_down("heartbeat timeout: the server is silent", false, Reconnect::backoff);
            return;
        }
        Envelope ping;
        ping.set_request_id(next_request_id());
        ping.mutable_ping()->set_client_time_ms(
            std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count());
        if (!send_frame(ping)) return;
        arm_heartbeat();
    });
}

void Engine::arm_tick() {
    auto period = std::min(opts_.request_timeout, opts_.reconnect_min) / 4;
    period = std::clamp<std::chrono::milliseconds>(period, 5ms, 100ms);
    const std::uint64_t generation = session_generation_;
    tick_timer_.expires_after(period);
    tick_timer_.async_wait([this, generation](boost::system::error_code ec) {
        if (ec || generation != session_generation_ || phase_ == Phase::stopped) return;
        on_tick();
    });
}

void Engine::on_tick() {
    const auto now = Clock::now();
    expire_requests(now);
    if (phase_ == Phase::live) {
        reissue_parked(now);
        for (auto it = sends_on_wire_.begin(); it != sends_on_wire_.end();) {
            it = it->second <= now ? sends_on_wire_.erase(it) : std::next(it);  // assumed lost
        }
        outbox_.expire(now);
        pump_outbox();
        retry_syncs(now);
    }
    flush_state();
    if (phase_ != Phase::stopped) arm_tick();
}

// ---- frames and requests -------------------------------------------------------------------

bool Engine::on_link_frame(Link& link, const Envelope& frame) {
    if (&link != link_.get()) return false;
    last_received_ = Clock::now();
    const bool live = phase_ == Phase::live;
    switch (frame.body_case()) {
        case Envelope::kLoginResult:
            handle_login_result(frame);
            break;
        case Envelope::kSendResult:
            if (live) handle_send_result(frame);
            break;
        case Envelope::kDeliver:
            if (live) handle_deliver(frame.deliver());
            break;
        case Envelope::kReceiptEvent:
            if (live) handle_receipt_event(frame.receipt_event());
            break;
        case Envelope::kConversationList:
        case Envelope::kMessagePage:
        case Envelope::kReadByResult:
            answer(frame.request_id(), &frame, ErrorCode::none);
            break;
        case Envelope::kSyncHint:
            if (live) handle_sync_hint(frame.sync_hint());
            break;
        case Envelope::kTypingEvent:
            invoke_app(callbacks.typing, frame.typing_event().conversation_id(),
                       frame.typing_event().user_id());
            break;
        case Envelope::kPresence:
            invoke_app(callbacks.presence, frame.presence().user_id(), frame.presence().online());
            break;
        case Envelope::kKick:
            handle_kick(frame);
            break;
        case Envelope::kError:
            handle_error(frame);
            break;
        default:
            break;  // Pong (its arrival is what counts) and anything newer
    }
    return &link == link_.get();
}

void Engine::on_link_batch_end(Link& link) {
    if (&link != link_.get() || phase_ != Phase::live) return;
    flush_receipts();
    pump_outbox();
    flush_state();
}

bool Engine::send_frame(Envelope& frame) {
    auto link = link_;  // a failing send may replace link_
    if (!link) return false;
    return link->send(frame);
}

void Engine::issue(Request request) {
    if (phase_ == Phase::live) {
        const std::uint64_t rid = next_request_id();
        request.frame.set_request_id(rid);
        if (request.frame.ByteSizeLong() > max_frame_bytes_) {
            request.done(nullptr, ErrorCode::message_too_large);
            return;
        }
        auto& stored = pending_.emplace(rid, std::move(request)).first->second;
        send_frame(stored.frame);  // a failure parks it again through session_down()
        return;
    }
    if (!request.survives_reconnect) return;  // internal: restarts with the next session
    if (phase_ == Phase::idle || phase_ == Phase::stopped) {
        request.done(nullptr, phase_ == Phase::idle ? ErrorCode::not_logged_in : ErrorCode::closed);
        return;
    }
    parked_.push_back(std::move(request));
}

void Engine::answer(std::uint64_t request_id, const Envelope* response, ErrorCode code) {
    const auto it = pending_.find(request_id);
    if (it == pending_.end()) return;  // late (timed out) or unknown
    Request request = std::move(it->second);
    pending_.erase(it);
    if (response == nullptr && request.survives_reconnect && is_retryable(code)) {
        // An app request (conversations(), history()) asks again after a backoff, as long as its
        // deadline allows: a transfer restart must not fail it when a resend would succeed.
        const auto at = Clock::now() + retry_delay(++request.failures);
        if (at < request.deadline) {
            request.last_error = code;
            request.not_before = at;
            parked_.push_back(std::move(request));
            return;
        }
    }
    request.done(response, code);
}

bool Engine::is_retryable(ErrorCode code) {
    switch (code) {
        case ErrorCode::unavailable:
        case ErrorCode::timeout:
        case ErrorCode::overloaded:
        case ErrorCode::internal:
        case ErrorCode::rate_limited:
            return true;
        default:
            return false;
    }
}

void Engine::expire_requests(Clock::time_point now) {
    std::vector<Done> expired;
    for (auto it = pending_.begin(); it != pending_.end();) {
        if (it->second.deadline <= now) {
            expired.push_back(std::move(it->second.done));
            it = pending_.erase(it);
        } else {
            ++it;
        }
    }
    std::vector<std::pair<Done, ErrorCode>> expired_parked;
    for (auto it = parked_.begin(); it != parked_.end();) {
        if (it->deadline <= now) {
            // Out of time: the last answer's code when the server kept refusing, else a timeout.
            expired_parked.emplace_back(std::move(it->done), it->last_error != ErrorCode::none
                                                                 ? it->last_error
                                                                 : ErrorCode::timeout);
            it = parked_.erase(it);
        } else {
            ++it;
        }
    }
    for (auto& done : expired)
        done(nullptr, ErrorCode::timeout);
    for (auto& [done, code] : expired_parked)
        done(nullptr, code);
}

void Engine::reissue_parked(Clock::time_point now) {
    std::vector<Request> due;
    for (auto it = parked_.begin(); it != parked_.end();) {
        if (it->not_before <= now) {
            due.push_back(std::move(*it));
            it = parked_.erase(it);
        } else {
            ++it;
        }
    }
    for (auto& r : due)
        issue(std::move(r));  // a failing link parks them again
}

}  // namespace imclient::detail
