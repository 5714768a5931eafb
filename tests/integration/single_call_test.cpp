// writer.single_call (issue 16): a batch of one conversation's two watermark rows with at most one
// message (a lone message; a receipt) is stored by one prepared CALL of im_store_pair (migration
// 009) instead of the batch path's statements. Both paths must write the
// same rows: the same conversation run through a cluster with the switch on and one with it off
// ends with equal watermark rows, sync versions, unread counts and stored messages, and the
// metric shows which path ran.
#include <gtest/gtest.h>

#include "messaging_test_util.hpp"

namespace im::test {
namespace {

using namespace msg;

struct Outcome {
    std::vector<std::string> rows;  // user_conversations of both users, ids replaced by a / b
    std::uint64_t messages = 0;
    double single_calls = 0;
    std::vector<std::uint64_t> seqs;
};

Outcome run(bool single_call) {
    Cluster cl(ClusterOptions{1, {}, {std::string("writer.single_call=") + (single_call ? "true" : "false")}, {},
                              single_call ? "single-on" : "single-off"});
    auto a = cl.user("sa"), b = cl.user("sb");
    cl.befriend(a, b);
    auto ca = cl.connect(0, a.token, "dev1");
    Outcome out;
    for (std::uint64_t i = 1; i <= 3; ++i) {  // one at a time: each is a batch of its own
        const auto env = ca->make_send(b.id, "one " + std::to_string(i), i, i - 1);
        ca->send(env);
        auto r = ca->wait_for([&](const Envelope& f) { return f.request_id() == env.request_id(); }, 10s);
        if (!r || !r->has_send_result() || r->send_result().code() != client::ERROR_NONE) {
            ADD_FAILURE() << "send " << i << ": " << (r ? r->ShortDebugString() : "no answer") << "; " << log_hint(cl);
            return out;
        }
        out.seqs.push_back(r->send_result().seq());
    }
    {  // a reply from b, online now: no outbox row this time
        auto cb = cl.connect(0, b.token, "dev1");
        const auto env = cb->make_send(a.id, "reply", 1, 0);
        cb->send(env);
        auto r = cb->wait_for([&](const Envelope& f) { return f.request_id() == env.request_id(); }, 10s);
        EXPECT_TRUE(r && r->has_send_result() && r->send_result().code() == client::ERROR_NONE);
        if (r) out.seqs.push_back(r->send_result().seq());
        // b has read a's three messages: a receipt-only batch (it recounts b's unread).
        Envelope rc;
        rc.mutable_receipt()->set_conversation_id(conversation_id(a.id, b.id));
        rc.mutable_receipt()->set_kind(client::READ);
        rc.mutable_receipt()->set_up_to_seq(3);
        cb->send(rc);
        EXPECT_TRUE(ca->wait_for([](const Envelope& f) { return f.has_receipt_event() && f.receipt_event().kind() == client::READ; },
                                 10s))
            << log_hint(cl);
    }
    const auto conv = conversation_id(a.id, b.id);
    out.messages = cl.stored_messages(conv);
    auto& st = cl.db().db().prepare(
        "SELECT uc.user_id, uc.peer_id, uc.last_seq, uc.my_delivered_seq, uc.my_read_seq, uc.peer_delivered_seq, "
        "uc.peer_read_seq, uc.unread, uc.version, v.version FROM user_conversations uc JOIN user_sync_versions v "
        "ON v.user_id = uc.user_id WHERE uc.conversation_id = ? ORDER BY uc.user_id = ? DESC");
    st.setUInt64(1, conv);
    st.setUInt64(2, a.id);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    while (rs->next()) {
        auto who = [&](std::uint64_t id) { return id == a.id ? "a" : id == b.id ? "b" : "?"; };
        std::string row = std::string(who(rs->getUInt64(1))) + " peer=" + who(rs->getUInt64(2));
        for (unsigned c = 3; c <= 10; ++c) row += " " + std::to_string(rs->getUInt64(c));
        out.rows.push_back(row);
    }
    out.single_calls = metric(cl.transfer_admin_port(), "im_transfer_single_call_batches_total");
    return out;
}

TEST(SingleCall, OneMessageBatchesStoreTheSameRowsByOneCallAsByTheBatchPath) {
    const auto on = run(true);
    const auto off = run(false);
    EXPECT_EQ(on.single_calls, 5) << "every batch here is one message or one receipt";
    EXPECT_EQ(off.single_calls, 0);
    EXPECT_EQ(on.seqs, (std::vector<std::uint64_t>{1, 2, 3, 4}));
    EXPECT_EQ(on.seqs, off.seqs);
    EXPECT_EQ(on.messages, 4u);
    EXPECT_EQ(on.messages, off.messages);
    ASSERT_EQ(on.rows.size(), 2u);
    EXPECT_EQ(on.rows, off.rows);
    // a: last_seq 4, no watermark moved by its sends (READ means read), b's read of 3 seen, b's
    // reply unread; b: read (and so delivered) up to 3, nothing unread; 5 versions each.
    EXPECT_EQ(on.rows[0], "a peer=b 4 0 0 3 3 1 5 5");
    EXPECT_EQ(on.rows[1], "b peer=a 4 3 3 0 0 0 5 5");
}

}  // namespace
}  // namespace im::test
