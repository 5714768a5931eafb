// The outbox on the wire: Send frames out, SendResult (and Error) answers in.

#include "engine.hpp"
#include "invoke.hpp"
#include "random_id.hpp"

namespace imclient::detail {

namespace {

// Final: nothing was stored and a resend would get the same answer.
bool is_final(ErrorCode code) {
    switch (code) {
        case ErrorCode::forbidden:
        case ErrorCode::blocked:
        case ErrorCode::bad_request:
        case ErrorCode::not_found:
        case ErrorCode::frame_too_large:
        case ErrorCode::unknown_body:
        case ErrorCode::version_unsupported:
            return true;
        default:
            return false;  // OUT_OF_ORDER, UNAVAILABLE, TIMEOUT, OVERLOADED, INTERNAL, ...
    }
}

}  // namespace

void Engine::send(OutMessage message) {
    if (message.owner == 0 && session_user_ != 0) {
        // Queued while the first LoginResult came in: that user's. The log, which got the message
        // before this, learns it the way a replay adopts messages without an owner.
        message.owner = session_user_;
        if (state_log_) state_log_->login(message.owner);
    } else if (message.owner != 0 && session_user_ != 0 && message.owner != session_user_) {
        // Queued as another user just before this login replaced that one's.
        --queued_;
        forget(message.client_msg_id);
        flush_state();
        report_send_failure(message, ErrorCode::other_user,
                            "queued by user " + std::to_string(message.owner) +
                                ", not sent as user " + std::to_string(session_user_.load()));
        return;
    }
    outbox_.add(std::move(message));
    pump_outbox();
}

void Engine::restore(std::vector<OutMessage> messages) {
    for (auto& m : messages)
        outbox_.add(std::move(m));
}

void Engine::forget(const std::string& client_msg_id) {
    if (state_log_) forgotten_.push_back(client_msg_id);
}

void Engine::flush_state() {
    if (forgotten_.empty()) return;
    state_log_->done(forgotten_);  // one pwrite for the whole burst
    forgotten_.clear();
}

void Engine::pump_outbox() {
    if (phase_ != Phase::live) return;
    auto refused = outbox_.pump(Clock::now(), [this](const OutMessage& m, std::uint64_t acked) {
        Envelope env;
        const std::uint64_t rid = next_request_id();
        env.set_request_id(rid);
        auto* s = env.mutable_send();
        if (m.group != 0) {
            s->set_group_id(m.group);
        } else {
            s->set_peer_user_id(m.peer);
        }
        s->set_client_msg_id(m.client_msg_id);
        s->set_stream_seq(m.stream_seq);
        s->set_stream_acked(acked);
        if (m.type == MessageType::file) {
            s->set_type(im::client::FILE);
            auto* f = s->mutable_file();
            f->set_file_id(m.file.file_id);
            f->set_name(m.file.name);
            f->set_size(m.file.size);
            f->set_sha256(m.file.sha256);
            f->set_mime(m.file.mime);
        } else {
            s->set_type(im::client::TEXT);
            s->set_text(m.text);
        }
        if (env.ByteSizeLong() > max_frame_bytes_) return std::uint64_t{0};
        // A failing link restarts every stream at the next login anyway.
        if (send_frame(env)) sends_on_wire_.emplace(rid, Clock::now() + opts_.request_timeout);
        return rid;
    }, send_budget());
    for (const auto& m : refused) {
        --queued_;
        forget(m.client_msg_id);
        report_send_failure(m, ErrorCode::message_too_large,
                            "the message exceeds the connector's max_frame_bytes (" +
                                std::to_string(max_frame_bytes_) + ")");
    }
}

std::size_t Engine::send_budget() const {
    const std::size_t used = sends_on_wire_.size() + pending_.size();
    return used < opts_.max_session_in_flight ? opts_.max_session_in_flight - used : 0;
}

void Engine::handle_send_result(const Envelope& frame) {
    sends_on_wire_.erase(frame.request_id());
    const auto& r = frame.send_result();
    send_answered(r.client_msg_id(), frame.request_id(), static_cast<ErrorCode>(r.code()),
                  r.retryable(), r.expected_stream_seq(), r.message(), &r,
                  std::chrono::milliseconds(r.retry_after_ms()));
}

void Engine::send_answered(const std::string& client_msg_id, std::uint64_t request_id,
                           ErrorCode code, bool retryable, std::uint64_t expected_stream_seq,
                           const std::string& detail, const im::client::SendResult* ok,
                           std::chrono::milliseconds retry_after) {
    (void)retryable;  // the code decides: the contract lists the final ones
    if (code == ErrorCode::none && ok != nullptr) {
        auto m = outbox_.finish(client_msg_id);
        if (!m) return;  // a duplicate answer
        --queued_;
        forget(client_msg_id);
        const std::uint64_t conv = ok->conversation_id() != 0 ? ok->conversation_id()
                                   : m->group != 0            ? m->group
                                                              : conversation_id(user_id_, m->peer);
        if (m->group != 0 && ok->seq() != 0) note_my_message(conv, ok->seq());
        // Our own message holds its seq: it counts toward the delivered watermark.
        if (ok->seq() != 0) accept(conv, ok->seq(), std::nullopt);
        invoke_app(callbacks.sent, SendAck{to_hex(client_msg_id), m->peer, m->group, conv,
                                           ok->msg_id(), ok->seq(), ok->created_ms()});
        return;
    }
    if (is_final(code)) {
        auto m = outbox_.finish(client_msg_id);
        if (!m) return;
        --queued_;
        forget(client_msg_id);
        report_send_failure(*m, code, detail);
        return;
    }
    // RATE_LIMITED says how long to wait (retry_after_ms); the stream goes again no sooner, and
    // then slowly.
    outbox_.retry(client_msg_id, request_id, code == ErrorCode::out_of_order, expected_stream_seq,
                  Clock::now(),
                  code == ErrorCode::rate_limited ? std::optional<std::chrono::milliseconds>(retry_after)
                                                  : std::nullopt);
}

void Engine::report_send_failure(const OutMessage& m, ErrorCode code, const std::string& detail) {
    const std::uint64_t sender = m.owner != 0 ? m.owner : user_id_.load();
    const std::uint64_t conv = m.group != 0 ? m.group : conversation_id(sender, m.peer);
    invoke_app(callbacks.send_failed,
               SendFailure{to_hex(m.client_msg_id), m.peer, m.group, conv, code, detail});
}

}  // namespace imclient::detail
