#pragma once
// Helpers shared by messaging_delivery_test.cpp and messaging_failures_test.cpp (header-only, not
// a test binary itself):
// - OutStream: one send stream (one RawClient, one peer) numbered, pipelined, acknowledged and
//   resent the way docs/PROTOCOL.md says a client must (stream_seq 1, 2, ...; stream_acked = the
//   highest contiguous SENT number; resends from the first unacked message with the same
//   client_msg_id and the same stream number). It keeps every SendResult it saw, per message.
// - Inbox: one conversation as a client sees it; merges live Delivers and MessagePages by seq and
//   counts what arrived twice (allowed on the wire) and what disagrees (never allowed).
// - Small request helpers (SyncConversations, Receipt) and direct SQL checks on the test database.
// Everything waits for frames with deadlines; nothing sleeps and hopes.

#include <gtest/gtest.h>

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "cluster.hpp"
#include "im/server/mysql.hpp"
#include "im/wire/ids.hpp"

namespace im::test::msg {

using namespace std::chrono_literals;
using client::Envelope;
using Clock = std::chrono::steady_clock;

inline std::chrono::milliseconds left(Clock::time_point deadline) {
    const auto d = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return d.count() > 0 ? d : 0ms;
}

inline double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A recognisable text for message i of a test, padded to `size` bytes when asked.
inline std::string text_of(const std::string& tag, std::size_t i, std::size_t size = 0) {
    std::string t = tag + "#" + std::to_string(i);
    if (t.size() < size) {
        t += ':';
        while (t.size() < size) t += static_cast<char>('a' + (t.size() * 7 + i) % 26);
    }
    return t;
}

inline bool is_deliver_of(const Envelope& e, std::uint64_t conv) {
    return e.has_deliver() && e.deliver().conversation_id() == conv;
}

// ------------------------------------------------------------------------------------ OutStream
class OutStream {
public:
    struct Msg {
        std::uint64_t stream_seq = 0;
        std::string cmid;
        std::string text;
        std::optional<client::SendResult> sent;  // the first SENT answer
        std::optional<client::SendResult> last;  // the answer to the latest attempt (unset: in flight)
        std::uint64_t last_rid = 0;
        int attempts = 0;
        std::vector<client::SendResult> answers;  // every answer, in arrival order
    };

    OutStream(RawClient& c, std::uint64_t peer) : c_(&c), peer_(peer) {}

    // A new login (a new login epoch) on connection c: the unacked messages become a new stream
    // numbered from 1 (same cmids); answers still expected on the old connection are given up.
    void new_epoch(RawClient& c) {
        c_ = &c;
        base_ = acked();
        for (std::size_t i = base_; i < msgs_.size(); ++i) {
            msgs_[i].stream_seq = i - base_ + 1;
            if (!msgs_[i].last) msgs_[i].last_rid = 0;
        }
    }

    std::size_t add(std::string text) {
        Msg m;
        m.stream_seq = msgs_.size() - base_ + 1;
        m.cmid = random_cmid();
        m.text = std::move(text);
        msgs_.push_back(std::move(m));
        return msgs_.size() - 1;
    }

    // Sends (or resends) message i with its cmid and stream number, stream_acked = acked().
    std::uint64_t send(std::size_t i) {
        auto& m = msgs_.at(i);
        Envelope env;
        env.set_request_id(c_->next_request_id());
        auto* s = env.mutable_send();
        s->set_peer_user_id(peer_);
        s->set_client_msg_id(m.cmid);
        s->set_stream_seq(m.stream_seq);
        s->set_stream_acked(acked() - base_);
        s->set_type(client::TEXT);
        s->set_text(m.text);
        rid_[env.request_id()] = i;
        m.last_rid = env.request_id();
        m.last.reset();
        ++m.attempts;
        c_->send(env);
        return env.request_id();
    }

    std::size_t send_new(std::string text) {
        const auto i = add(std::move(text));
        send(i);
        return i;
    }

    // Handles every SendResult already received, without waiting. Returns how many.
    std::size_t absorb() {
        std::size_t n = 0;
        for (auto& e : c_->take_all(Envelope::kSendResult)) {
            handle(e);
            ++n;
        }
        return n;
    }

