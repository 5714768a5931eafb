#pragma once
// The I/O side of im-transfer: accepts connector links, keeps the session directory, hands sends
// and receipts to the writer and reads to the reader pool, and turns results into responses and
// pushes for the right links. Everything here runs on the one I/O thread.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "im/net/frame_connection.hpp"
#include "im/server/link_auth.hpp"
#include "im/wire/ids.hpp"
#include "im/server/metrics.hpp"
#include "im/proto/client.pb.h"
#include "im/proto/internal.pb.h"
#include "message_writer.hpp"
#include "ownership_manager.hpp"
#include "reader.hpp"
#include "session_directory.hpp"

namespace im {
class Metrics;
}

namespace im::transfer {

struct TransferConfig;
class TransferServer;

class ConnectorLink : public net::FrameConnection {
public:
    ConnectorLink(tcp::socket socket, const net::ConnectionOptions& options, TransferServer& server, std::uint64_t id);
    ConnectorLink(std::unique_ptr<TlsStream> tls, const net::ConnectionOptions& options, TransferServer& server,
                  std::uint64_t id);
    void begin() { start(); }
    std::uint64_t id() const { return id_; }

    std::string connector_id;  // from Hello
    std::uint64_t connector_epoch = 0;
    bool hello_done = false;

protected:
    void on_frame(std::string_view body) override;
    void on_closed(net::CloseReason reason, wire::FrameError error) override;

private:
    TransferServer& server_;
    std::uint64_t id_;
};

struct TransferIdentity {
    std::string id;
    std::uint64_t epoch = 0;  // incarnation (also the shard_owner epoch)
};

class TransferServer {
public:
    TransferServer(boost::asio::io_context& io, const TransferConfig& config, TransferIdentity identity,
                   MessageWriter& writer, Reader& reader, OnlineUsers& online, Metrics& metrics);
    ~TransferServer();

    // Accepts on `listening` (bound and listening; closed: binds host:port itself); returns the port.
    std::uint16_t start(boost::asio::ip::tcp::acceptor listening);
    void stop_accepting();
    void close_links();
    // Called by the writer thread: hands the result to the I/O thread.
    void post_result(BatchResult result);

    std::size_t link_count() const { return links_.size(); }
    // Exactly these shards are accepted from now on (gen per shard, 0: not ours); every linked
    // connector is told. I/O thread.
    void set_owned(OwnedShards owned);
    // Connector ids with an authenticated link here (any thread).
    std::set<std::string> linked_connectors() const;
    // SIGHUP: read the link TLS files again; new links use them, open links keep going. A file
    // that does not load leaves the previous context in use (logged, counted).
    void reload_link_tls();
    std::size_t session_count() const { return directory_.sessions(); }

    // From ConnectorLink.
    void on_link_frame(ConnectorLink& link, std::string_view body);
    void on_link_closed(ConnectorLink& link, net::CloseReason reason);

private:
    void accept();
    void adopt(std::shared_ptr<ConnectorLink> link);
    void sweep();
    void handle_request(ConnectorLink& link, internal::ClientRequest& req);
    void respond(std::uint64_t link_id, const internal::SessionRef& session, std::uint64_t request_id,
                 client::Envelope env);
    void push(const std::vector<std::uint64_t>& users, const internal::SessionRef* except, const std::string& frame);
    void apply_presence(const std::vector<PresenceChange>& changes);
    void deliver_result(BatchResult& result);
    void deliver_changes(BatchResult& result);
    void group_typing(const internal::SessionRef& session, std::uint64_t group);
    bool typing_allowed(std::uint64_t key);
    void typing(ConnectorLink& link, const internal::SessionRef& session, std::uint64_t peer);
    void hello(ConnectorLink& link, const internal::Hello& h);
    void fill_owned(google::protobuf::RepeatedPtrField<internal::ShardRange>& out) const;
    bool owns(std::uint64_t conversation) const;
    void bounce(std::uint64_t link_id, internal::ClientRequest request);

    boost::asio::io_context& io_;
    const TransferConfig& config_;
    TransferIdentity identity_;
    MessageWriter& writer_;
    Reader& reader_;
    OnlineUsers& online_;
    Metrics& metrics_;
    boost::asio::ip::tcp::acceptor acceptor_;
    boost::asio::steady_timer sweep_timer_;
    std::unordered_map<std::uint64_t, std::shared_ptr<ConnectorLink>> links_;
    std::uint64_t next_link_id_ = 1;
    SessionDirectory directory_;
    OwnedShards owned_ = OwnedShards(kShardCount, 0);
    link_auth::HelloVerifier verifier_;
    std::shared_ptr<boost::asio::ssl::context> link_tls_;  // null: plain TCP links
    mutable std::mutex linked_mu_;
    std::multiset<std::string> linked_;  // connector ids of authenticated links
    std::unordered_map<std::uint64_t, std::int64_t> typing_last_;  // (sender,peer) conversation*2+dir -> ms
    std::shared_ptr<std::atomic<bool>> alive_;  // results posted after destruction are dropped

    prometheus::Counter& requests_;
    prometheus::Counter& pushes_;
    prometheus::Gauge& links_gauge_;
    prometheus::Gauge& sessions_gauge_;
    prometheus::Counter& overloaded_;
    prometheus::Counter& bounced_;
    prometheus::Counter& auth_refused_;
    prometheus::Counter& tls_handshake_failures_;
    prometheus::Counter& tls_reloads_ok_;
    prometheus::Counter& tls_reloads_failed_;
    prometheus::Counter& typing_dropped_;  // policy.typing_per_second
};

}  // namespace im::transfer
