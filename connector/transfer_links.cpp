#include "transfer_links.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ssl.hpp>
#include <spdlog/spdlog.h>

#include "connector_config.hpp"
#include "im/net/link_tls.hpp"
#include "im/server/clock.hpp"
#include "im/server/link_auth.hpp"
#include "im/wire/ids.hpp"

namespace im::connector {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// --------------------------------------------------------------------------------- TransferLink
TransferLink::TransferLink(tcp::socket socket, const net::ConnectionOptions& options, TransferLinks& owner,
                           std::string transfer_id, std::uint64_t id)
    : FrameConnection(std::move(socket), options), owner_(owner), transfer_id_(std::move(transfer_id)), id_(id) {}

TransferLink::TransferLink(std::unique_ptr<TlsStream> tls, const net::ConnectionOptions& options, TransferLinks& owner,
                           std::string transfer_id, std::uint64_t id)
    : FrameConnection(std::move(tls), options), owner_(owner), transfer_id_(std::move(transfer_id)), id_(id) {}

void TransferLink::begin() { start(); }

void TransferLink::on_frame(std::string_view body) { owner_.on_link_frame(*this, body); }

void TransferLink::on_closed(net::CloseReason reason, wire::FrameError error) {
    spdlog::warn("link {} to transfer {} closed: {}{}", id_, transfer_id_, net::to_string(reason),
                 error == wire::FrameError::none ? "" : std::string(" (") + wire::to_string(error) + ")");
    owner_.on_link_closed(*this);
}

// -------------------------------------------------------------------------------- TransferLinks
TransferLinks::TransferLinks(asio::io_context& io, const ConnectorConfig& config, std::string connector_id,
                             std::uint64_t connector_epoch, Callbacks callbacks, Metrics& metrics)
    : io_(io),
      config_(config),
      connector_id_(std::move(connector_id)),
      connector_epoch_(connector_epoch),
      callbacks_(std::move(callbacks)),
      tick_timer_(io),
      map_(kShardCount),
      auth_failures_(metrics.counter("im_connector_link_auth_failures_total",
                                     "Transfer links closed because the HelloAck did not prove the cluster secret.")),
      tls_failures_(metrics.counter("im_connector_link_tls_failures_total",
                                    "Link TLS handshakes to transfers that failed (certificate, protocol, timeout).")),
      routed_gauge_(metrics.gauge("im_connector_routed_shards",
                                  "Shards with a known owner on a ready link (of all shard_count).")) {
    if (config.cluster.tls.enabled) {
        tls_ = net::make_link_tls_context(
            {config.cluster.tls.ca_file, config.cluster.tls.cert_file, config.cluster.tls.key_file}, false);
    }
}

void TransferLinks::reload_tls() {
    if (!config_.cluster.tls.enabled) return;
    try {
        tls_ = net::make_link_tls_context(
            {config_.cluster.tls.ca_file, config_.cluster.tls.cert_file, config_.cluster.tls.key_file}, false);
        spdlog::info("link TLS: certificates reloaded; new links use them");
    } catch (const std::exception& e) {
        spdlog::error("link TLS: reload failed, the previous certificates stay in use: {}", e.what());
    }
}

void TransferLinks::start() { tick(); }

void TransferLinks::stop() {
    stopped_ = true;
    tick_timer_.cancel();
    for (auto& [id, peer] : peers_) {
        if (peer.timer) peer.timer->cancel();
        if (peer.link) peer.link->close();
    }
}

void TransferLinks::update(const std::vector<TransferEndpoint>& transfers) {
    if (stopped_) return;
    for (auto& [id, peer] : peers_) peer.gone = true;
    for (const auto& t : transfers) {
        auto& peer = peers_[t.id];
        peer.gone = false;
        const bool moved = peer.endpoint.address != t.address || peer.endpoint.epoch != t.epoch;
        peer.endpoint = t;
        if (moved && peer.link && !peer.link->ready) peer.link->close();  // a restarted transfer: dial the new one
        if (!peer.link && !peer.connecting && !(peer.timer && peer.backoff.count() > 0)) connect(peer);
    }
    for (auto it = peers_.begin(); it != peers_.end();) {
        if (it->second.gone && !it->second.link && !it->second.connecting) {
            spdlog::info("transfer {} left the registry", it->first);
            if (it->second.timer) it->second.timer->cancel();
            it = peers_.erase(it);
        } else {
            ++it;
        }
    }
}

void TransferLinks::connect(Peer& peer) {
    const auto colon = peer.endpoint.address.rfind(':');
    if (colon == std::string::npos) {
        spdlog::warn("transfer {}: bad address '{}'", peer.endpoint.id, peer.endpoint.address);
        return;
    }
    boost::system::error_code ec;
    const auto addr = asio::ip::make_address(peer.endpoint.address.substr(0, colon), ec);
    if (ec) {
        spdlog::warn("transfer {}: bad address '{}'", peer.endpoint.id, peer.endpoint.address);
        return;
    }
    const auto port = static_cast<std::uint16_t>(std::stoi(peer.endpoint.address.substr(colon + 1)));
    peer.connecting = true;
    auto socket = std::make_shared<tcp::socket>(io_);
    auto deadline = std::make_shared<asio::steady_timer>(io_, config_.link_timeout);
    const std::string id = peer.endpoint.id;
    deadline->async_wait([socket](const boost::system::error_code& e) {
        if (!e) {
            boost::system::error_code ignored;
            socket->close(ignored);  // connect timeout
        }
    });
    socket->async_connect(tcp::endpoint(addr, port), [this, socket, deadline, id](const boost::system::error_code& e) {
        auto it = peers_.find(id);
        if (it == peers_.end() || stopped_) {
            deadline->cancel();
            return;
        }
        auto& p = it->second;
        if (e) {
            deadline->cancel();
            p.connecting = false;
            spdlog::warn("transfer {} at {}: connect failed: {}", id, p.endpoint.address, e.message());
            schedule_reconnect(p);
            return;
        }
        if (!tls_) {
            deadline->cancel();
            connected(p, nullptr, socket.get());
            return;
        }
        // Mutual TLS, bounded by links.timeout: the transfer must show a certificate of
        // the cluster CA (and sees ours) before the Hello goes out.
        auto ctx = tls_;
        auto stream = std::make_shared<std::unique_ptr<net::FrameConnection::TlsStream>>(
            std::make_unique<net::FrameConnection::TlsStream>(std::move(*socket), *ctx));
        auto* raw = stream->get();
        // The deadline closes the socket it was armed for, now inside the stream.
        deadline->cancel();
        auto tls_deadline = std::make_shared<asio::steady_timer>(io_, config_.link_timeout);
        tls_deadline->async_wait([raw](const boost::system::error_code& t) {
            if (!t) {
                boost::system::error_code ignored;
                raw->lowest_layer().close(ignored);
            }
        });
        raw->async_handshake(asio::ssl::stream_base::client,
                             [this, stream, ctx, tls_deadline, id](const boost::system::error_code& h) {
                                 tls_deadline->cancel();
                                 auto pit = peers_.find(id);
                                 if (pit == peers_.end() || stopped_) return;
                                 if (h) {
                                     pit->second.connecting = false;
                                     tls_failures_.Increment();
                                     spdlog::warn("transfer {} at {}: TLS handshake failed: {}", id,
                                                  pit->second.endpoint.address, h.message());
                                     schedule_reconnect(pit->second);
                                     return;
                                 }
                                 connected(pit->second, std::move(*stream), nullptr);
                             });
    });
}

void TransferLinks::connected(Peer& p, std::unique_ptr<net::FrameConnection::TlsStream> tls, tcp::socket* plain) {
    p.connecting = false;
    net::ConnectionOptions opts{config_.link_max_frame_bytes, config_.link_max_write_queue_bytes};
    if (tls)
        p.link = std::make_shared<TransferLink>(std::move(tls), opts, *this, p.endpoint.id, next_link_id_++);
    else
        p.link = std::make_shared<TransferLink>(std::move(*plain), opts, *this, p.endpoint.id, next_link_id_++);
    internal::LinkEnvelope hello;
    auto* h = hello.mutable_hello();
    h->set_connector_id(connector_id_);
    h->set_connector_epoch(connector_epoch_);
    h->set_advertised_address(config_.advertised_address);
    const auto proof = link_auth::prove_hello(config_.cluster.secret, connector_id_, connector_epoch_, wall_ms());
    h->set_auth_nonce(proof.nonce);
    h->set_auth_time_ms(proof.time_ms);
    h->set_auth_mac(proof.mac);
    p.link->hello_nonce = proof.nonce;
    p.link->send(hello);
    p.link->begin();
}

void TransferLinks::schedule_reconnect(Peer& peer) {
    if (stopped_ || peer.gone) return;
    const auto min = config_.reconnect_min;
    peer.backoff = peer.backoff.count() == 0 ? min : std::min(peer.backoff * 2, config_.reconnect_max);
    // Full jitter: connectors that lost the same transfer do not all come back at once.
    std::uniform_int_distribution<std::int64_t> jitter(peer.backoff.count() / 2, peer.backoff.count());
    const auto delay = std::chrono::milliseconds(jitter(rng_));
    if (!peer.timer) peer.timer = std::make_unique<asio::steady_timer>(io_);
    peer.timer->expires_after(delay);
    const std::string id = peer.endpoint.id;
    peer.timer->async_wait([this, id](const boost::system::error_code& e) {
        if (e || stopped_) return;
        auto it = peers_.find(id);
        if (it != peers_.end() && !it->second.link && !it->second.connecting && !it->second.gone) connect(it->second);
    });
}

void TransferLinks::on_link_frame(TransferLink& link, std::string_view body) {
    internal::LinkEnvelope env;
    if (wire::parse_body(body, env) != wire::FrameError::none) {
        spdlog::warn("link {}: unparsable frame from transfer {}", link.id(), link.transfer_id());
        link.close();
        return;
    }
    switch (env.body_case()) {
        case internal::LinkEnvelope::kHelloAck: {
            const auto& ack = env.hello_ack();
            if (link.ready || ack.transfer_id() != link.transfer_id() ||
                !link_auth::verify_ack(config_.cluster.secret, ack.transfer_id(), ack.transfer_epoch(), link.hello_nonce,
                                       ack.auth_mac())) {
                auth_failures_.Increment();
                spdlog::error("link {} to transfer {}: the HelloAck does not prove the cluster secret (or names "
                              "another transfer): closing; check cluster.secret on both",
                              link.id(), link.transfer_id());
                link.close();
                return;
            }
            internal::LinkEnvelope sync;
            auto* s = sync.mutable_session_sync();
            for (auto& ref : callbacks_.sessions()) *s->add_sessions() = std::move(ref);
            link.send(sync);
            link.ready = true;  // after SessionSync: no request of a session can precede it
            auto it = peers_.find(link.transfer_id());
            if (it != peers_.end()) it->second.backoff = std::chrono::milliseconds(0);
            spdlog::info("link {} to transfer {} ready ({} sessions announced)", link.id(), link.transfer_id(),
                         s->sessions_size());
            callbacks_.on_up(link.id(), link.transfer_id());
            apply_owned(link, ack.owned());
            break;
        }
        case internal::LinkEnvelope::kOwnership:
            if (link.ready) apply_owned(link, env.ownership().owned());
            break;
        case internal::LinkEnvelope::kPong:
            break;
        default:
            if (link.ready) callbacks_.on_frame(link, env);
            break;
    }
}

void TransferLinks::on_link_closed(TransferLink& link) {
    const bool was_ready = link.ready;
    link.ready = false;
    drop_from_map(link);
    auto it = peers_.find(link.transfer_id());
    if (it != peers_.end() && it->second.link.get() == &link) {
        auto keep = it->second.link;  // the callbacks below may look the link up
        it->second.link.reset();
        if (was_ready) callbacks_.on_down(link.id(), link.transfer_id());
        schedule_reconnect(it->second);
    } else if (was_ready) {
        callbacks_.on_down(link.id(), link.transfer_id());
    }
}

void TransferLinks::tick() {
    tick_timer_.expires_after(config_.link_ping_interval);
    tick_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec || stopped_) return;
        const auto now = net::steady_ms();
        internal::LinkEnvelope ping;
        ping.mutable_ping()->set_time_ms(now);
        for (auto& [id, peer] : peers_) {
            if (!peer.link) continue;
            if (now - peer.link->last_read_ms() > config_.link_timeout.count()) {
                spdlog::warn("link {} to transfer {}: silent for {} ms, reconnecting", peer.link->id(), id,
                             now - peer.link->last_read_ms());
                peer.link->close();
                continue;
            }
            peer.link->send(ping);
        }
        tick();
    });
}