    // Waits for one SendResult (up to timeout), then absorbs whatever else arrived.
    bool wait_one(std::chrono::milliseconds timeout) {
        auto e = c_->wait_body(Envelope::kSendResult, timeout);
        if (!e) return false;
        handle(*e);
        absorb();
        return true;
    }

    std::size_t in_flight() const {
        std::size_t n = 0;
        for (const auto& m : msgs_) n += (m.last_rid != 0 && !m.last) ? 1u : 0u;
        return n;
    }

    bool wait_all_answered(Clock::time_point deadline) {
        absorb();
        while (in_flight() > 0) {
            if (!wait_one(left(deadline))) return false;
        }
        return true;
    }

    // Highest n such that messages 1..n are all SENT (minus the epoch base: stream_acked).
    std::uint64_t acked() const {
        std::uint64_t n = 0;
        while (n < msgs_.size() && msgs_[n].sent) ++n;
        return n;
    }
    std::size_t sent_count() const {
        std::size_t n = 0;
        for (const auto& m : msgs_) n += m.sent ? 1u : 0u;
        return n;
    }
    bool all_sent() const { return sent_count() == msgs_.size(); }

    // Resends, in order, every message from the first unacked one whose latest attempt was
    // answered (SENT ones after a gap too: a correct server answers them with the original).
    std::size_t resend_from_first_unacked() {
        std::size_t n = 0;
        for (std::size_t i = acked(); i < msgs_.size(); ++i) {
            if (msgs_[i].last_rid != 0 && !msgs_[i].last) continue;  // still in flight
            send(i);
            ++n;
        }
        return n;
    }

    // Sends `total` new messages keeping at most `window` in flight (window 0: all at once).
    // `on_progress` runs after every send and every wait for an answer (may be empty).
    bool pump(std::size_t total, std::size_t window, const std::function<std::string(std::size_t)>& text,
              Clock::time_point deadline, const std::function<void()>& on_progress = {}) {
        const std::size_t first = msgs_.size();
        for (std::size_t k = 0; k < total; ++k) {
            while (window != 0 && in_flight() >= window) {
                if (!wait_one(left(deadline))) return false;
                if (on_progress) on_progress();
            }
            absorb();  // stream_acked moves as acks arrive
            send_new(text(first + k));
            if (on_progress) on_progress();
        }
        return true;
    }

    // Resends rounds until everything is SENT: after each round, waits for the answers. A final
    // (non-retryable) error stops it. `before_round` runs before every resend round.
    bool drive_to_completion(Clock::time_point deadline, const std::function<void()>& before_round = {}) {
        while (Clock::now() < deadline) {
            if (!wait_all_answered(deadline)) return false;
            if (all_sent()) return true;
            for (std::size_t i = acked(); i < msgs_.size(); ++i) {
                const auto& m = msgs_[i];
                if (m.last && m.last->code() != client::ERROR_NONE && !m.last->retryable()) {
                    ADD_FAILURE() << "message " << i << " got a final error " << client::ErrorCode_Name(m.last->code())
                                  << ": " << m.last->message();
                    return false;
                }
            }
            ++rounds_;
            if (before_round) before_round();
            resend_from_first_unacked();
        }
        return false;
    }

    const std::vector<Msg>& msgs() const { return msgs_; }
    const Msg& at(std::size_t i) const { return msgs_.at(i); }
    std::size_t size() const { return msgs_.size(); }
    int rounds() const { return rounds_; }
    // Contract violations seen on the wire (a second SENT with another msg_id or seq, a result for
    // an unknown request, a cmid mismatch).
    const std::vector<std::string>& anomalies() const { return anomalies_; }
    // Counts of non-SENT answers by code.
    std::map<std::string, int> error_counts() const {
        std::map<std::string, int> out;
        for (const auto& m : msgs_) {
            for (const auto& a : m.answers) {
                if (a.code() != client::ERROR_NONE) ++out[client::ErrorCode_Name(a.code()) + (a.retryable() ? "(retryable)" : "(final)")];
            }
        }
        return out;
    }
    std::string summary() const {
        std::ostringstream o;
        o << "sent " << sent_count() << "/" << msgs_.size() << ", acked " << acked() << ", resend rounds " << rounds_;
        for (const auto& [k, v] : error_counts()) o << ", " << k << " x" << v;
        return o.str();
    }

private:
    void handle(const Envelope& e) {
        auto it = rid_.find(e.request_id());
        if (it == rid_.end()) {
            anomalies_.push_back("SendResult for unknown request " + e.ShortDebugString());
            return;
        }
        auto& m = msgs_[it->second];
        const auto& r = e.send_result();
        if (r.client_msg_id() != m.cmid) anomalies_.push_back("cmid mismatch in " + e.ShortDebugString());
        m.answers.push_back(r);
        if (e.request_id() == m.last_rid) m.last = r;
        if (r.code() == client::ERROR_NONE) {
            if (m.sent && (m.sent->msg_id() != r.msg_id() || m.sent->seq() != r.seq())) {
                anomalies_.push_back("message stream_seq " + std::to_string(m.stream_seq) + " SENT twice differently: " +
                                     m.sent->ShortDebugString() + " vs " + r.ShortDebugString());
            }
            if (!m.sent) m.sent = r;
        }
    }

