#include "connector_server.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>

#include "connector_config.hpp"
#include "im/server/clock.hpp"
#include "im/server/listen_slots.hpp"
#include "im/server/redis.hpp"
#include "im/wire/ids.hpp"

namespace im::connector {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

client::Envelope unavailable_answer(const PendingRequest& p) {
    client::Envelope env;
    env.set_request_id(p.request_id);
    if (p.kind == client::Envelope::kSend) {
        auto* r = env.mutable_send_result();
        r->set_code(client::UNAVAILABLE);
        r->set_retryable(true);
        r->set_client_msg_id(p.client_msg_id);
        r->set_message("transfer unavailable, resend");
    } else {
        auto* e = env.mutable_error();
        e->set_code(client::UNAVAILABLE);
        e->set_retryable(true);
        e->set_message("transfer unavailable, retry");
    }
    return env;
}

}  // namespace

struct ConnectorServer::RedisBackend {
    explicit RedisBackend(const redis::RedisConfig& c) : redis(c), status(redis, c.key_prefix) {}
    redis::RedisConnection redis;
    user_status::UserStatus status;
};

ConnectorServer::ConnectorServer(asio::io_context& io, const ConnectorConfig& config,
                                 Metrics& metrics)
    : io_(io),
      config_(config),
      metrics_(metrics),
      epoch_((static_cast<std::uint64_t>(wall_ms()) << 20) | (std::random_device{}() & 0xfffffu)),
      acceptor_(io),
      sweep_timer_(io),
      heartbeat_timer_(io),
      links_(io, config, config.id, epoch_,
             TransferLinks::Callbacks{
                 [this] { return session_refs(); },
                 [this](TransferLink& l, internal::LinkEnvelope& e) { on_transfer_frame(l, e); },
                 [this](std::uint64_t id, const std::string&) { on_link_down(id); },
                 [this](std::uint64_t, const std::string&) { on_link_up(); },
                 [this] { release_held(); }},
             metrics),
      alive_(std::make_shared<std::atomic<bool>>(true)),
      sessions_gauge_(metrics.gauge("im_connector_sessions", "Open client connections.")),
      links_gauge_(metrics.gauge("im_connector_transfer_links", "Ready links to transfers.")),
      logins_ok_(
          metrics.counter("im_connector_logins_total", "Logins by result.", {{"result", "ok"}})),
      logins_failed_(metrics.counter("im_connector_logins_total", "Logins by result.",
                                     {{"result", "refused"}})),
      frames_in_(
          metrics.counter("im_connector_client_frames_total", "Frames received from clients.")),
      pushes_out_(
          metrics.counter("im_connector_push_frames_total", "Frames pushed to client sessions.")),
      pushes_shed_(metrics.counter("im_connector_pushes_shed_total",
                                   "Pushes dropped for sessions behind on reading (they are told "
                                   "to sync once their write queue is written out).")),
      frame_errors_(metrics.counter("im_connector_frame_errors_total",
                                    "Connections closed for a framing error.")),
      slow_consumers_(metrics.counter("im_connector_slow_consumers_total",
                                      "Sessions closed because their write queue overflowed "
                                      "or was not written out in time.")),
      kicks_total_(metrics.counter("im_connector_kicks_total",
                                   "Sessions kicked (replaced, logged out, idle, draining).")),
      unavailable_(metrics.counter("im_connector_unavailable_total",
                                   "Requests answered UNAVAILABLE (no transfer link).")),
      rejected_sessions_(metrics.counter("im_connector_rejected_sessions_total",
                                         "Connections refused at sessions.max.")),
      rerouted_(metrics.counter("im_connector_rerouted_total",
                                "Requests a transfer bounced (it does not own the shard) routed again.")),
      held_total_(metrics.counter("im_connector_held_total",
                                  "Requests held because their shard had no reachable owner (hand-over, takeover).")),
      held_expired_(metrics.counter("im_connector_held_expired_total",
                                    "Held requests answered UNAVAILABLE after links.reroute_timeout.")),
      held_gauge_(metrics.gauge("im_connector_held", "Requests held for a shard owner now.")),
      pending_refused_(metrics.counter("im_connector_refused_frames_total",
                                       "Client frames refused by an abuse limit (answered RATE_LIMITED or OVERLOADED).",
                                       {{"limit", "pending_requests"}})),
      address_refused_(metrics.counter("im_connector_refused_connections_total",
                                       "Client connections closed by an abuse limit.",
                                       {{"limit", "connections_per_address"}})),
      prelogin_refused_(metrics.counter("im_connector_refused_connections_total",
                                        "Client connections closed by an abuse limit.",
                                        {{"limit", "frames_before_login"}})),
      login_timeouts_(metrics.counter("im_connector_refused_connections_total",
                                      "Client connections closed by an abuse limit.", {{"limit", "login_timeout"}})),
      frames_throttled_(metrics.counter("im_connector_throttled_frames_total",
                                        "Client frames over sessions.frames_per_second: handled, then the session is "
                                        "not read until the debt is paid.")) {
    for (auto scope : {Refusal::Scope::session, Refusal::Scope::user}) {
        for (auto kind : {Metered::messages, Metered::receipts, Metered::typing}) {
            Refusal r;
            r.scope = scope;
            r.kind = kind;
            rate_limited_[scope == Refusal::Scope::user ? 1 : 0][static_cast<std::size_t>(kind)] =
                &metrics.counter("im_connector_refused_frames_total",
                                 "Client frames refused by an abuse limit (answered RATE_LIMITED or OVERLOADED).",
                                 {{"limit", r.name()}});
        }
    }
    for (std::uint32_t i = 0; i < config.redis_threads; ++i)
        redis_backends_.push_back(std::make_unique<RedisBackend>(config.redis));
    redis_pool_ = std::make_unique<ThreadPool>("redis", config.redis_threads, 100000);
    status_backend_ = std::make_unique<RedisBackend>(config.redis);
    status_pool_ = std::make_unique<ThreadPool>("status", 1, 1000000);
}

