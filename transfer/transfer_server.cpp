#include "transfer_server.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <spdlog/spdlog.h>

#include "im/server/clock.hpp"
#include "im/server/listen_slots.hpp"
#include "im/net/link_tls.hpp"
#include "im/server/metrics.hpp"
#include "im/wire/ids.hpp"
#include "shard_assignment.hpp"
#include "transfer_config.hpp"

namespace im::transfer {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// ------------------------------------------------------------------------------- ConnectorLink
ConnectorLink::ConnectorLink(tcp::socket socket, const net::ConnectionOptions& options, TransferServer& server,
                             std::uint64_t id)
    : FrameConnection(std::move(socket), options), server_(server), id_(id) {}

ConnectorLink::ConnectorLink(std::unique_ptr<TlsStream> tls, const net::ConnectionOptions& options,
                             TransferServer& server, std::uint64_t id)
    : FrameConnection(std::move(tls), options), server_(server), id_(id) {}

void ConnectorLink::on_frame(std::string_view body) { server_.on_link_frame(*this, body); }

void ConnectorLink::on_closed(net::CloseReason reason, wire::FrameError error) {
    if (error != wire::FrameError::none) {
        spdlog::warn("link {} ({}): {}", id_, connector_id, wire::to_string(error));
    }
    server_.on_link_closed(*this, reason);
}

// ------------------------------------------------------------------------------ TransferServer
TransferServer::TransferServer(asio::io_context& io, const TransferConfig& config, TransferIdentity identity,
                               MessageWriter& writer, Reader& reader, OnlineUsers& online, Metrics& metrics)
    : io_(io),
      config_(config),
      identity_(std::move(identity)),
      writer_(writer),
      reader_(reader),
      online_(online),
      metrics_(metrics),
      acceptor_(io),
      sweep_timer_(io),
      verifier_(config.cluster.secret),
      alive_(std::make_shared<std::atomic<bool>>(true)),
      requests_(metrics.counter("im_transfer_requests_total", "Client requests received over links.")),
      pushes_(metrics.counter("im_transfer_pushes_total", "Push frames sent to connectors.")),
      links_gauge_(metrics.gauge("im_transfer_links", "Connected connector links.")),
      sessions_gauge_(metrics.gauge("im_transfer_sessions", "Live sessions in the directory.")),
      overloaded_(metrics.counter("im_transfer_overloaded_total", "Requests refused because a queue was full.")),
      bounced_(metrics.counter("im_transfer_bounced_total",
                               "Requests sent back to the connector because this transfer does not own their "
                               "shard (any more).",
                               {{"where", "io"}})),
      auth_refused_(metrics.counter("im_transfer_link_auth_refused_total",
                                    "Links closed because their Hello did not prove the cluster secret (or was "
                                    "not the first frame).")),
      tls_handshake_failures_(metrics.counter("im_transfer_link_tls_handshake_failures_total",
                                              "Link TLS handshakes that failed (no or a foreign certificate, an old "
                                              "protocol, plain TCP, a timeout).")),
      tls_reloads_ok_(metrics.counter("im_transfer_link_tls_reloads_total", "Link TLS reloads (SIGHUP).",
                                      {{"result", "ok"}})),
      tls_reloads_failed_(metrics.counter("im_transfer_link_tls_reloads_total", "Link TLS reloads (SIGHUP).",
                                          {{"result", "failed"}})),
      typing_dropped_(metrics.counter("im_transfer_typing_dropped_total",
                                      "Typing indicators dropped by policy.typing_per_second (per sender and peer).")) {
    if (config.cluster.tls.enabled) {
        link_tls_ = net::make_link_tls_context(
            {config.cluster.tls.ca_file, config.cluster.tls.cert_file, config.cluster.tls.key_file}, true);
    }
}

void TransferServer::reload_link_tls() {
    if (!config_.cluster.tls.enabled) return;
    try {
        link_tls_ = net::make_link_tls_context(
            {config_.cluster.tls.ca_file, config_.cluster.tls.cert_file, config_.cluster.tls.key_file}, true);
        tls_reloads_ok_.Increment();
        spdlog::info("link TLS: certificates reloaded; new links use them, {} open link(s) keep going", links_.size());
    } catch (const std::exception& e) {
        tls_reloads_failed_.Increment();
        spdlog::error("link TLS: reload failed, the previous certificates stay in use: {}", e.what());
    }
}

TransferServer::~TransferServer() { *alive_ = false; }

std::uint16_t TransferServer::start(tcp::acceptor listening) {
    if (!listening.is_open()) listening = listen_on(io_, config_.host, config_.port);
    acceptor_ = std::move(listening);
    accept();
    sweep();
    return acceptor_.local_endpoint().port();
}

void TransferServer::stop_accepting() {
    boost::system::error_code ec;
    acceptor_.close(ec);
    sweep_timer_.cancel();
}

void TransferServer::close_links() {
    auto links = links_;
    for (auto& [id, link] : links) link->close_after_flush(std::chrono::milliseconds(500));
}

void TransferServer::accept() {
    acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
        if (ec) {
            spdlog::warn("transfer: accept failed: {}", ec.message());
            accept();
            return;
        }
        net::ConnectionOptions opts{config_.link_max_frame_bytes, config_.link_max_write_queue_bytes};
        if (!link_tls_) {
            adopt(std::make_shared<ConnectorLink>(std::move(socket), opts, *this, next_link_id_++));
            accept();
            return;
        }
        // Mutual TLS: the handshake (bounded by link.idle_timeout) must show a certificate of the
        // cluster CA before the link exists; the Hello's proof follows inside the tunnel.
        auto ctx = link_tls_;  // this link keeps the context it started with across a reload
        auto stream = std::make_unique<net::FrameConnection::TlsStream>(std::move(socket), *ctx);
        auto* raw = stream.get();
        auto timer = std::make_shared<asio::steady_timer>(io_, config_.link_idle_timeout);
        timer->async_wait([raw_ptr = &raw->lowest_layer()](const boost::system::error_code& e) {
            if (!e) {
                boost::system::error_code ignored;
                raw_ptr->close(ignored);
            }
        });
        auto holder = std::make_shared<std::unique_ptr<net::FrameConnection::TlsStream>>(std::move(stream));
        raw->async_handshake(asio::ssl::stream_base::server,
                             [this, holder, timer, ctx, opts, alive = alive_](const boost::system::error_code& e) {
                                 timer->cancel();
                                 if (!*alive) return;
                                 if (e) {
                                     tls_handshake_failures_.Increment();
                                     spdlog::warn("link TLS handshake failed: {}", e.message());
                                     return;
                                 }
                                 adopt(std::make_shared<ConnectorLink>(std::move(*holder), opts, *this, next_link_id_++));
                             });
        accept();
    });
}