    RawClient* c_;
    std::uint64_t peer_;
    std::vector<Msg> msgs_;
    std::unordered_map<std::uint64_t, std::size_t> rid_;
    std::vector<std::string> anomalies_;
    int rounds_ = 0;
    std::size_t base_ = 0;  // index of the first message of the current login epoch's stream
};

// ---------------------------------------------------------------------------------------- Inbox
class Inbox {
public:
    explicit Inbox(std::uint64_t conv) : conv_(conv) {}

    void add(const client::Deliver& d, bool live) {
        ++copies_[d.seq()];
        (live ? live_ : paged_) += 1;
        auto [it, inserted] = by_seq_.emplace(d.seq(), d);
        if (!inserted) {
            ++duplicates_;
            if (it->second.msg_id() != d.msg_id() || it->second.text() != d.text() ||
                it->second.client_msg_id() != d.client_msg_id()) {
                conflicts_.push_back("seq " + std::to_string(d.seq()) + ": " + it->second.ShortDebugString() + " vs " +
                                     d.ShortDebugString());
            }
        }
    }

    // Absorbs the live Delivers of this conversation that already arrived on c.
    std::size_t pump(RawClient& c) {
        std::size_t n = 0;
        while (auto e = c.wait_for([this](const Envelope& f) { return is_deliver_of(f, conv_); }, 0ms)) {
            add(e->deliver(), true);
            ++n;
        }
        return n;
    }

    // Absorbs live Delivers until pred() holds; false at the deadline (or when c closed).
    bool wait_live(RawClient& c, const std::function<bool()>& pred, Clock::time_point deadline) {
        pump(c);
        while (!pred()) {
            auto e = c.wait_for([this](const Envelope& f) { return is_deliver_of(f, conv_); }, left(deadline));
            if (!e) return pred();
            add(e->deliver(), true);
        }
        return true;
    }

    struct SyncStats {
        int pages = 0;
        std::size_t messages = 0;
        std::size_t max_page = 0;
        std::size_t max_frame_bytes = 0;
        bool ok = false;
        std::string error;
    };

    // One forward page: SyncMessages{after_seq, limit}. Returns the MessagePage envelope.
    static std::optional<Envelope> request_page(RawClient& c, std::uint64_t conv, std::uint64_t after, std::uint32_t limit,
                                                std::string* error, std::chrono::milliseconds timeout = 10s) {
        Envelope req;
        req.set_request_id(c.next_request_id());
        req.mutable_sync_messages()->set_conversation_id(conv);
        req.mutable_sync_messages()->set_after_seq(after);
        req.mutable_sync_messages()->set_limit(limit);
        const auto rid = req.request_id();
        c.send(req);
        auto res = c.wait_for([rid](const Envelope& e) { return e.request_id() == rid; }, timeout);
        if (!res) {
            *error = "no answer to SyncMessages(after " + std::to_string(after) + ")";
            return std::nullopt;
        }
        if (!res->has_message_page() || res->message_page().code() != client::ERROR_NONE) {
            *error = "SyncMessages(after " + std::to_string(after) + ") answered " + res->ShortDebugString();
            return std::nullopt;
        }
        return res;
    }