ConnectorServer::~ConnectorServer() {
    *alive_ = false;
    if (kicks_) kicks_->stop();
    if (redis_pool_) redis_pool_->shutdown();
    if (status_pool_) status_pool_->shutdown();
}

bool ConnectorServer::redis_task(std::function<void(RedisBackend&)> task) {
    return redis_pool_->try_submit([this, task = std::move(task)] {
        auto& be = *redis_backends_.at(static_cast<std::size_t>(ThreadPool::worker_index()));
        try {
            task(be);
        } catch (const std::exception& e) {
            spdlog::warn("connector: redis task failed: {}", e.what());
        }
    });
}

bool ConnectorServer::status_task(std::function<void(RedisBackend&)> task) {
    return status_pool_->try_submit([this, task = std::move(task)] {
        try {
            task(*status_backend_);
        } catch (const std::exception& e) {
            spdlog::warn("connector: user-status update failed: {}", e.what());
        }
    });
}

std::uint16_t ConnectorServer::start(tcp::acceptor listening) {
    if (config_.tls_enabled) tls_ = make_client_tls();
    if (!listening.is_open()) listening = listen_on(io_, config_.host, config_.port);
    acceptor_ = std::move(listening);
    accept();
    sweep();
    links_.start();
    heartbeat();
    kicks_ = std::make_unique<user_status::KickSubscriber>(
        config_.redis, [this, alive = alive_](const user_status::KickRequest& k) {
            asio::post(io_, [this, alive, k] {
                if (!*alive) return;
                const bool replaced = k.reason == "replaced";
                kick_matching(k.user_id, k.session_id, k.login_epoch,
                              replaced ? client::REPLACED : client::LOGGED_OUT,
                              replaced ? "logged in again on this device" : "logged out");
            });
        });
    kicks_->start();
    return acceptor_.local_endpoint().port();
}

std::shared_ptr<asio::ssl::context> ConnectorServer::make_client_tls() const {
    auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
    ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    ctx->use_certificate_chain_file(config_.tls_cert_file);
    ctx->use_private_key_file(config_.tls_key_file, asio::ssl::context::pem);
    return ctx;
}

void ConnectorServer::reload_tls() {
    if (config_.tls_enabled) {
        try {
            tls_ = make_client_tls();  // sessions already open hold their own SSL objects
            spdlog::info("connector: client TLS certificate reloaded");
        } catch (const std::exception& e) {
            spdlog::error("connector: client TLS reload failed, the previous certificate stays in use: {}", e.what());
        }
    }
    links_.reload_tls();
}

void ConnectorServer::accept() {
    acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
        if (ec) {
            spdlog::warn("connector: accept failed: {}", ec.message());
            if (ec == asio::error::no_descriptors) {
                auto t = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
                t->async_wait([this, t](const boost::system::error_code&) { accept(); });
                return;
            }
            accept();
            return;
        }
        if (draining_) {
            rejected_sessions_.Increment();
            accept();
            return;  // the socket closes: cheapest refusal
        }
        if (sessions_.size() >= config_.max_sessions) {
            rejected_sessions_.Increment();
            refuse_connection(socket, client::OVERLOADED, "this connector is full (sessions.max): try another");
            accept();
            return;
        }
        boost::system::error_code addr_ec;
        const auto remote = socket.remote_endpoint(addr_ec);
        if (addr_ec) {  // already gone
            accept();
            return;
        }
        const auto address = AddressCounter::key_of(remote.address());
        if (!addresses_.try_add(address, config_.limits.max_per_address)) {
            address_refused_.Increment();
            refuse_connection(socket, client::RATE_LIMITED,
                              "too many connections from this address (sessions.max_per_address)");
            accept();
            return;
        }
        net::ConnectionOptions opts{config_.max_frame_bytes, config_.max_write_queue_bytes};
        if (tls_) {
            auto stream =
                std::make_unique<net::FrameConnection::TlsStream>(std::move(socket), *tls_);
            auto* raw = stream.get();
            auto timer = std::make_shared<asio::steady_timer>(io_, config_.login_timeout);
            timer->async_wait([raw_ptr = &raw->lowest_layer()](const boost::system::error_code& e) {
                if (!e) {
                    boost::system::error_code ignored;
                    raw_ptr->close(ignored);
                }
            });
            auto holder = std::make_shared<std::unique_ptr<net::FrameConnection::TlsStream>>(
                std::move(stream));
            raw->async_handshake(
                asio::ssl::stream_base::server,
                [this, holder, timer, opts, address, alive = alive_, ctx = tls_](const boost::system::error_code& e) {
                    timer->cancel();
                    if (!*alive) return;
                    if (e) {
                        addresses_.remove(address);
                        spdlog::debug("connector: TLS handshake failed: {}", e.message());
                        return;
                    }
                    auto s = std::make_shared<ClientSession>(std::move(*holder), opts, *this);
                    s->address = address;
                    sessions_.emplace(s.get(), s);
                    sessions_gauge_.Set(static_cast<double>(sessions_.size()));
                    s->begin();
                });
        } else {
            auto s = std::make_shared<ClientSession>(std::move(socket), opts, *this);
            s->address = address;
            sessions_.emplace(s.get(), s);
            sessions_gauge_.Set(static_cast<double>(sessions_.size()));
            s->begin();
        }
        accept();
    });
}