TransferLink* TransferLinks::route(std::uint64_t conversation_id) {
    auto* link = map_[shard_of(conversation_id)].link;
    return link != nullptr && link->ready ? link : nullptr;
}

void TransferLinks::apply_owned(TransferLink& link,
                                const google::protobuf::RepeatedPtrField<internal::ShardRange>& owned) {
    // The announcement replaces what this link said before.
    for (auto& slot : map_) {
        if (slot.link == &link) slot.link = nullptr;
    }
    for (const auto& r : owned) {
        if (r.first() > r.last() || r.last() >= kShardCount) continue;
        for (auto s = r.first(); s <= r.last(); ++s) {
            auto& slot = map_[s];
            if (r.gen() >= slot.gen) slot = ShardSlot{&link, r.gen()};
        }
    }
    routed_gauge_.Set(static_cast<double>(routed_shards()));
    if (callbacks_.on_map_change) callbacks_.on_map_change();
}

void TransferLinks::drop_from_map(TransferLink& link) {
    for (auto& slot : map_) {
        if (slot.link == &link) slot.link = nullptr;  // the gen stays: only a newer claim may take it
    }
    routed_gauge_.Set(static_cast<double>(routed_shards()));
}

std::size_t TransferLinks::routed_shards() const {
    std::size_t n = 0;
    for (const auto& slot : map_) n += slot.link != nullptr && slot.link->ready ? 1 : 0;
    return n;
}

TransferLink* TransferLinks::any() {
    for (auto& [id, peer] : peers_) {
        if (peer.link && peer.link->ready) return peer.link.get();
    }
    return nullptr;
}

TransferLink* TransferLinks::by_id(std::uint64_t link_id) {
    for (auto& [id, peer] : peers_) {
        if (peer.link && peer.link->id() == link_id) return peer.link.get();
    }
    return nullptr;
}

std::size_t TransferLinks::ready_count() const {
    std::size_t n = 0;
    for (const auto& [id, peer] : peers_) if (peer.link && peer.link->ready) ++n;
    return n;
}

void TransferLinks::broadcast(const internal::LinkEnvelope& env) {
    for (auto& [id, peer] : peers_) {
        if (peer.link && peer.link->ready) peer.link->send(env);
    }
}

}  // namespace im::connector
