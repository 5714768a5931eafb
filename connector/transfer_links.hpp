#pragma once
// The connector's persistent links to every live transfer (found in Redis, never configured):
// connect with a timeout, Hello/HelloAck (the transfer's shard ranges), SessionSync, pings, and a
// jittered exponential backoff after any failure. Routes a conversation to the link owning its
// shard. I/O thread only.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "im/net/frame_connection.hpp"
#include "im/proto/internal.pb.h"
#include "im/server/metrics.hpp"

namespace im::connector {

struct ConnectorConfig;
class TransferLinks;

class TransferLink : public net::FrameConnection {
public:
    TransferLink(tcp::socket socket, const net::ConnectionOptions& options, TransferLinks& owner, std::string transfer_id,
                 std::uint64_t id);
    TransferLink(std::unique_ptr<TlsStream> tls, const net::ConnectionOptions& options, TransferLinks& owner,
                 std::string transfer_id, std::uint64_t id);
    void begin();
    std::uint64_t id() const { return id_; }
    const std::string& transfer_id() const { return transfer_id_; }
    bool ready = false;  // HelloAck received and SessionSync sent
    std::string hello_nonce;  // the Hello's proof nonce, which the HelloAck's MAC must cover

protected:
    void on_frame(std::string_view body) override;
    void on_closed(net::CloseReason reason, wire::FrameError error) override;

private:
    TransferLinks& owner_;
    std::string transfer_id_;
    std::uint64_t id_;
};

struct TransferEndpoint {
    std::string id;
    std::uint64_t epoch = 0;
    std::string address;  // host:port
};

class TransferLinks {
public:
    struct Callbacks {
        // A link became ready: send it the SessionSync (returns the sessions to announce).
        std::function<std::vector<internal::SessionRef>()> sessions;
        // Every frame from a transfer other than HelloAck/LinkPong.
        std::function<void(TransferLink&, internal::LinkEnvelope&)> on_frame;
        // A link that was ready went down.
        std::function<void(std::uint64_t link_id, const std::string& transfer_id)> on_down;
        // A link became ready (after SessionSync).
        std::function<void(std::uint64_t link_id, const std::string& transfer_id)> on_up;
        // The shard map changed (an announcement, a link up or down): held requests may go now.
        std::function<void()> on_map_change;
    };

    // Who owns a shard, as last announced: the link and the shard_owner gen of its claim. A slot
    // only moves to an announcement with a gen at least as high, so a stale announcement of a
    // transfer that has not noticed its loss yet never wins over the new owner's.
    struct ShardSlot {
        TransferLink* link = nullptr;
        std::uint64_t gen = 0;
    };

    TransferLinks(boost::asio::io_context& io, const ConnectorConfig& config, std::string connector_id,
                  std::uint64_t connector_epoch, Callbacks callbacks, Metrics& metrics);

    // The live transfers as registered in Redis: connect to new ones; drop those gone for good.
    void update(const std::vector<TransferEndpoint>& transfers);
    // SIGHUP: read the link TLS files again (links already up keep theirs; a bad file keeps the old).
    void reload_tls();
    void start();
    void stop();

    // The ready link owning the conversation's shard, or null.
    TransferLink* route(std::uint64_t conversation_id);
    const ShardSlot& slot(std::uint32_t shard) const { return map_[shard]; }
    // Shards per transfer id as currently routed (for logs, metrics and status).
    std::size_t routed_shards() const;
    TransferLink* any();
    TransferLink* by_id(std::uint64_t link_id);
    std::size_t ready_count() const;
    // Sends to every ready link (session events).
    void broadcast(const internal::LinkEnvelope& env);

    // From TransferLink.
    void on_link_frame(TransferLink& link, std::string_view body);
    void on_link_closed(TransferLink& link);

private:
    struct Peer {
        TransferEndpoint endpoint;
        std::shared_ptr<TransferLink> link;
        bool connecting = false;
        bool gone = false;  // no longer in Redis: do not reconnect
        std::chrono::milliseconds backoff{0};
        std::unique_ptr<boost::asio::steady_timer> timer;
    };
    void connect(Peer& peer);
    void connected(Peer& peer, std::unique_ptr<net::FrameConnection::TlsStream> tls,
                   boost::asio::ip::tcp::socket* plain);
    void apply_owned(TransferLink& link, const google::protobuf::RepeatedPtrField<internal::ShardRange>& owned);
    void drop_from_map(TransferLink& link);
    void schedule_reconnect(Peer& peer);
    void tick();

    boost::asio::io_context& io_;
    const ConnectorConfig& config_;
    std::string connector_id_;
    std::uint64_t connector_epoch_;
    Callbacks callbacks_;
    std::map<std::string, Peer> peers_;
    std::uint64_t next_link_id_ = 1;
    boost::asio::steady_timer tick_timer_;
    std::mt19937 rng_{std::random_device{}()};
    bool stopped_ = false;
    std::vector<ShardSlot> map_;
    std::shared_ptr<boost::asio::ssl::context> tls_;  // null: plain TCP links
    prometheus::Counter& auth_failures_;
    prometheus::Counter& tls_failures_;
    prometheus::Gauge& routed_gauge_;
};

}  // namespace im::connector