void ConnectorServer::refuse_connection(tcp::socket& socket, client::ErrorCode code, const std::string& why) {
    boost::system::error_code ec;
    if (!tls_) {
        client::Envelope env;
        env.mutable_error()->set_code(code);
        env.mutable_error()->set_retryable(true);
        env.mutable_error()->set_retry_after_ms(1000);
        env.mutable_error()->set_message(why);
        const auto frame = wire::encode_frame(env);
        socket.non_blocking(true, ec);
        socket.send(asio::buffer(frame), 0, ec);  // a fresh socket's buffer takes it, or nothing
        socket.shutdown(tcp::socket::shutdown_send, ec);
    }
    socket.close(ec);
}

bool ConnectorServer::admit(ClientSession& s, const client::Envelope& env) {
    const auto kind = metered_kind(env.body_case());
    if (kind == Metered::none) return true;
    const auto now = net::steady_ms();
    auto user = user_buckets_.find(s.user_id);
    const Refusal r = admit_frame(config_.limits, s.buckets, user == user_buckets_.end() ? nullptr : &user->second,
                                  kind, now);
    if (!r) return true;
    rate_limited_[r.scope == Refusal::Scope::user ? 1 : 0][static_cast<std::size_t>(r.kind)]->Increment();
    s.send(refusal_answer(env, r));
    // Nothing more is read from this client until the bucket has a token again: a flood waits in
    // its own socket buffers instead of costing this thread a refusal per frame.
    s.rate_paused_until = std::max(s.rate_paused_until, now + r.retry_after_ms);
    s.pause_reading_until(s.rate_paused_until);
    return false;
}

void ConnectorServer::sweep() {
    sweep_timer_.expires_after(std::chrono::seconds(1));
    sweep_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec) return;
        const auto now = net::steady_ms();
        const auto idle_limit = 3 * config_.heartbeat_interval.count();
        std::vector<std::shared_ptr<ClientSession>> idle, late, stalled;
        for (auto& [ptr, s] : sessions_) {
            if (s->state == SessionState::active) {
                if (s->behind_since_ms != 0 &&
                    now - s->behind_since_ms > config_.slow_consumer_timeout.count()) {
                    stalled.push_back(s);
                } else if (now - s->last_read_ms() > idle_limit) {
                    idle.push_back(s);
                }
            } else if (s->state != SessionState::closing &&
                       now - s->connected_ms > config_.login_timeout.count()) {
                late.push_back(s);
            }
        }
        for (auto& s : idle) {
            kicks_total_.Increment();
            s->kick(client::IDLE, "no frame for 3 heartbeat intervals");
        }
        for (auto& s : stalled) s->close(net::CloseReason::slow_consumer);  // no frame: not read
        for (auto& s : late) {
            login_timeouts_.Increment();
            s->send_error(0, client::NOT_LOGGED_IN, "login timeout (sessions.login_timeout)", true);
        }
        recheck_tokens(now);
        for (auto it = token_waits_.begin(); it != token_waits_.end();) {
            if (it->second.deadline_ms < now) {
                auto s = it->second.session.lock();
                if (s && !it->second.recheck) {
                    refuse_login(*s, it->second.login_request_id, client::TIMEOUT,
                                 "token validation timed out");
                }
                it = token_waits_.erase(it);
            } else {
                ++it;
            }
        }
        links_gauge_.Set(static_cast<double>(links_.ready_count()));
        expire_held(now);
        sweep();
    });
}

void ConnectorServer::recheck_tokens(std::int64_t now) {
    // A bounded slice per sweep: one pipelined round trip to the token cache for all of it.
    std::vector<std::weak_ptr<ClientSession>> due;
    std::vector<std::vector<std::string>> gets;
    for (auto& [ptr, s] : sessions_) {
        if (s->state != SessionState::active ||
            now - s->token_checked_ms < config_.token_recheck_interval.count())
            continue;
        s->token_checked_ms = now;
        due.push_back(s);
        gets.push_back({"GET", tokens::cache_key(config_.redis.key_prefix, s->token_hash)});
        if (due.size() >= 2000) break;
    }
    if (due.empty()) return;
    redis_task([this, due = std::move(due), gets = std::move(gets),
                alive = alive_](RedisBackend& be) {
        std::vector<std::optional<std::string>> values(gets.size());
        bool ok = true;
        try {
            auto replies = be.redis.pipeline(gets);
            for (std::size_t i = 0; i < replies.size(); ++i)
                values[i] = redis::as_string(replies[i].get());
        } catch (const std::exception& e) {
            ok = false;  // Redis down: try again next interval
            spdlog::warn("connector: token re-check skipped: {}", e.what());
        }
        if (!ok) return;
        asio::post(io_, [this, due, values = std::move(values), alive] {
            if (!*alive) return;
            for (std::size_t i = 0; i < due.size(); ++i) {
                auto s = due[i].lock();
                if (!s || s->state != SessionState::active) continue;
                bool revoked = false;
                auto info =
                    values[i] ? tokens::decode_cached_session(*values[i], &revoked) : std::nullopt;
                if (revoked || (info && info->expires_ms <= wall_ms())) {
                    kicks_total_.Increment();
                    s->kick(client::LOGGED_OUT, "token revoked or expired");
                } else if (!info) {
                    // Not cached: ask a transfer (MySQL is the truth).
                    TransferLink* link = links_.any();
                    if (link == nullptr) continue;
                    const auto id = next_request_id_++;
                    token_waits_[id] =
                        TokenWait{s, 0, net::steady_ms() + config_.request_timeout.count(), true};
                    internal::LinkEnvelope out;
                    out.set_request_id(id);
                    out.mutable_validate_token()->set_token_sha256(s->token_hash);
                    out.mutable_validate_token()->set_device_id(s->device_id);
                    link->send(out);
                }
            }
        });
    });
}

