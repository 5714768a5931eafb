// The app's requests that are not sends: receipts, typing, conversation list, history.

#include <limits>

#include "engine.hpp"

namespace imclient::detail {

// ---- app requests --------------------------------------------------------------------------

void Engine::mark_read(std::uint64_t conversation_id, std::uint64_t seq) {
    if (conversation_id == 0 || seq <= store_->read(conversation_id)) return;
    store_->set_read(conversation_id, seq);
    store_->flush();
    if (phase_ != Phase::live) return;  // resent after the next login
    Envelope env;
    env.set_request_id(next_request_id());
    auto* r = env.mutable_receipt();
    r->set_conversation_id(conversation_id);
    r->set_kind(im::client::READ);
    r->set_up_to_seq(seq);
    send_frame(env);
}

void Engine::typing(std::uint64_t peer, std::uint64_t group) {
    if (phase_ != Phase::live || (peer == 0) == (group == 0)) return;
    Envelope env;
    env.set_request_id(next_request_id());
    if (group != 0) {
        env.mutable_typing()->set_group_id(group);
    } else {
        env.mutable_typing()->set_peer_user_id(peer);
    }
    send_frame(env);
}

void Engine::conversations(std::promise<std::vector<Conversation>> promise) {
    auto job = std::make_shared<ConversationsJob>();
    job->promise = std::move(promise);
    conversations_page(std::move(job), 0);
}

void Engine::conversations_page(std::shared_ptr<ConversationsJob> job, std::uint64_t cursor) {
    Request req;
    req.frame.mutable_sync_conversations()->set_cursor(cursor);
    req.deadline = Clock::now() + opts_.request_timeout;
    req.survives_reconnect = true;
    req.done = [this, job, cursor](const Envelope* r, ErrorCode code) {
        if (r == nullptr || code != ErrorCode::none) {
            job->promise.set_exception(std::make_exception_ptr(
                Error(code, std::string("conversations: ") + to_string(code))));
            return;
        }
        const auto& list = r->conversation_list();
        for (const auto& c : list.conversations()) {
            if (c.conversation_id() == 0) continue;
            Conversation item;
            item.conversation_id = c.conversation_id();
            item.peer_user_id = c.peer_user_id();
            item.last_seq = c.last_seq();
            item.my_delivered_seq = c.my_delivered_seq();
            item.my_read_seq = c.my_read_seq();
            item.peer_delivered_seq = c.peer_delivered_seq();
            item.peer_read_seq = c.peer_read_seq();
            item.unread = c.unread();
            item.updated_ms = c.updated_ms();
            item.group = c.group() || is_group_conversation(c.conversation_id());
            item.title = c.title();
            item.member_count = c.member_count();
            item.joined_seq = c.joined_seq();
            item.left_seq = c.left_seq();
            // The server lists the groups in every page: one entry per conversation, the latest.
            const auto [at, fresh] =
                job->index.try_emplace(item.conversation_id, job->items.size());
            if (fresh) {
                job->items.push_back(std::move(item));
            } else {
                job->items[at->second] = std::move(item);
            }
        }
        if (list.has_more() && list.next_cursor() != cursor) {
            conversations_page(job, list.next_cursor());
        } else {
            job->promise.set_value(std::move(job->items));
        }
    };
    issue(std::move(req));
}

void Engine::history(std::uint64_t conversation_id, std::uint64_t before_seq, std::uint32_t limit,
                     std::promise<std::vector<Message>> promise) {
    auto shared = std::make_shared<std::promise<std::vector<Message>>>(std::move(promise));
    Request req;
    auto* s = req.frame.mutable_sync_messages();
    s->set_conversation_id(conversation_id);
    // before_seq 0 means the newest page; the wire uses 0 for "forward".
    s->set_before_seq(before_seq != 0
                          ? before_seq
                          : static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()));
    s->set_limit(limit);
    req.deadline = Clock::now() + opts_.request_timeout;
    req.survives_reconnect = true;
    req.done = [this, shared](const Envelope* r, ErrorCode code) {
        if (r != nullptr && r->message_page().code() != im::client::ERROR_NONE) {
            code = static_cast<ErrorCode>(r->message_page().code());
        }
        if (r == nullptr || code != ErrorCode::none) {
            shared->set_exception(
                std::make_exception_ptr(Error(code, std::string("history: ") + to_string(code))));
            return;
        }
        std::vector<Message> out;
        out.reserve(static_cast<std::size_t>(r->message_page().messages_size()));
        for (const auto& d : r->message_page().messages())
            out.push_back(to_message(d));
        shared->set_value(std::move(out));
    };
    issue(std::move(req));
}

void Engine::read_by(std::uint64_t conversation_id, std::uint64_t seq,
                     std::promise<ReadByResult> promise) {
    auto shared = std::make_shared<std::promise<ReadByResult>>(std::move(promise));
    Request req;
    auto* q = req.frame.mutable_read_by();
    q->set_conversation_id(conversation_id);
    q->set_seq(seq);
    req.deadline = Clock::now() + opts_.request_timeout;
    req.survives_reconnect = true;
    req.done = [shared](const Envelope* r, ErrorCode code) {
        if (r != nullptr && r->read_by_result().code() != im::client::ERROR_NONE) {
            code = static_cast<ErrorCode>(r->read_by_result().code());
        }
        if (r == nullptr || code != ErrorCode::none) {
            shared->set_exception(
                std::make_exception_ptr(Error(code, std::string("read_by: ") + to_string(code))));
            return;
        }
        const auto& rr = r->read_by_result();
        ReadByResult out;
        out.conversation_id = rr.conversation_id();
        out.seq = rr.seq();
        out.members.reserve(static_cast<std::size_t>(rr.members_size()));
        for (const auto& m : rr.members()) {
            out.members.push_back(
                MemberReceipt{m.user_id(), m.delivered_seq(), m.read_seq(),
                              static_cast<GroupRole>(m.role() <= im::client::OWNER
                                                         ? m.role()
                                                         : im::client::GROUP_ROLE_UNSPECIFIED)});
        }
        shared->set_value(std::move(out));
    };
    issue(std::move(req));
}

}  // namespace imclient::detail