    // Adds one page, checking it is ascending and contiguous right after `after`.
    bool add_page(const Envelope& page_env, std::uint64_t after, SyncStats& st) {
        const auto& page = page_env.message_page();
        ++st.pages;
        st.max_page = std::max<std::size_t>(st.max_page, static_cast<std::size_t>(page.messages_size()));
        st.max_frame_bytes = std::max(st.max_frame_bytes, page_env.ByteSizeLong());
        std::uint64_t expect = after + 1;
        for (const auto& d : page.messages()) {
            if (d.seq() != expect || d.conversation_id() != conv_) {
                st.error = "page after " + std::to_string(after) + " is not contiguous: got seq " + std::to_string(d.seq()) +
                           " (conv " + std::to_string(d.conversation_id()) + "), expected " + std::to_string(expect);
                return false;
            }
            ++expect;
            add(d, false);
            ++st.messages;
        }
        return true;
    }

    // Pulls pages after `after` until has_more is false.
    SyncStats sync(RawClient& c, std::uint64_t after, std::uint32_t limit = 0, Clock::time_point deadline = Clock::now() + 30s) {
        SyncStats st;
        for (;;) {
            if (Clock::now() > deadline) {
                st.error = "sync did not finish in time";
                return st;
            }
            auto page = request_page(c, conv_, after, limit, &st.error);
            if (!page) return st;
            if (!add_page(*page, after, st)) return st;
            const auto& p = page->message_page();
            if (!p.has_more()) break;
            if (p.messages_size() == 0) {
                st.error = "empty page with has_more after " + std::to_string(after);
                return st;
            }
            after = p.messages(p.messages_size() - 1).seq();
        }
        st.ok = true;
        return st;
    }