void ConnectorServer::heartbeat() {
    heartbeat_timer_.expires_after(config_.discovery_interval);
    heartbeat_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec) return;
        user_status::ConnectorInfo info{config_.id, epoch_, config_.advertised_address,
                                        static_cast<std::uint32_t>(sessions_.size()), wall_ms()};
        redis_task([this, info, alive = alive_](RedisBackend& be) {
            const bool existed = be.status.connector_heartbeat(info, config_.registration_ttl);
            auto transfers = be.status.live_transfers();
            asio::post(io_, [this, alive, existed, transfers = std::move(transfers)] {
                if (!*alive) return;
                std::vector<TransferEndpoint> eps;
                for (const auto& t : transfers)
                    eps.push_back({t.id, t.epoch, t.address});
                links_.update(eps);
                if (!existed && !by_user_.empty()) {
                    // Redis lost our registration (restart, FLUSHALL, expiry): register every
                    // session again.
                    std::vector<std::pair<std::uint64_t, user_status::SessionEntry>> all;
                    for (const auto& [user, list] : by_user_) {
                        for (const auto* s : list) {
                            all.push_back({user,
                                           {s->device_id, config_.id, epoch_, s->login_epoch,
                                            s->token_session_id}});
                        }
                    }
                    spdlog::warn(
                        "connector: registration was missing in Redis; re-registering {} sessions",
                        all.size());
                    status_task(
                        [all = std::move(all)](RedisBackend& be2) { be2.status.online_many(all); });
                }
            });
        });
        heartbeat();
    });
}

internal::SessionRef ConnectorServer::ref_of(const ClientSession& s) const {
    internal::SessionRef r;
    r.set_user_id(s.user_id);
    r.set_device_id(s.device_id);
    r.set_login_epoch(s.login_epoch);
    return r;
}

std::vector<internal::SessionRef> ConnectorServer::session_refs() const {
    std::vector<internal::SessionRef> out;
    for (const auto& [user, list] : by_user_) {
        for (const auto* s : list)
            out.push_back(ref_of(*s));
    }
    return out;
}

ClientSession* ConnectorServer::find(std::uint64_t user, std::uint64_t login_epoch) {
    auto it = by_user_.find(user);
    if (it == by_user_.end()) return nullptr;
    for (auto* s : it->second) {
        if (s->login_epoch == login_epoch) return s;
    }
    return nullptr;
}

void ConnectorServer::count_frame_error(wire::FrameError) {
    frame_errors_.Increment();
}

void ConnectorServer::on_client_frame(ClientSession& s, client::Envelope& env) {
    frames_in_.Increment();
    if (s.state == SessionState::awaiting_login || s.state == SessionState::authenticating) {
        const auto max = config_.limits.max_frames_before_login;
        if (max != 0 && ++s.frames_before_login > max) {
            prelogin_refused_.Increment();
            s.send_error(env.request_id(), client::NOT_LOGGED_IN,
                         "too many frames before login (sessions.max_frames_before_login)", true);
            return;
        }
    }
    if (s.state == SessionState::active && config_.limits.session_frames.enabled()) {
        const auto now = net::steady_ms();
        if (const auto wait = s.frames_bucket.charge(config_.limits.session_frames, now)) {
            frames_throttled_.Increment();
            s.rate_paused_until = std::max(s.rate_paused_until, now + wait);
            s.pause_reading_until(s.rate_paused_until);
        }
    }
    const Decision d = dispatch(s.state, s.user_id, env);
    switch (d.route) {
        case Route::pong: {
            client::Envelope pong;
            pong.set_request_id(env.request_id());
            pong.mutable_pong()->set_client_time_ms(env.ping().client_time_ms());
            pong.mutable_pong()->set_server_time_ms(wall_ms());
            s.send(pong);
            break;
        }
        case Route::login:
            login(s, env);
            break;
        case Route::error:
            s.send_error(env.request_id(), d.code, d.message);
            break;
        case Route::drop:
            break;
        case Route::to_owner:
        case Route::to_any:
            if (admit(s, env)) forward(s, env, d);
            break;
    }
}

void ConnectorServer::refuse_login(ClientSession& s, std::uint64_t request_id,
                                   client::ErrorCode code, const std::string& why) {
    logins_failed_.Increment();
    spdlog::info("connector: login from {} refused: {}", s.peer(), why);
    s.send_error(request_id, code, why, true);
}