void TransferServer::adopt(std::shared_ptr<ConnectorLink> link) {
    links_.emplace(link->id(), link);
    links_gauge_.Set(static_cast<double>(links_.size()));
    spdlog::info("link {} from {} accepted", link->id(), link->peer());
    link->begin();
}

void TransferServer::sweep() {
    sweep_timer_.expires_after(std::chrono::seconds(1));
    sweep_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec) return;
        const auto now = net::steady_ms();
        for (auto& [id, link] : links_) {
            if (now - link->last_read_ms() > config_.link_idle_timeout.count()) {
                spdlog::warn("link {} ({}) silent for {} ms: closing", id, link->connector_id, now - link->last_read_ms());
                link->close();
            }
        }
        sessions_gauge_.Set(static_cast<double>(directory_.sessions()));
        sweep();
    });
}

void TransferServer::on_link_closed(ConnectorLink& link, net::CloseReason reason) {
    spdlog::info("link {} ({}) closed: {}", link.id(), link.connector_id, net::to_string(reason));
    apply_presence(directory_.remove_link(link.id()));
    if (link.hello_done) {
        std::lock_guard lock(linked_mu_);
        if (auto it = linked_.find(link.connector_id); it != linked_.end()) linked_.erase(it);
    }
    links_.erase(link.id());
    links_gauge_.Set(static_cast<double>(links_.size()));
}

