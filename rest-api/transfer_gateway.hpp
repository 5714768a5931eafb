#pragma once
// How im-rest changes state that only a conversation's owner transfer may write (read
// watermarks): it opens a short link to the owner, like a connector would (Hello with the cluster
// secret's proof, HelloAck with the owned shard ranges and the transfer's proof), hands over the
// request, and waits for a Pong behind it, which means the transfer has queued it. A Bounce
// instead (the shard moved meanwhile) makes it try the other transfers; an Error answer means the
// owner refused it (a full writer lane). Synchronous with
// timeouts: pool threads only.

#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "im/proto/client.pb.h"

namespace im::rest {

struct TransferAddress {
    std::string id;
    std::string address;  // host:port
};

class TransferGateway {
public:
    TransferGateway(std::chrono::milliseconds timeout, std::string cluster_secret)
        : timeout_(timeout), secret_(std::move(cluster_secret)) {}

    // Sends a client request on behalf of `user` to the transfer (among `transfers`) that owns
    // `conversation_id`. False when none could be reached, none owns it or the owner refused the
    // request (answer 503).
    bool forward(const std::vector<TransferAddress>& transfers, std::uint64_t user, std::uint64_t conversation_id,
                 const client::Envelope& request, std::string& detail) const;

    // Mutual TLS to the transfers (cluster.tls): the client context, replaced on SIGHUP (null:
    // plain TCP). Thread-safe.
    void set_tls(std::shared_ptr<boost::asio::ssl::context> ctx);

private:
    std::shared_ptr<boost::asio::ssl::context> tls_context() const;
    std::chrono::milliseconds timeout_;
    std::string secret_;
    mutable std::mutex mu_;
    std::shared_ptr<boost::asio::ssl::context> tls_;
};

}  // namespace im::rest