void ConnectorServer::login(ClientSession& s, const client::Envelope& env) {
    const auto& l = env.login();
    const auto request_id = env.request_id();
    if (const auto refusal = check_login(l)) {
        refuse_login(s, request_id, refusal->code, refusal->message);
        return;
    }
    s.state = SessionState::authenticating;
    s.device_id = l.device_id();
    const auto hash = tokens::hash_token(l.token());
    s.token_hash = hash;
    std::weak_ptr<ClientSession> weak =
        std::static_pointer_cast<ClientSession>(s.shared_from_this());
    const auto key = tokens::cache_key(config_.redis.key_prefix, hash);
    // 1. The Redis cache; 2. on a miss (or Redis down) a transfer reads MySQL.
    const bool queued = redis_task([this, weak, request_id, key, hash,
                                    alive = alive_](RedisBackend& be) {
        std::optional<std::string> value;
        bool redis_ok = true;
        try {
            value = be.redis.get(key);
        } catch (const std::exception& e) {
            redis_ok = false;
            spdlog::warn("connector: token cache unavailable: {}", e.what());
        }
        asio::post(io_, [this, weak, request_id, hash, value = std::move(value), redis_ok, alive] {
            if (!*alive) return;
            auto session = weak.lock();
            if (!session || session->state != SessionState::authenticating) return;
            if (value) {
                bool revoked = false;
                auto info = tokens::decode_cached_session(*value, &revoked);
                if (revoked) {
                    refuse_login(*session, request_id, client::UNAUTHENTICATED, "token revoked");
                    return;
                }
                if (info) {
                    finish_login(session, request_id, *info);
                    return;
                }
            }
            (void)redis_ok;
            TransferLink* link = links_.any();
            if (link == nullptr) {
                refuse_login(*session, request_id, client::UNAVAILABLE,
                             "no transfer available to check the token");
                return;
            }
            const auto id = next_request_id_++;
            token_waits_[id] =
                TokenWait{weak, request_id, net::steady_ms() + config_.request_timeout.count()};
            internal::LinkEnvelope out;
            out.set_request_id(id);
            out.mutable_validate_token()->set_token_sha256(hash);
            out.mutable_validate_token()->set_device_id(session->device_id);
            link->send(out);
        });
    });
    if (!queued) refuse_login(s, request_id, client::OVERLOADED, "connector busy");
}

void ConnectorServer::finish_login(const std::shared_ptr<ClientSession>& s,
                                   std::uint64_t request_id, const tokens::SessionInfo& info) {
    if (info.expires_ms <= wall_ms()) {
        refuse_login(*s, request_id, client::UNAUTHENTICATED, "token expired");
        return;
    }
    if (info.device_id != s->device_id) {
        refuse_login(*s, request_id, client::UNAUTHENTICATED,
                     "the token was issued to another device");
        return;
    }
    if (draining_) {
        s->kick(client::RECONNECT, "connector draining");
        return;
    }
    s->user_id = info.user_id;
    s->token_session_id = info.session_id;
    s->token_checked_ms = net::steady_ms();
    // A second login of the same user and device replaces the older session here...
    if (auto it = by_user_.find(info.user_id); it != by_user_.end()) {
        std::vector<ClientSession*> older;
        for (auto* o : it->second) {
            if (o->device_id == s->device_id) older.push_back(o);
        }
        for (auto* o : older) {
            kicks_total_.Increment();
            o->kick(client::REPLACED, "logged in again on this device");
        }
    }
    // Time-ordered login epochs: when one device logs in on two connectors at once, the newer
    // login wins in Redis (see UserStatus::claim_device); the low bits keep them unique.
    // Strictly increasing on this connector: two logins of one device here within the same
    // millisecond must still order as they came (the later one wins the device in Redis).
    s->login_epoch = std::max(last_login_epoch_ + 1,
                              (static_cast<std::uint64_t>(wall_ms()) << 16) | (rng_() & 0xffff));
    last_login_epoch_ = s->login_epoch;
    s->state = SessionState::active;
    by_user_[s->user_id].push_back(s.get());
    user_buckets_.try_emplace(s->user_id);
    logins_ok_.Increment();

    // ...and on other connectors, atomically in Redis: the newest login of the device takes the
    // user-status entry; the session it replaced gets a targeted kick through the kick channel,
    // or, when a newer login already holds it, this session is the one to go.
    user_status::SessionEntry entry{s->device_id, config_.id, epoch_, s->login_epoch,
                                    s->token_session_id};
    const auto user = s->user_id;
    status_task([this, entry, user, alive = alive_](RedisBackend& be) {
        const auto claim = be.status.claim_device(user, entry);
        if (claim.superseded) {
            asio::post(io_, [this, alive, user, epoch = entry.login_epoch] {
                if (*alive)
                    kick_matching(user, 0, epoch, client::REPLACED,
                                  "logged in again on this device");
            });
        } else if (claim.other && claim.other->login_epoch != entry.login_epoch) {
            be.status.publish_kick(user_status::KickRequest{user, claim.other->session_id,
                                                            "replaced", claim.other->login_epoch});
        }
    });

    // Every transfer learns about the session before any of its requests (same link, in order).
    internal::LinkEnvelope ev;
    *ev.mutable_session_event()->mutable_session() = ref_of(*s);
    ev.mutable_session_event()->set_online(true);
    links_.broadcast(ev);

    client::Envelope res;
    res.set_request_id(request_id);
    auto* r = res.mutable_login_result();
    r->set_user_id(s->user_id);
    r->set_login_epoch(s->login_epoch);
    r->set_server_time_ms(wall_ms());
    r->set_heartbeat_interval_s(
        static_cast<std::uint32_t>(config_.heartbeat_interval.count() / 1000));
    r->set_max_frame_bytes(config_.max_frame_bytes);
    r->set_connector_id(config_.id);
    s->send(res);
    spdlog::debug("connector: user {} logged in on device '{}' (epoch {})", s->user_id,
                  s->device_id, s->login_epoch);
}