void TransferServer::on_link_frame(ConnectorLink& link, std::string_view body) {
    internal::LinkEnvelope env;
    if (wire::parse_body(body, env) != wire::FrameError::none) {
        spdlog::warn("link {}: unparsable frame, closing", link.id());
        link.close();
        return;
    }
    if (!link.hello_done && env.body_case() != internal::LinkEnvelope::kHello) {
        auth_refused_.Increment();
        spdlog::warn("link {} from {}: first frame is not Hello, closing", link.id(), link.peer());
        link.close();
        return;
    }
    switch (env.body_case()) {
        case internal::LinkEnvelope::kHello:
            if (link.hello_done) {
                spdlog::warn("link {}: a second Hello, closing", link.id());
                link.close();
                return;
            }
            hello(link, env.hello());
            break;
        case internal::LinkEnvelope::kSessionSync: {
            std::vector<internal::SessionRef> sessions(env.session_sync().sessions().begin(),
                                                       env.session_sync().sessions().end());
            apply_presence(directory_.replace_link(link.id(), sessions));
            break;
        }
        case internal::LinkEnvelope::kSessionEvent: {
            const auto& ev = env.session_event();
            if (ev.online()) {
                apply_presence(directory_.add(link.id(), ev.session()));
            } else {
                apply_presence(directory_.remove(link.id(), ev.session()));
                writer_.forget_session(ev.session().user_id(), ev.session().login_epoch());
            }
            break;
        }
        case internal::LinkEnvelope::kClientRequest:
            handle_request(link, *env.mutable_client_request());
            break;
        case internal::LinkEnvelope::kValidateToken: {
            const auto request_id = env.request_id();
            const auto link_id = link.id();
            const bool queued = reader_.validate_token(
                env.validate_token().token_sha256(), [this, request_id, link_id, alive = alive_](internal::TokenResult r) {
                    asio::post(io_, [this, request_id, link_id, alive, r = std::move(r)]() mutable {
                        if (!*alive) return;
                        auto it = links_.find(link_id);
                        if (it == links_.end()) return;
                        internal::LinkEnvelope out;
                        out.set_request_id(request_id);
                        *out.mutable_token_result() = std::move(r);
                        it->second->send(out);
                    });
                });
            if (!queued) {
                internal::LinkEnvelope out;
                out.set_request_id(request_id);
                out.mutable_token_result()->set_valid(false);
                link.send(out);
            }
            break;
        }
        case internal::LinkEnvelope::kPing: {
            internal::LinkEnvelope pong;
            pong.mutable_pong()->set_time_ms(env.ping().time_ms());
            link.send(pong);
            break;
        }
        default:
            spdlog::debug("link {}: ignoring frame type {}", link.id(), static_cast<int>(env.body_case()));
            break;
    }
}

void TransferServer::handle_request(ConnectorLink& link, internal::ClientRequest& req) {
    requests_.Increment();
    auto& env = *req.mutable_request();
    const auto& session = req.session();
    const auto request_id = env.request_id();
    const auto link_id = link.id();
    auto reply_later = [this, link_id, session, request_id, alive = alive_](client::Envelope out) {
        asio::post(io_, [this, link_id, session, request_id, alive, out = std::move(out)]() mutable {
            if (*alive) respond(link_id, session, request_id, std::move(out));
        });
    };
    auto overloaded = [&](client::Envelope out) {
        overloaded_.Increment();
        respond(link_id, session, request_id, std::move(out));
    };
    // A full writer lane or reader pool: a retryable OVERLOADED error for this request.
    auto busy = [&](const char* message = "") {
        client::Envelope out;
        out.mutable_error()->set_code(client::OVERLOADED);
        out.mutable_error()->set_retryable(true);
        out.mutable_error()->set_message(message);
        overloaded(std::move(out));
    };
    // Writes only by the owner: a request for a shard this transfer does not own (it moved, or the
    // connector's map is stale) goes back to the connector, which routes it again.
    if ((env.body_case() == client::Envelope::kSend &&
         !owns(send_conversation(session.user_id(), env.send().peer_user_id(), env.send().group_id()))) ||
        (env.body_case() == client::Envelope::kReceipt && valid_any_conversation(env.receipt().conversation_id()) &&
         !owns(env.receipt().conversation_id())) ||
        (env.body_case() == client::Envelope::kGroupChange && valid_group_id(env.group_change().group_id()) &&
         !owns(env.group_change().group_id()))) {
        bounced_.Increment();
        bounce(link_id, std::move(req));
        return;
    }
    switch (env.body_case()) {
        case client::Envelope::kSend: {
            SendJob job{session, link_id, request_id, std::move(*env.mutable_send())};
            const std::string cmid = job.send.client_msg_id();
            if (!writer_.submit(std::move(job))) {
                client::Envelope out;
                auto* r = out.mutable_send_result();
                r->set_code(client::OVERLOADED);
                r->set_retryable(true);
                r->set_client_msg_id(cmid);
                r->set_message("transfer busy, retry");
                overloaded(std::move(out));
            }
            break;
        }
        case client::Envelope::kReceipt:
            if (!writer_.submit(ReceiptJob{session, link_id, env.receipt(), request_id})) {
                busy("transfer busy: receipt not stored, resend it");  // never dropped silently
            }
            break;
        case client::Envelope::kSyncConversations:
            if (!reader_.sync_conversations(session.user_id(), env.sync_conversations(), reply_later)) {
                busy();
            }
            break;
        case client::Envelope::kSyncMessages:
            if (!reader_.sync_messages(session.user_id(), env.sync_messages(), reply_later)) {
                busy();
            }
            break;
        case client::Envelope::kGroupChange: {
            // From im-rest's gateway (connectors never forward it): the session user is the actor.
            if (!writer_.submit(GroupChangeJob{session, link_id, request_id, std::move(*env.mutable_group_change())})) {
                client::Envelope out;
                out.mutable_group_change_result()->set_code(client::OVERLOADED);
                out.mutable_group_change_result()->set_message("transfer busy, retry");
                overloaded(std::move(out));
            }
            break;
        }
        case client::Envelope::kReadBy:
            if (!reader_.read_by(session.user_id(), env.read_by(), reply_later)) {
                busy();
            }
            break;
        case client::Envelope::kTyping:
            if (env.typing().group_id() != 0)
                group_typing(session, env.typing().group_id());
            else
                typing(link, session, env.typing().peer_user_id());
            break;
        default: {
            client::Envelope out;
            out.mutable_error()->set_code(client::UNKNOWN_BODY);
            out.mutable_error()->set_message("this request type is not handled by the transfer");
            respond(link_id, session, request_id, std::move(out));
            break;
        }
    }
}

