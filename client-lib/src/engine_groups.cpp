// Group specifics of the receive side: seqs a member may not see, and the receipts of the other
// members on my messages (on_member_receipt).

#include <algorithm>

#include "engine.hpp"
#include "invoke.hpp"

namespace imclient::detail {

namespace {
// My messages remembered per group for on_member_receipt: the newest ones only (a member's
// watermark passing older ones is still reported by on_receipt).
constexpr std::size_t kMaxTrackedSeqs = 1024;
}  // namespace

void Engine::skip_invisible(std::uint64_t conversation_id, std::uint64_t seq) {
    InConversation& c = in(conversation_id);
    if (seq <= c.delivered) return;
    // Anything buffered at or below it came from the server, so it is visible after all: those
    // are handed out first, in order (a floor never skips a message we hold).
    while (!c.buffered.empty() && c.buffered.begin()->first <= seq) {
        auto node = c.buffered.extract(c.buffered.begin());
        if (node.key() <= c.delivered) continue;
        c.delivered = node.key() - 1;
        hand_out(conversation_id, c, node.key(), node.mapped());
    }
    if (seq > c.delivered) {
        c.delivered = seq;
        store_->set_delivered(conversation_id, seq);
        store_dirty_ = true;
    }
    drain(conversation_id, c);
}

void Engine::note_my_message(std::uint64_t conversation_id, std::uint64_t seq) {
    auto& seqs = my_group_messages_[conversation_id].seqs;
    seqs.insert(seq);
    if (seqs.size() > kMaxTrackedSeqs) seqs.erase(seqs.begin());
}

void Engine::member_receipt(std::uint64_t conversation_id, std::uint64_t user, ReceiptKind kind,
                            std::uint64_t up_to_seq) {
    const auto it = my_group_messages_.find(conversation_id);
    if (it == my_group_messages_.end()) return;  // nothing of mine seen in this group
    MyGroupMessages& g = it->second;
    const auto rep = g.reported.try_emplace({user, kind}, 0).first;
    const std::uint64_t before = rep->second;
    if (up_to_seq <= before) return;
    rep->second = up_to_seq;
    MemberReceiptEvent event{conversation_id, user, kind, up_to_seq, {}};
    for (auto s = g.seqs.upper_bound(before); s != g.seqs.end() && *s <= up_to_seq; ++s)
        event.my_seqs.push_back(*s);
    if (!event.my_seqs.empty()) invoke_app(callbacks.member_receipt, event);
}

}  // namespace imclient::detail
