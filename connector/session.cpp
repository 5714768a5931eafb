#include "session.hpp"

#include "connector_server.hpp"

namespace im::connector {

ClientSession::ClientSession(tcp::socket socket, const net::ConnectionOptions& options, ConnectorServer& server)
    : FrameConnection(std::move(socket), options), connected_ms(net::steady_ms()), server_(server) {}

ClientSession::ClientSession(std::unique_ptr<TlsStream> tls, const net::ConnectionOptions& options,
                             ConnectorServer& server)
    : FrameConnection(std::move(tls), options), connected_ms(net::steady_ms()), server_(server) {}

void ClientSession::on_frame(std::string_view body) {
    client::Envelope env;
    if (wire::parse_body(body, env) != wire::FrameError::none) {
        on_frame_error(wire::FrameError::unparsable);
        return;
    }
    server_.on_client_frame(*this, env);
}

void ClientSession::on_frame_error(wire::FrameError error) {
    server_.count_frame_error(error);
    send_error(0, error == wire::FrameError::oversize ? client::FRAME_TOO_LARGE : client::BAD_FRAME,
               wire::to_string(error), true);
}

void ClientSession::send_error(std::uint64_t request_id, client::ErrorCode code, const std::string& message, bool close) {
    client::Envelope env;
    env.set_request_id(request_id);
    auto* e = env.mutable_error();
    e->set_code(code);
    e->set_message(message);
    e->set_retryable(code == client::UNAVAILABLE || code == client::OVERLOADED || code == client::TIMEOUT);
    send(env);
    if (close) {
        state = SessionState::closing;
        close_after_flush();
    }
}

void ClientSession::kick(client::KickReason reason, const std::string& message) {
    client::Envelope env;
    env.mutable_kick()->set_reason(reason);
    env.mutable_kick()->set_message(message);
    send(env);
    state = SessionState::closing;
    close_after_flush();
}

void ClientSession::on_write_queue_empty() {
    if (behind_since_ms != 0) server_.on_session_caught_up(*this);
}

void ClientSession::on_closed(net::CloseReason reason, wire::FrameError /*error*/) {
    server_.on_session_closed(*this, reason);
}

}  // namespace im::connector