// Typing indicators are ephemeral: at most typing_per_second per key (sender and peer or group);
// one over the limit is dropped and counted.
bool TransferServer::typing_allowed(std::uint64_t key) {
    const auto now = net::steady_ms();
    auto& last = typing_last_[key];
    if (now - last < 1000 / static_cast<std::int64_t>(config_.typing_per_second)) {
        typing_dropped_.Increment();
        return false;
    }
    last = now;
    if (typing_last_.size() > 100000) typing_last_.clear();
    return true;
}

void TransferServer::typing(ConnectorLink& link, const internal::SessionRef& session, std::uint64_t peer) {
    const auto conv = conversation_id(session.user_id(), peer);
    if (conv == 0 || config_.typing_per_second == 0) return;
    // Rate limit per (sender, peer): typing indicators are ephemeral, dropping one is fine.
    const auto key = conv * 2 + (session.user_id() == conversation_high(conv) ? 1 : 0);
    if (!typing_allowed(key)) return;
    if (!directory_.online(peer)) return;  // dropped for offline peers
    (void)link;
    const auto sender = session.user_id();
    reader_.pair_policy(sender, peer, [this, sender, peer, conv, alive = alive_](PairPolicy p) {
        if (p.blocked || (config_.require_friendship && !p.friends)) return;
        asio::post(io_, [this, sender, peer, conv, alive] {
            if (!*alive) return;
            client::Envelope env;
            env.mutable_typing_event()->set_conversation_id(conv);
            env.mutable_typing_event()->set_user_id(sender);
            push({peer}, nullptr, env.SerializeAsString());
        });
    });
}

// Typing in a group: rate limited per (sender, group) like one-to-one typing, then forwarded to the
// group's live members (read from MySQL on the reader pool: typing is rare after the limit) when
// the sender is one of them.
void TransferServer::group_typing(const internal::SessionRef& session, std::uint64_t group) {
    if (!valid_group_id(group) || config_.typing_per_second == 0) return;
    const auto key = ((group << 32) | session.user_id()) | (1ull << 63);  // apart from one-to-one keys
    if (!typing_allowed(key)) return;
    const auto sender = session.user_id();
    reader_.group_members(group, [this, sender, group, alive = alive_](std::vector<std::uint64_t> members) {
        if (std::find(members.begin(), members.end(), sender) == members.end()) return;  // members only
        asio::post(io_, [this, sender, group, alive, members = std::move(members)]() mutable {
            if (!*alive) return;
            std::erase(members, sender);
            std::erase_if(members, [this](std::uint64_t u) { return !directory_.online(u); });
            if (members.empty()) return;
            client::Envelope env;
            env.mutable_typing_event()->set_conversation_id(group);
            env.mutable_typing_event()->set_user_id(sender);
            push(members, nullptr, env.SerializeAsString());
        });
    });
}

