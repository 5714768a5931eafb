#pragma once
// How im-rest changes state that only a conversation's owner transfer may write (read
// watermarks, group changes): it opens a short link to the owner, like a connector would (Hello
// with the cluster secret's proof, HelloAck with the owned shard ranges and the transfer's proof),
// hands over the request, and then either
// - forward(): waits for a Pong behind it, which means the transfer has queued it (an Error answer
//   instead means the owner refused it: a full writer lane), or
// - call(): waits for the ClientResponse that answers it (same request_id), e.g. a
//   GroupChangeResult once the change is committed.
// A Bounce (the shard moved meanwhile) makes either try the other transfers. Synchronous, every
// exchange with one transfer bounded by the gateway timeout: pool threads only.

#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "im/proto/client.pb.h"

namespace im::internal {
class LinkEnvelope;
}

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

    // Sends a client request (request_id must be non-zero) on behalf of `user` to the owner of
    // `conversation_id` and waits for its answer: the Envelope of the ClientResponse with the same
    // request_id (pushes and other frames before it are skipped). nullopt when none could be
    // reached, none owns it or no answer came within the timeout (`detail` says which); the
    // request may still have been applied then (answer 503: the caller cannot know).
    std::optional<client::Envelope> call(const std::vector<TransferAddress>& transfers, std::uint64_t user,
                                         std::uint64_t conversation_id, const client::Envelope& request,
                                         std::string& detail) const;

    // Mutual TLS to the transfers (cluster.tls): the client context, replaced on SIGHUP (null:
    // plain TCP). Thread-safe.
    void set_tls(std::shared_ptr<boost::asio::ssl::context> ctx);

private:
    // What a frame from the owner means to forward() or call().
    enum class Verdict { keep_reading, answered, refused };
    using FrameFn = std::function<Verdict(const internal::LinkEnvelope&, std::string& detail)>;
    // The exchange both share: finds the owner of conversation_id (two passes over `transfers`),
    // sends the request (and a Ping behind it when ping_behind), then hands every frame to
    // on_frame until it says answered (true) or refused (false), a Bounce moves on to the next
    // transfer, or the timeout or the frame budget runs out.
    bool exchange(const std::vector<TransferAddress>& transfers, std::uint64_t user, std::uint64_t conversation_id,
                  const client::Envelope& request, bool ping_behind, const FrameFn& on_frame,
                  std::string& detail) const;
    std::shared_ptr<boost::asio::ssl::context> tls_context() const;
    std::chrono::milliseconds timeout_;
    std::string secret_;
    mutable std::mutex mu_;
    std::shared_ptr<boost::asio::ssl::context> tls_;
};

}  // namespace im::rest