void ConnectorServer::forward(ClientSession& s, client::Envelope& env, const Decision& d) {
    const auto kind = env.body_case();
    const bool answered = kind == client::Envelope::kSend ||
                          kind == client::Envelope::kSyncConversations ||
                          kind == client::Envelope::kSyncMessages || kind == client::Envelope::kReadBy;
    // Writes go to the shard's owner; reads are served by any transfer (all read MySQL).
    const bool owner_only = d.route == Route::to_owner &&
                            (kind == client::Envelope::kSend || kind == client::Envelope::kReceipt ||
                             kind == client::Envelope::kTyping);
    TransferLink* link = d.route == Route::to_owner ? links_.route(d.conversation_id) : links_.any();
    if (link == nullptr && !owner_only) link = links_.any();
    PendingRequest p{env.request_id(), 0, kind,
                     kind == client::Envelope::kSend ? env.send().client_msg_id() : ""};
    if (answered && s.pending.size() >= config_.max_pending_requests) {
        pending_refused_.Increment();
        auto busy = unavailable_answer(p);
        const std::string why = "too many requests in flight (sessions.max_pending_requests), retry";
        if (busy.has_send_result()) {
            busy.mutable_send_result()->set_code(client::OVERLOADED);
            busy.mutable_send_result()->set_message(why);
        } else {
            busy.mutable_error()->set_code(client::OVERLOADED);
            busy.mutable_error()->set_message(why);
        }
        s.send(busy);
        // Nothing more is read from it until an answer frees a place (or a second passes).
        s.paused_for_pending = true;
        s.pause_reading_until(net::steady_ms() + 1000);
        return;
    }
    const auto shard = shard_of(d.conversation_id);
    if (owner_only && kind != client::Envelope::kTyping &&
        (held_per_shard_[shard] > 0 || (link == nullptr && links_.ready_count() > 0))) {
        // Transfers are reachable but the shard's owner is not announced (a hand-over or takeover
        // in progress), or earlier requests of this shard wait: wait behind them (the order within
        // a conversation is kept). With no transfer at all, UNAVAILABLE at once (below).
        if (answered) s.pending.push_back(std::move(p));
        hold(s, std::move(env), shard, 0, 0, false);
        return;
    }
    if (link == nullptr) {
        unavailable_.Increment();
        if (answered || kind == client::Envelope::kReceipt) {
            s.send(unavailable_answer(
                p));  // a receipt is resent by the client (watermarks are idempotent)
        }
        return;
    }
    if (answered) {
        p.link_id = link->id();
        s.pending.push_back(std::move(p));
    }
    send_to(*link, s, std::move(env));
}

void ConnectorServer::send_to(TransferLink& link, ClientSession& s, client::Envelope env) {
    internal::LinkEnvelope out;
    auto* req = out.mutable_client_request();
    *req->mutable_session() = ref_of(s);
    *req->mutable_request() = std::move(env);
    link.send(out);
}

void ConnectorServer::hold(ClientSession& s, client::Envelope env, std::uint32_t shard, std::uint64_t avoid_link,
                           std::uint64_t avoid_gen, bool rerouted) {
    if (held_.size() >= config_.max_held_requests) {
        held_expired_.Increment();
        PendingRequest p{env.request_id(), 0, env.body_case(),
                         env.has_send() ? env.send().client_msg_id() : ""};
        std::erase_if(s.pending, [&](const PendingRequest& q) { return q.request_id == p.request_id && q.link_id == 0; });
        s.send(unavailable_answer(p));
        return;
    }
    held_total_.Increment();
    ++held_per_shard_[shard];
    held_.push_back(Held{std::static_pointer_cast<ClientSession>(s.shared_from_this()), s.login_epoch, std::move(env),
                         shard, avoid_link, avoid_gen, net::steady_ms() + config_.reroute_timeout.count(), rerouted});
    held_gauge_.Set(static_cast<double>(held_.size()));
}

void ConnectorServer::release_held() {
    if (held_.empty()) return;
    std::vector<bool> blocked(kShardCount, false);  // an earlier request of the shard still waits
    for (auto it = held_.begin(); it != held_.end();) {
        auto s = it->session.lock();
        if (!s || s->state != SessionState::active || s->login_epoch != it->login_epoch) {
            --held_per_shard_[it->shard];
            it = held_.erase(it);
            continue;
        }
        const auto& slot = links_.slot(it->shard);
        TransferLink* link = slot.link != nullptr && slot.link->ready ? slot.link : nullptr;
        if (link != nullptr && link->id() == it->avoid_link && slot.gen <= it->avoid_gen) link = nullptr;
        if (blocked[it->shard] || link == nullptr) {
            blocked[it->shard] = true;
            ++it;
            continue;
        }
        for (auto& p : s->pending) {
            if (p.request_id == it->env.request_id() && p.link_id == 0) p.link_id = link->id();
        }
        if (it->rerouted) rerouted_.Increment();
        --held_per_shard_[it->shard];
        send_to(*link, *s, std::move(it->env));
        it = held_.erase(it);
    }
    held_gauge_.Set(static_cast<double>(held_.size()));
}

