// The receive side: Deliver frames and sync pages merged by seq into one contiguous watermark
// per conversation, receipts after the app took the messages, and the sync at every login.

#include <algorithm>

#include "engine.hpp"
#include "invoke.hpp"
#include "random_id.hpp"

namespace imclient::detail {

namespace {
// Conversation syncs (SyncMessages page chains) running at once on a session.
constexpr std::size_t kMaxSyncs = 32;
}  // namespace

Engine::InConversation& Engine::in(std::uint64_t conversation_id) {
    auto [it, inserted] = inbox_.try_emplace(conversation_id);
    if (inserted) {
        it->second.delivered = store_->delivered(conversation_id);
        it->second.receipt_sent = it->second.delivered;  // resent at every login anyway
    }
    return it->second;
}

Message Engine::to_message(const im::client::Deliver& d) const {
    Message m;
    m.conversation_id = d.conversation_id();
    m.seq = d.seq();
    m.msg_id = d.msg_id();
    m.sender_user_id = d.sender_user_id();
    m.sender_device_id = d.sender_device_id();
    m.type = d.type() == im::client::FILE          ? MessageType::file
             : d.type() == im::client::GROUP_EVENT ? MessageType::group_event
                                                   : MessageType::text;
    m.text = d.text();
    if (d.has_file()) {
        m.file = FileRef{d.file().file_id(), d.file().name(), d.file().size(), d.file().sha256(),
                         d.file().mime()};
    }
    m.created_ms = d.created_ms();
    m.client_msg_id = to_hex(d.client_msg_id());
    if (d.has_group_event()) {
        const auto& g = d.group_event();
        m.group_event.kind = static_cast<GroupEventKind>(
            g.kind() <= im::client::GROUP_DELETED ? g.kind()
                                                  : im::client::GROUP_EVENT_KIND_UNSPECIFIED);
        m.group_event.actor_user_id = g.actor_user_id();
        m.group_event.user_ids.assign(g.user_ids().begin(), g.user_ids().end());
        m.group_event.name = g.name();
        m.group_event.role = static_cast<GroupRole>(
            g.role() <= im::client::OWNER ? g.role() : im::client::GROUP_ROLE_UNSPECIFIED);
    }
    return m;
}

bool Engine::is_own_send(const im::client::Deliver& d) const {
    // A message this client is still sending (its SendResult is on the way): it is handed to the
    // app through on_sent, never on_message.
    return d.sender_user_id() == user_id_ && !d.client_msg_id().empty() &&
           outbox_.contains(d.client_msg_id());
}

void Engine::handle_deliver(const im::client::Deliver& d) {
    if (d.conversation_id() == 0 || d.seq() == 0) return;
    if (opts_.on_raw_message) invoke_app(opts_.on_raw_message, to_message(d), true);
    if (d.seq() <= in(d.conversation_id()).delivered)
        return;  // a duplicate: never a second on_message
    std::optional<Message> message;
    if (!is_own_send(d)) message = to_message(d);
    accept(d.conversation_id(), d.seq(), std::move(message));
}

void Engine::accept(std::uint64_t conversation_id, std::uint64_t seq,
                    std::optional<Message> message) {
    InConversation& c = in(conversation_id);
    if (seq <= c.delivered) return;
    if (seq != c.delivered + 1) {
        // A gap: keep it (bounded) and fetch what is missing.
        if (c.buffered.size() < opts_.max_buffered) {
            c.buffered.emplace(seq, std::move(message));
        } else if (seq < c.buffered.rbegin()->first) {
            c.buffered.erase(std::prev(c.buffered.end()));  // the highest comes again by sync
            c.buffered.emplace(seq, std::move(message));
        }
        sync_conversation(conversation_id);
        return;
    }
    hand_out(conversation_id, c, seq, message);
    drain(conversation_id, c);
}

void Engine::drain(std::uint64_t conversation_id, InConversation& c) {
    while (!c.buffered.empty()) {
        auto it = c.buffered.begin();
        if (it->first <= c.delivered) {
            c.buffered.erase(it);
            continue;
        }
        if (it->first != c.delivered + 1) break;
        auto node = c.buffered.extract(it);
        hand_out(conversation_id, c, node.key(), node.mapped());
    }
}

void Engine::hand_out(std::uint64_t conversation_id, InConversation& c, std::uint64_t seq,
                      const std::optional<Message>& message) {
    if (message) {
        invoke_app(callbacks.message, *message);
        receipts_due_.insert(conversation_id);
        if (message->sender_user_id == user_id_ && is_group_conversation(conversation_id))
            note_my_message(conversation_id, seq);  // sent by another device of mine
    }
    // Only now, after on_message returned, does the watermark move.
    c.delivered = seq;
    store_->set_delivered(conversation_id, seq);
    store_dirty_ = true;
}

void Engine::flush_receipts() {
    const auto due = std::move(receipts_due_);
    receipts_due_.clear();
    if (phase_ == Phase::live) {
        for (const std::uint64_t conv : due) {
            InConversation& c = in(conv);
            if (c.delivered <= c.receipt_sent) continue;
            Envelope env;
            env.set_request_id(next_request_id());
            auto* r = env.mutable_receipt();
            r->set_conversation_id(conv);
            r->set_kind(im::client::DELIVERED);
            r->set_up_to_seq(c.delivered);
            c.receipt_sent = c.delivered;
            if (!send_frame(env)) break;  // resent from the store after the next login
        }
    }
    if (store_dirty_) {
        store_dirty_ = !store_->flush();
    }
}

void Engine::resend_watermarks() {
    for (const auto& cc : store_->conversations()) {
        for (const auto kind : {im::client::DELIVERED, im::client::READ}) {
            const std::uint64_t seq = kind == im::client::DELIVERED ? cc.delivered : cc.read;
            if (seq == 0) continue;
            Envelope env;
            env.set_request_id(next_request_id());
            auto* r = env.mutable_receipt();
            r->set_conversation_id(cc.conversation_id);
            r->set_kind(kind);
            r->set_up_to_seq(seq);
            if (!send_frame(env)) return;
        }
        InConversation& c = in(cc.conversation_id);
        c.receipt_sent = std::max(c.receipt_sent, cc.delivered);
    }
}

// ---- message sync --------------------------------------------------------------------------

void Engine::sync_conversation(std::uint64_t conversation_id) {
    if (phase_ != Phase::live) return;  // the next login syncs
    InConversation& c = in(conversation_id);
    if (c.syncing) {
        c.sync_again = true;
        return;
    }
    if (c.sync_queued) return;  // starts when a slot frees
    sync_retry_at_.erase(conversation_id);
    if (syncs_running_ >= kMaxSyncs) {
        c.sync_queued = true;
        sync_queue_.push_back(conversation_id);
        return;
    }
    ++syncs_running_;
    c.syncing = true;
    c.sync_again = false;
    c.pass_started_at = c.delivered;
    fetch_page(conversation_id, c.delivered);
}

void Engine::sync_ended(InConversation& c) {
    if (!c.syncing) return;
    c.syncing = false;
    if (syncs_running_ > 0) --syncs_running_;
    while (syncs_running_ < kMaxSyncs && !sync_queue_.empty() && phase_ == Phase::live) {
        const std::uint64_t next = sync_queue_.front();
        sync_queue_.pop_front();
        in(next).sync_queued = false;
        sync_conversation(next);
    }
}

void Engine::fetch_page(std::uint64_t conversation_id, std::uint64_t after_seq) {
    Request req;
    auto* s = req.frame.mutable_sync_messages();
    s->set_conversation_id(conversation_id);
    s->set_after_seq(after_seq);
    s->set_limit(opts_.sync_page);
    req.deadline = Clock::now() + opts_.request_timeout;
    req.done = [this, conversation_id, after_seq](const Envelope* r, ErrorCode code) {
        on_page(conversation_id, after_seq, r, code);
    };
    issue(std::move(req));
}

void Engine::on_page(std::uint64_t conversation_id, std::uint64_t after_seq, const Envelope* r,
                     ErrorCode code) {
    InConversation& c = in(conversation_id);
    if (!c.syncing) return;  // the session was reset meanwhile
    if (r != nullptr && r->message_page().code() != im::client::ERROR_NONE) {
        code = static_cast<ErrorCode>(r->message_page().code());
    }
    if (r == nullptr || code != ErrorCode::none) {
        sync_ended(c);
        if (code == ErrorCode::not_found || code == ErrorCode::forbidden) {
            c.sync_again = false;  // not a conversation of ours: nothing to wait for
            conversation_synced(conversation_id);
            return;
        }
        sync_retry_at_[conversation_id] = Clock::now() + retry_delay(++c.sync_failures);
        return;
    }
    c.sync_failures = 0;
    const auto& page = r->message_page();
    std::uint64_t last = after_seq;
    const bool group = is_group_conversation(conversation_id);
    for (const auto& d : page.messages()) {
        // A group's page holds only what I may see: a seq it jumps over (before I joined, while I
        // was not a member) is invisible, not missing. One-to-one pages never jump.
        if (group && d.seq() > last + 1 && c.delivered >= last)
            skip_invisible(conversation_id, d.seq() - 1);
        last = std::max(last, d.seq());
        if (opts_.on_raw_message) invoke_app(opts_.on_raw_message, to_message(d), false);
        if (d.seq() <= c.delivered) continue;
        std::optional<Message> message;
        if (!is_own_send(d)) message = to_message(d);
        accept(conversation_id, d.seq(), std::move(message));
    }
    flush_receipts();
    if (!c.syncing) return;  // the link failed while acknowledging
    if (page.has_more() && last > after_seq) {
        fetch_page(conversation_id, last);
        return;
    }
    sync_ended(c);
    const bool gap = !c.buffered.empty();
    const bool progressed = c.delivered > c.pass_started_at;
    if (c.sync_again || (gap && progressed)) {
        sync_conversation(conversation_id);
        return;
    }
    if (gap) {  // the server has not caught up with a Deliver we hold: ask again later
        sync_retry_at_[conversation_id] = Clock::now() + retry_delay(++c.sync_failures);
    }
    conversation_synced(conversation_id);
}

void Engine::retry_syncs(Clock::time_point now) {
    std::vector<std::uint64_t> due;
    for (auto it = sync_retry_at_.begin(); it != sync_retry_at_.end();) {
        if (it->second <= now) {
            due.push_back(it->first);
            it = sync_retry_at_.erase(it);
        } else {
            ++it;
        }
    }
    for (const auto conv : due)
        sync_conversation(conv);
    if (list_retry_at_ && *list_retry_at_ <= now) {
        list_retry_at_.reset();
        sync_list();
    }
}

std::chrono::milliseconds Engine::retry_delay(unsigned failures) const {
    auto d = opts_.reconnect_min;
    for (unsigned i = 1; i < failures && d < opts_.reconnect_max; ++i)
        d *= 2;
    return std::min(d, opts_.reconnect_max);
}

// ---- conversation sync ---------------------------------------------------------------------

void Engine::sync_after_login() {
    sync_list();
    for (const auto& [conv, c] : inbox_) {
        if (!c.buffered.empty()) sync_conversation(conv);
    }
}

void Engine::sync_list() {
    if (phase_ != Phase::live) return;
    if (list_.running) {
        list_.again = true;
        return;
    }
    list_.running = true;
    list_.again = false;
    list_.waiting.clear();
    list_retry_at_.reset();
    fetch_list(store_->sync_cursor());
}

void Engine::fetch_list(std::uint64_t cursor) {
    Request req;
    req.frame.mutable_sync_conversations()->set_cursor(cursor);
    req.deadline = Clock::now() + opts_.request_timeout;
    req.done = [this](const Envelope* r, ErrorCode code) { on_list(r, code); };
    issue(std::move(req));
}

void Engine::on_list(const Envelope* r, ErrorCode code) {
    if (!list_.running) return;
    if (r == nullptr || code != ErrorCode::none) {
        list_.running = false;
        list_retry_at_ = Clock::now() + retry_delay(++list_.failures);
        return;
    }
    list_.failures = 0;
    if (watermarks_due_) {  // the cluster answers again after a lost transfer link
        watermarks_due_ = false;
        resend_watermarks();
    }
    const auto& list = r->conversation_list();
    list_.next_cursor = list.next_cursor();
    list_.has_more = list.has_more();
    std::vector<std::uint64_t> behind;
    for (const auto& ci : list.conversations()) {
        const std::uint64_t conv = ci.conversation_id();
        if (conv == 0) continue;
        InConversation& c = in(conv);
        // A group's joined_seq is not a floor here: after a leave and a rejoin, seqs below it (up
        // to left_seq) may still be mine to fetch. The sync's pages say what is visible.
        const bool group = ci.group() || is_group_conversation(conv);
        const std::uint64_t peer =
            ci.peer_user_id() != 0 ? ci.peer_user_id() : peer_of(conv, user_id_);
        // No peer watermarks in a group: members' receipts come as ReceiptEvents (and read_by()).
        if (!group && ci.peer_delivered_seq() > c.reported_peer_delivered) {
            c.reported_peer_delivered = ci.peer_delivered_seq();
            invoke_receipt(conv, peer, ReceiptKind::delivered, ci.peer_delivered_seq());
        }
        if (!group && ci.peer_read_seq() > c.reported_peer_read) {
            c.reported_peer_read = ci.peer_read_seq();
            invoke_receipt(conv, peer, ReceiptKind::read, ci.peer_read_seq());
        }
        if (ci.my_read_seq() > store_->read(conv)) {  // read on another device
            store_->set_read(conv, ci.my_read_seq());
            store_dirty_ = true;
        }
        if (ci.last_seq() > c.delivered) {
            list_.waiting.insert(conv);
            behind.push_back(conv);
        }
    }
    for (const auto conv : behind)
        sync_conversation(conv);
    if (list_.running && list_.waiting.empty()) list_page_done();
}

void Engine::conversation_synced(std::uint64_t conversation_id) {
    if (!list_.running) return;
    if (list_.waiting.erase(conversation_id) != 0 && list_.waiting.empty()) list_page_done();
}

void Engine::list_page_done() {
    // Every listed conversation is synced: only now may the cursor move past them.
    if (list_.next_cursor != 0) {
        store_->set_sync_cursor(list_.next_cursor);
        store_dirty_ = !store_->flush();
    }
    if (list_.has_more) {
        list_.has_more = false;
        fetch_list(list_.next_cursor);
        return;
    }
    list_.running = false;
    if (list_.again) sync_list();
}

void Engine::handle_sync_hint(const im::client::SyncHint& hint) {
    if (hint.conversation_id() != 0) {
        sync_conversation(hint.conversation_id());
        return;
    }
    watermarks_due_ = true;
    sync_list();
    for (const auto& [conv, c] : inbox_) {
        if (!c.buffered.empty()) sync_conversation(conv);
    }
}

void Engine::handle_receipt_event(const im::client::ReceiptEvent& e) {
    const ReceiptKind kind =
        e.kind() == im::client::READ ? ReceiptKind::read : ReceiptKind::delivered;
    if (e.user_id() == user_id_ && kind == ReceiptKind::read &&
        e.up_to_seq() > store_->read(e.conversation_id())) {
        store_->set_read(e.conversation_id(), e.up_to_seq());  // read on another device
        store_dirty_ = true;
    }
    invoke_receipt(e.conversation_id(), e.user_id(), kind, e.up_to_seq());
    if (is_group_conversation(e.conversation_id()) && e.user_id() != user_id_ && e.user_id() != 0)
        member_receipt(e.conversation_id(), e.user_id(), kind, e.up_to_seq());
}

void Engine::invoke_receipt(std::uint64_t conversation, std::uint64_t user, ReceiptKind kind,
                            std::uint64_t seq) {
    invoke_app(callbacks.receipt, conversation, user, kind, seq);
}

void Engine::reset_receive_session() {
    for (auto& [conv, c] : inbox_) {
        c.syncing = false;
        c.sync_queued = false;
        c.sync_again = false;
        c.sync_failures = 0;
    }
    list_ = ListSync{};
    syncs_running_ = 0;
    sync_queue_.clear();
    sync_retry_at_.clear();
    list_retry_at_.reset();
}

}  // namespace imclient::detail