void TransferServer::respond(std::uint64_t link_id, const internal::SessionRef& session, std::uint64_t request_id,
                             client::Envelope env) {
    auto it = links_.find(link_id);
    if (it == links_.end()) return;  // the connector is gone; the client will resend
    env.set_request_id(request_id);
    internal::LinkEnvelope out;
    auto* r = out.mutable_client_response();
    *r->mutable_session() = session;
    *r->mutable_response() = std::move(env);
    it->second->send(out);
}

void TransferServer::push(const std::vector<std::uint64_t>& users, const internal::SessionRef* except,
                          const std::string& frame) {
    // One Push per link, listing that link's users.
    std::unordered_map<std::uint64_t, std::vector<std::uint64_t>> by_link;
    for (auto user : users) {
        directory_.for_each_link(user, [&](std::uint64_t link) { by_link[link].push_back(user); });
    }
    for (auto& [link_id, link_users] : by_link) {
        auto it = links_.find(link_id);
        if (it == links_.end()) continue;
        internal::LinkEnvelope out;
        auto* p = out.mutable_push();
        for (auto u : link_users) p->add_user_ids(u);
        if (except != nullptr) *p->mutable_except() = *except;
        p->set_frame(frame);
        it->second->send(out);
        pushes_.Increment();
    }
}

void TransferServer::post_result(BatchResult result) {
    asio::post(io_, [this, alive = alive_, result = std::move(result)]() mutable {
        if (*alive) deliver_result(result);
    });
}

void TransferServer::deliver_result(BatchResult& result) {
    for (auto& job : result.bounced_sends) {
        internal::ClientRequest req;
        *req.mutable_session() = job.session;
        req.mutable_request()->set_request_id(job.request_id);
        *req.mutable_request()->mutable_send() = std::move(job.send);
        bounce(job.link_id, std::move(req));
    }
    for (auto& job : result.bounced_receipts) {
        internal::ClientRequest req;
        *req.mutable_session() = job.session;
        req.mutable_request()->set_request_id(job.request_id);  // a refusal there can answer it
        *req.mutable_request()->mutable_receipt() = std::move(job.receipt);
        bounce(job.link_id, std::move(req));
    }
    deliver_changes(result);
    for (auto& s : result.sends) {
        if (s.deliver) {
            // Every live session of the recipient (of every member of a group) and the sender's
            // other sessions.
            if (s.audience)
                push(*s.audience, &s.session, *s.deliver);
            else
                push({s.peer, s.session.user_id()}, &s.session, *s.deliver);
        }
        client::Envelope env;
        *env.mutable_send_result() = std::move(s.result);
        respond(s.link_id, s.session, s.request_id, std::move(env));
    }
    for (const auto& r : result.receipts) {
        client::Envelope env;
        auto* e = env.mutable_receipt_event();
        e->set_conversation_id(r.conversation_id);
        e->set_user_id(r.session.user_id());
        e->set_kind(r.kind);
        e->set_up_to_seq(r.up_to_seq);
        if (r.peer == 0) {  // a group member's watermark: their sessions and the senders it passed
            auto users = r.notify;
            users.push_back(r.session.user_id());
            push(users, &r.session, env.SerializeAsString());
        } else if (r.to_peer) {
            push({r.peer, r.session.user_id()}, &r.session, env.SerializeAsString());
        } else {
            push({r.session.user_id()}, &r.session, env.SerializeAsString());
        }
    }
}

void TransferServer::deliver_changes(BatchResult& result) {
    for (auto& c : result.changes) {
        if (c.deliver) push(c.audience, nullptr, *c.deliver);
        client::Envelope env;
        *env.mutable_group_change_result() = std::move(c.result);
        respond(c.link_id, c.session, c.request_id, std::move(env));
    }
}

