#pragma once
// One client connection: framing (FrameConnection), its login state and identity, and the
// requests it has in flight at transfers (answered with a retryable error if a link drops).

#include <cstdint>
#include <string>
#include <vector>

#include "abuse_limits.hpp"
#include "dispatcher.hpp"
#include "im/net/frame_connection.hpp"
#include "im/proto/client.pb.h"

namespace im::connector {

class ConnectorServer;

struct PendingRequest {
    std::uint64_t request_id = 0;
    std::uint64_t link_id = 0;
    client::Envelope::BodyCase kind = client::Envelope::BODY_NOT_SET;
    std::string client_msg_id;  // Send only: echoed in a failure SendResult
};

class ClientSession : public net::FrameConnection {
public:
    ClientSession(tcp::socket socket, const net::ConnectionOptions& options, ConnectorServer& server);
    ClientSession(std::unique_ptr<TlsStream> tls, const net::ConnectionOptions& options, ConnectorServer& server);

    void begin() { start(); }
    // Sends Kick{reason} and closes once it is written.
    void kick(client::KickReason reason, const std::string& message);
    // Sends Error{code} (the session stays unless `close`).
    void send_error(std::uint64_t request_id, client::ErrorCode code, const std::string& message, bool close = false);

    SessionState state = SessionState::awaiting_login;
    std::uint64_t user_id = 0;
    std::string device_id;
    std::uint64_t login_epoch = 0;
    std::uint64_t token_session_id = 0;  // sessions table row of the token (logout kicks by it)
    std::string token_hash;              // SHA-256 of the token: re-checked periodically
    std::int64_t token_checked_ms = 0;
    std::int64_t connected_ms = 0;
    std::vector<PendingRequest> pending;
    FrameBuckets buckets;                   // sessions.messages_per_second, ...
    TokenBucket frames_bucket;              // sessions.frames_per_second
    std::uint32_t frames_before_login = 0;  // sessions.max_frames_before_login
    std::int64_t rate_paused_until = 0;     // reading paused by a rate limit until then
    bool paused_for_pending = false;        // reading paused at sessions.max_pending_requests
    AddressCounter::Key address{};          // counted in sessions.max_per_address while open
    // Pushes are being dropped since then (the write queue passed sessions.push_queue_bytes); 0:
    // not behind. Once the queue is written out the client gets a SyncHint; a queue not written
    // out within sessions.slow_consumer_timeout closes the session.
    std::int64_t behind_since_ms = 0;

protected:
    void on_frame(std::string_view body) override;
    void on_closed(net::CloseReason reason, wire::FrameError error) override;
    void on_frame_error(wire::FrameError error) override;
    void on_write_queue_empty() override;

private:
    ConnectorServer& server_;
};

}  // namespace im::connector