void ConnectorServer::expire_held(std::int64_t now) {
    // In order: once one request of a shard expires, the later ones of that shard go too (none
    // may overtake it; the client resends all of them from its outbox).
    std::vector<bool> expired(kShardCount, false);
    for (auto it = held_.begin(); it != held_.end();) {
        if (it->deadline_ms > now && !expired[it->shard]) {
            ++it;
            continue;
        }
        expired[it->shard] = true;
        --held_per_shard_[it->shard];
        held_expired_.Increment();
        if (auto s = it->session.lock(); s && s->state == SessionState::active && s->login_epoch == it->login_epoch) {
            PendingRequest p{it->env.request_id(), 0, it->env.body_case(),
                             it->env.has_send() ? it->env.send().client_msg_id() : ""};
            std::erase_if(s->pending,
                          [&](const PendingRequest& q) { return q.request_id == p.request_id && q.link_id == 0; });
            if (it->env.has_send() || it->env.has_receipt()) s->send(unavailable_answer(p));
        }
        it = held_.erase(it);
    }
    held_gauge_.Set(static_cast<double>(held_.size()));
}

void ConnectorServer::on_bounce(TransferLink& link, internal::Bounce& b) {
    auto& req = *b.mutable_request();
    ClientSession* s = find(req.session().user_id(), req.session().login_epoch());
    if (s == nullptr) return;  // gone: the client resends after reconnecting
    auto& env = *req.mutable_request();
    if (!env.has_send() && !env.has_receipt()) return;
    const auto conv = env.has_send() ? send_conversation(s->user_id, env.send().peer_user_id(), env.send().group_id())
                                     : env.receipt().conversation_id();
    const auto shard = shard_of(conv);
    for (auto& p : s->pending) {
        if (p.request_id == env.request_id() && p.link_id == link.id()) p.link_id = 0;
    }
    hold(*s, std::move(env), shard, link.id(), links_.slot(shard).gen, true);
    release_held();
}

void ConnectorServer::on_transfer_frame(TransferLink& link, internal::LinkEnvelope& env) {
    switch (env.body_case()) {
        case internal::LinkEnvelope::kClientResponse: {
            auto& r = *env.mutable_client_response();
            ClientSession* s = find(r.session().user_id(), r.session().login_epoch());
            if (s == nullptr) return;  // the session is gone; the client resends after reconnecting
            const auto rid = r.response().request_id();
            auto it = std::find_if(s->pending.begin(), s->pending.end(),
                                   [&](const PendingRequest& p) { return p.request_id == rid; });
            if (it != s->pending.end()) s->pending.erase(it);
            s->send(r.response());
            if (s->paused_for_pending && s->pending.size() < config_.max_pending_requests) {
                s->paused_for_pending = false;
                s->resume_reading();
                if (s->rate_paused_until > net::steady_ms()) s->pause_reading_until(s->rate_paused_until);
            }
            break;
        }
        case internal::LinkEnvelope::kPush: {
            const auto& p = env.push();
            for (auto user : p.user_ids()) {
                auto it = by_user_.find(user);
                if (it == by_user_.end()) continue;
                for (auto* s : it->second) {
                    if (p.has_except() && p.except().user_id() == user &&
                        p.except().login_epoch() == s->login_epoch) {
                        continue;
                    }
                    // A session behind on reading gets no more pushes until its queue is
                    // written out, then one SyncHint: the store has everything it missed. A
                    // burst (a paused link's backlog, a busy group) costs a sync, not the session.
                    if (s->behind_since_ms == 0 && s->queued_bytes() > 0 &&
                        s->queued_bytes() + p.frame().size() > config_.push_queue_bytes) {
                        s->behind_since_ms = net::steady_ms();
                    }
                    if (s->behind_since_ms != 0) {
                        pushes_shed_.Increment();
                        continue;
                    }
                    if (s->send_body(p.frame())) pushes_out_.Increment();
                }
            }
            break;
        }
        case internal::LinkEnvelope::kTokenResult: {
            auto it = token_waits_.find(env.request_id());
            if (it == token_waits_.end()) return;
            auto wait = std::move(it->second);
            token_waits_.erase(it);
            auto s = wait.session.lock();
            const auto& t = env.token_result();
            if (wait.recheck) {
                if (s && s->state == SessionState::active &&
                    (!t.valid() || t.session_id() != s->token_session_id)) {
                    kicks_total_.Increment();
                    s->kick(client::LOGGED_OUT, "token revoked or expired");
                }
                return;
            }
            if (!s || s->state != SessionState::authenticating) return;
            if (!t.valid()) {
                refuse_login(*s, wait.login_request_id, client::UNAUTHENTICATED,
                             "invalid, expired or revoked token");
                return;
            }
            finish_login(
                s, wait.login_request_id,
                tokens::SessionInfo{t.session_id(), t.user_id(), t.device_id(), t.expires_ms()});
            break;
        }
        case internal::LinkEnvelope::kBounce:
            on_bounce(link, *env.mutable_bounce());
            break;
        case internal::LinkEnvelope::kKickSession: {
            const auto& k = env.kick_session();
            kick_matching(k.user_id(), 0, 0, k.reason(), "kicked by the server");
            break;
        }
        default:
            spdlog::debug("connector: ignoring link frame {} from {}",
                          static_cast<int>(env.body_case()), link.transfer_id());
            break;
    }
}