void TransferServer::apply_presence(const std::vector<PresenceChange>& changes) {
    for (const auto& c : changes) {
        if (c.online) online_.add(c.user);
        else online_.remove(c.user);
        // Presence is computed where friendships are known: fetch the friends, push to the live ones.
        const auto user = c.user;
        const bool online = c.online;
        // Every transfer sees every session; one of them reports it: the owner of the user's
        // presence shard (friends would get it once per transfer otherwise).
        if (owned_[presence_shard_of(user)] == 0) continue;
        reader_.friends_of(user, [this, user, online, alive = alive_](std::vector<std::uint64_t> friends) {
            asio::post(io_, [this, user, online, alive, friends = std::move(friends)] {
                if (!*alive || friends.empty()) return;
                if (directory_.online(user) != online) return;  // flapped meanwhile: the later change reports
                client::Envelope env;
                auto* p = env.mutable_presence();
                p->set_user_id(user);
                p->set_online(online);
                p->set_changed_ms(wall_ms());
                push(friends, nullptr, env.SerializeAsString());
            });
        });
    }
}

}  // namespace im::transfer

namespace im::transfer {

void TransferServer::hello(ConnectorLink& link, const internal::Hello& h) {
    const auto verdict = verifier_.verify(h.connector_id(), h.connector_epoch(), h.auth_time_ms(), h.auth_nonce(),
                                          h.auth_mac(), wall_ms());
    if (verdict != link_auth::HelloVerifier::Result::ok) {
        auth_refused_.Increment();
        spdlog::warn("link {} from {} (claims connector '{}'): refused: {}", link.id(), link.peer(),
                     h.connector_id().substr(0, 128), link_auth::to_string(verdict));
        link.close();
        return;
    }
    link.connector_id = h.connector_id();
    link.connector_epoch = h.connector_epoch();
    link.hello_done = true;
    {
        std::lock_guard lock(linked_mu_);
        linked_.insert(link.connector_id);
    }
    internal::LinkEnvelope ack;
    auto* a = ack.mutable_hello_ack();
    a->set_transfer_id(identity_.id);
    a->set_transfer_epoch(identity_.epoch);
    a->set_shard_count(kShardCount);
    fill_owned(*a->mutable_owned());
    a->set_auth_mac(link_auth::ack_mac(verifier_.secret(), identity_.id, identity_.epoch, h.auth_nonce()));
    link.send(ack);
    spdlog::info("link {}: connector {} (epoch {}) at {}", link.id(), link.connector_id, link.connector_epoch,
                 h.advertised_address());
}

void TransferServer::fill_owned(google::protobuf::RepeatedPtrField<internal::ShardRange>& out) const {
    out.Clear();
    for (std::uint32_t s = 0; s < kShardCount;) {
        if (owned_[s] == 0) {
            ++s;
            continue;
        }
        std::uint32_t e = s;
        while (e + 1 < kShardCount && owned_[e + 1] == owned_[s]) ++e;
        auto* r = out.Add();
        r->set_first(s);
        r->set_last(e);
        r->set_epoch(identity_.epoch);
        r->set_gen(owned_[s]);
        s = e + 1;
    }
}

bool TransferServer::owns(std::uint64_t conversation) const {
    // An invalid conversation is answered BAD_REQUEST by whoever gets it.
    return !valid_any_conversation(conversation) || owned_[shard_of(conversation)] != 0;
}

void TransferServer::set_owned(OwnedShards owned) {
    owned_ = std::move(owned);
    internal::LinkEnvelope update;
    fill_owned(*update.mutable_ownership()->mutable_owned());
    for (auto& [id, link] : links_) {
        if (link->hello_done) link->send(update);
    }
}

std::set<std::string> TransferServer::linked_connectors() const {
    std::lock_guard lock(linked_mu_);
    return std::set<std::string>(linked_.begin(), linked_.end());
}

void TransferServer::bounce(std::uint64_t link_id, internal::ClientRequest request) {
    auto it = links_.find(link_id);
    if (it == links_.end()) return;  // the connector is gone; its client resends after reconnecting
    std::uint32_t shard = 0;
    const auto& env = request.request();
    if (env.has_send())
        shard = shard_of(send_conversation(request.session().user_id(), env.send().peer_user_id(), env.send().group_id()));
    if (env.has_group_change()) shard = shard_of(env.group_change().group_id());
    if (env.has_receipt()) shard = shard_of(env.receipt().conversation_id());
    internal::LinkEnvelope out;
    auto* b = out.mutable_bounce();
    b->set_shard(shard);
    *b->mutable_request() = std::move(request);
    it->second->send(out);
}

}  // namespace im::transfer