    std::uint64_t contiguous() const {
        std::uint64_t s = 0;
        while (by_seq_.count(s + 1) != 0) ++s;
        return s;
    }
    // Holds exactly the seqs 1..n.
    bool complete(std::uint64_t n) const { return by_seq_.size() == n && contiguous() == n; }
    std::size_t size() const { return by_seq_.size(); }
    std::size_t duplicates() const { return duplicates_; }
    std::size_t live() const { return live_; }
    std::size_t paged() const { return paged_; }
    const std::map<std::uint64_t, client::Deliver>& by_seq() const { return by_seq_; }
    const std::vector<std::string>& conflicts() const { return conflicts_; }
    std::uint64_t copies(std::uint64_t seq) const {
        auto it = copies_.find(seq);
        return it == copies_.end() ? 0 : it->second;
    }
    // "missing: 3 7-9; extra: 201" for failure messages.
    std::string gaps(std::uint64_t n) const {
        std::ostringstream o;
        o << "have " << by_seq_.size() << " distinct seqs (contiguous to " << contiguous() << ")";
        std::vector<std::uint64_t> missing;
        for (std::uint64_t s = 1; s <= n; ++s) {
            if (by_seq_.count(s) == 0) missing.push_back(s);
        }
        if (!missing.empty()) {
            o << "; missing " << missing.size() << ":";
            for (std::size_t i = 0; i < missing.size() && i < 40; ++i) o << " " << missing[i];
        }
        for (const auto& [s, d] : by_seq_) {
            if (s == 0 || s > n) o << "; unexpected seq " << s;
        }
        return o.str();
    }

private:
    std::uint64_t conv_;
    std::map<std::uint64_t, client::Deliver> by_seq_;
    std::map<std::uint64_t, std::uint64_t> copies_;
    std::size_t duplicates_ = 0, live_ = 0, paged_ = 0;
    std::vector<std::string> conflicts_;
};

// ------------------------------------------------------------------------------ small requests
inline std::optional<client::ConversationList> sync_conversations(RawClient& c, std::uint64_t cursor,
                                                                  std::chrono::milliseconds timeout = 10s) {
    Envelope req;
    req.set_request_id(c.next_request_id());
    req.mutable_sync_conversations()->set_cursor(cursor);
    const auto rid = req.request_id();
    c.send(req);
    auto res = c.wait_for([rid](const Envelope& e) { return e.request_id() == rid; }, timeout);
    if (!res || !res->has_conversation_list()) {
        ADD_FAILURE() << "SyncConversations answered " << (res ? res->ShortDebugString() : std::string("nothing"));
        return std::nullopt;
    }
    return res->conversation_list();
}

inline std::optional<client::ConversationInfo> find_conversation(const client::ConversationList& list, std::uint64_t conv) {
    for (const auto& c : list.conversations()) {
        if (c.conversation_id() == conv) return c;
    }
    return std::nullopt;
}

inline void send_receipt(RawClient& c, std::uint64_t conv, client::ReceiptKind kind, std::uint64_t up_to) {
    Envelope rc;
    rc.set_request_id(c.next_request_id());
    rc.mutable_receipt()->set_conversation_id(conv);
    rc.mutable_receipt()->set_kind(kind);
    rc.mutable_receipt()->set_up_to_seq(up_to);
    c.send(rc);
}

// Sends one Send exactly as given and waits for its SendResult.
inline std::optional<client::SendResult> send_and_wait(RawClient& c, const Envelope& env, std::chrono::milliseconds timeout = 10s) {
    const auto rid = env.request_id();
    c.send(env);
    auto res = c.wait_for([rid](const Envelope& e) { return e.request_id() == rid && e.has_send_result(); }, timeout);
    if (!res) return std::nullopt;
    return res->send_result();
}

inline Envelope make_send(RawClient& c, std::uint64_t peer, const std::string& cmid, const std::string& text,
                          std::uint64_t stream_seq, std::uint64_t stream_acked) {
    Envelope env;
    env.set_request_id(c.next_request_id());
    auto* s = env.mutable_send();
    s->set_peer_user_id(peer);
    s->set_client_msg_id(cmid);
    s->set_stream_seq(stream_seq);
    s->set_stream_acked(stream_acked);
    s->set_type(client::TEXT);
    s->set_text(text);
    return env;
}

// Every Deliver frame (consumed or not) this client received for conv, in arrival order.
inline std::vector<client::Deliver> delivers_seen(const RawClient& c, std::uint64_t conv) {
    std::vector<client::Deliver> out;
    for (const auto& e : c.all_frames()) {
        if (is_deliver_of(e, conv)) out.push_back(e.deliver());
    }
    return out;
}

// --------------------------------------------------------------------------------- SQL checks
struct StoredRow {
    std::uint64_t seq = 0, msg_id = 0, sender = 0;
    std::string cmid, body;
};

inline std::vector<StoredRow> stored_rows(Cluster& cl, std::uint64_t conv) {
    auto& st = cl.db().db().prepare(
        "SELECT seq, msg_id, sender_id, client_msg_id, body FROM messages WHERE conversation_id = ? ORDER BY seq");
    st.setUInt64(1, conv);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    std::vector<StoredRow> out;
    while (rs->next()) {
        out.push_back(StoredRow{rs->getUInt64(1), rs->getUInt64(2), rs->getUInt64(3), rs->getString(4).asStdString(),
                                rs->getString(5).asStdString()});
    }
    return out;
}

inline std::uint64_t rows_with_cmid(Cluster& cl, std::uint64_t sender, const std::string& cmid) {
    auto& st = cl.db().db().prepare("SELECT COUNT(*) FROM messages WHERE sender_id = ? AND client_msg_id = ?");
    st.setUInt64(1, sender);
    st.setString(2, cmid);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    rs->next();
    return rs->getUInt64(1);
}

// A counter or gauge from a process's /metrics (Prometheus text; summed over label sets); -1 when
// the process does not answer.
inline double metric(std::uint16_t admin_port, const std::string& name) {
    try {
        HttpClient admin("127.0.0.1", admin_port);
        const auto r = admin.get("/metrics");
        if (r.status != 200) return -1;
        std::istringstream in(r.body);
        std::string line;
        double sum = 0;
        while (std::getline(in, line)) {
            if (line.rfind(name, 0) != 0) continue;
            const auto rest = line.substr(name.size());
            if (!rest.empty() && rest[0] != ' ' && rest[0] != '{') continue;
            sum += std::stod(line.substr(line.rfind(' ') + 1));
        }
        return sum;
    } catch (const std::exception&) {
        return -1;
    }
}

// The per-process logs of a cluster, for failure messages.
inline std::string log_hint(Cluster& cl) {
    return "logs: " + cl.transfer().log_file() + " and the -connector<i>.log files next to it";
}

}  // namespace im::test::msg