void ConnectorServer::on_link_down(std::uint64_t link_id) {
    // Requests in flight there get a retryable answer; every session syncs, since something may
    // have been committed whose push was lost with the link.
    client::Envelope hint;
    hint.mutable_sync_hint()->set_conversation_id(0);
    hint.mutable_sync_hint()->set_reason("transfer link lost");
    for (auto& [ptr, s] : sessions_) {
        if (s->state != SessionState::active) continue;
        for (auto it = s->pending.begin(); it != s->pending.end();) {
            if (it->link_id == link_id) {
                s->send(unavailable_answer(*it));
                it = s->pending.erase(it);
            } else {
                ++it;
            }
        }
        s->send(hint);
    }
}

void ConnectorServer::on_link_up() {
    // A transfer is (back) within reach: sessions catch up now instead of on their retry timers.
    client::Envelope hint;
    hint.mutable_sync_hint()->set_conversation_id(0);
    hint.mutable_sync_hint()->set_reason("transfer link ready");
    for (auto& [ptr, s] : sessions_) {
        if (s->state == SessionState::active) s->send(hint);
    }
}

void ConnectorServer::on_session_caught_up(ClientSession& s) {
    s.behind_since_ms = 0;
    if (s.state != SessionState::active) return;
    client::Envelope hint;
    hint.mutable_sync_hint()->set_conversation_id(0);
    hint.mutable_sync_hint()->set_reason("pushes dropped while the client read slowly");
    s.send(hint);
}

void ConnectorServer::kick_matching(std::uint64_t user, std::uint64_t token_session_id,
                                    std::uint64_t only_login_epoch, client::KickReason reason,
                                    const std::string& message) {
    auto it = by_user_.find(user);
    if (it == by_user_.end()) return;
    auto list = it->second;  // kicking edits the index
    for (auto* s : list) {
        if (token_session_id != 0 && s->token_session_id != token_session_id) continue;
        if (only_login_epoch != 0 && s->login_epoch != only_login_epoch) continue;
        kicks_total_.Increment();
        s->kick(reason, message);
    }
}

void ConnectorServer::on_session_closed(ClientSession& s, net::CloseReason reason) {
    if (reason == net::CloseReason::slow_consumer) {
        slow_consumers_.Increment();
        spdlog::warn(
            "connector: session of user {} from {} closed: slow consumer (write queue over {} "
            "bytes, or pushes dropped and the queue not written out within {} ms)",
            s.user_id, s.peer(), config_.max_write_queue_bytes, config_.slow_consumer_timeout.count());
    }
    auto keep = sessions_.find(&s);
    if (keep == sessions_.end()) return;
    auto holder = keep->second;
    sessions_.erase(keep);
    sessions_gauge_.Set(static_cast<double>(sessions_.size()));
    addresses_.remove(s.address);
    if (s.login_epoch == 0) return;  // never logged in
    auto it = by_user_.find(s.user_id);
    if (it != by_user_.end()) {
        auto& v = it->second;
        v.erase(std::remove(v.begin(), v.end(), &s), v.end());
        if (v.empty()) {
            by_user_.erase(it);
            user_buckets_.erase(s.user_id);
        }
    }
    internal::LinkEnvelope ev;
    *ev.mutable_session_event()->mutable_session() = ref_of(s);
    ev.mutable_session_event()->set_online(false);
    links_.broadcast(ev);
    const auto user = s.user_id;
    const auto device = s.device_id;
    const auto epoch = s.login_epoch;
    status_task(
        [user, device, epoch](RedisBackend& be) { be.status.offline(user, device, epoch); });
}

void ConnectorServer::drain(std::function<void()> done) {
    draining_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    std::vector<std::shared_ptr<ClientSession>> all;
    for (auto& [p, s] : sessions_)
        all.push_back(s);
    for (auto& s : all) {
        if (s->state == SessionState::active)
            s->kick(client::RECONNECT, "connector shutting down");
        else
            s->close();
    }
    spdlog::info("connector: draining {} sessions", all.size());
    redis_task([id = config_.id](RedisBackend& be) { be.status.connector_gone(id); });
    auto deadline =
        std::make_shared<std::int64_t>(net::steady_ms() + config_.shutdown_grace.count());
    auto timer = std::make_shared<asio::steady_timer>(io_);
    // The poll holds itself only weakly; the pending wait holds it strongly, so it is freed once
    // it stops re-arming (a strong self-capture was a reference cycle: LeakSanitizer at exit).
    auto poll = std::make_shared<std::function<void()>>();
    std::weak_ptr<std::function<void()>> weak = poll;
    *poll = [this, deadline, timer, weak, done = std::move(done)] {
        if (sessions_.empty() || net::steady_ms() > *deadline) {
            done();
            return;
        }
        timer->expires_after(std::chrono::milliseconds(20));
        timer->async_wait([self = weak.lock()](const boost::system::error_code&) {
            if (self) (*self)();
        });
    };
    (*poll)();
}

void ConnectorServer::stop() {
    sweep_timer_.cancel();
    heartbeat_timer_.cancel();
    links_.stop();
    if (kicks_) kicks_->stop();
    for (auto& [p, s] : sessions_)
        s->close();
}

}  // namespace im::connector
