// im-bench groups: G groups of M members (the token file's users, M consecutive ones per group),
// created through im-rest by their first member (after befriending the others); S members of
// each group send (closed loop: W unacknowledged per sender, or open loop at --rate messages/s in
// total) and every member's session checks every group message: fan-out deliveries/s, the time to
// each member and to the LAST member of a message (p50/p99), lost / duplicated / out-of-order.

#include <atomic>
#include <deque>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>

#include "bench_common.hpp"

namespace imbench {

namespace {

using namespace std::chrono_literals;

struct GroupStats : SessionCounters {
    Samples ttd, ttl, sent_ack;  // to each member, to the last member, SendResult
    std::uint64_t deliveries = 0, deliveries_in_window = 0, foreign = 0;
};

// One group message on its way: how many members have it.
struct InFlight {
    std::int64_t stamp = 0;
    std::uint64_t received = 0;
    std::int64_t last_ns = 0;  // when the latest member got it
    bool acked = false;
};

struct Group {
    std::uint64_t id = 0;
    std::vector<std::uint64_t> member_ids;
    std::map<std::uint64_t, std::size_t> sender_index;  // user id -> sender slot (read-only)
    std::mutex mu;                                      // messages
    std::map<std::pair<std::size_t, std::uint64_t>, InFlight> messages;  // (sender, stream)
};

struct Member {
    Session* session = nullptr;
    Group* group = nullptr;
    std::size_t worker = 0;
    std::uint64_t user_id = 0;
    // sending (senders only)
    bool sender = false;
    std::size_t slot = 0;
    std::uint64_t next_stream = 1;
    std::uint64_t stream_acked = 0;
    std::deque<std::pair<std::uint64_t, std::int64_t>> unacked;  // (stream, stamp)
    std::uint64_t scheduled = 0;
    double phase = 0;  // open loop: offset within the interval, senders spread evenly (see pairs)
    // receiving: the last stream number seen from each sender slot
    std::vector<std::uint64_t> last_stream;
    std::uint64_t max_seq = 0;
    bool receipt_due = false;
};

class GroupsRun final : public SessionHandler {
  public:
    GroupsRun(const Options& o, Workers& workers)
        : o_(o),
          workers_(workers),
          stats_(workers.size()),
          scratch_(workers.size()),
          ticks_(workers.size()),
          by_worker_(workers.size()) {
        payload_.assign(static_cast<std::size_t>(o.size), 'x');
        nonce_ = random_nonce();
    }

    std::atomic<std::int64_t> measure_start{std::numeric_limits<std::int64_t>::max()};
    std::atomic<std::int64_t> measure_end{std::numeric_limits<std::int64_t>::max()};
    std::atomic<std::uint64_t> logged_in{0}, login_failed{0};
    std::mutex mu;
    std::string login_error;

    std::uint32_t nonce() const { return nonce_; }
    std::vector<std::unique_ptr<Group>>& groups() { return groups_; }

    void build(const std::vector<BenchUser>& users, const std::vector<tcp::endpoint>& targets) {
        const std::size_t m = static_cast<std::size_t>(o_.members);
        members_.resize(groups_.size() * m);
        for (std::size_t g = 0; g < groups_.size(); ++g) {
            for (std::size_t j = 0; j < m; ++j) {
                const std::size_t i = g * m + j;
                Member& mem = members_[i];
                mem.group = groups_[g].get();
                mem.worker = i % workers_.size();
                mem.user_id = users[i].user_id;
                mem.sender = j < o_.senders;
                mem.slot = j;
                if (mem.sender)
                    mem.phase = static_cast<double>(g * o_.senders + j) / static_cast<double>(groups_.size() * o_.senders);
                mem.last_stream.assign(static_cast<std::size_t>(o_.senders), 0);
                sessions_.push_back(std::make_unique<Session>(workers_.at(mem.worker), *this, i));
                mem.session = sessions_.back().get();
                by_worker_[mem.worker].push_back(&mem);
            }
        }
        for (std::size_t i = 0; i < members_.size(); ++i) {
            // Members spread over the connectors: the fan-out crosses them.
            const auto& ep = targets[i % targets.size()];
            asio::post(workers_.at(members_[i].worker).io(), [this, i, ep, token = users[i].token] {
                members_[i].session->start(ep, source_for(o_, i, ep), token, "bench");
            });
        }
    }

    void prepare_sending() {
        open_start_ns_ = now_ns();
        const double senders = static_cast<double>(groups_.size() * o_.senders);
        interval_ns_ = o_.rate > 0 ? senders / o_.rate * 1e9 : 1;
    }
    void start_sending(std::size_t w) {
        sending_ = true;
        if (o_.rate > 0) {
            ticks_[w] = std::make_unique<asio::steady_timer>(workers_.at(w).io());
            tick(w);
        } else {
            for (auto* m : by_worker_[w])
                if (m->sender) top_up(*m, w);
        }
    }
    void stop_sending(std::size_t w) {
        sending_ = false;
        if (ticks_[w]) ticks_[w]->cancel();
    }
    void close_all(std::size_t w) {
        closing_ = true;
        for (auto* m : by_worker_[w])
            m->session->close();
    }
    // Messages not yet acknowledged or not yet at every member (any thread).
    std::uint64_t outstanding() {
        std::uint64_t n = 0;
        for (auto& g : groups_) {
            std::lock_guard lock(g->mu);
            n += g->messages.size();
        }
        return n;
    }
    // After the run: member deliveries of acknowledged messages that never came.
    std::uint64_t lost(std::uint64_t& groups_with_loss) {
        std::uint64_t n = 0;
        std::map<std::uint64_t, bool> any;
        const std::uint64_t others = o_.members - 1;
        for (auto& g : groups_) {
            std::lock_guard lock(g->mu);
            for (const auto& [key, f] : g->messages) {
                if (f.acked && f.received < others) {
                    n += others - f.received;
                    any[g->id] = true;
                }
            }
        }
        groups_with_loss = any.size();
        return n;
    }
    GroupStats merged() {
        GroupStats s;
        for (auto& x : stats_) {
            s.ttd.merge(x.ttd);
            s.ttl.merge(x.ttl);
            s.sent_ack.merge(x.sent_ack);
            s.deliveries += x.deliveries;
            s.deliveries_in_window += x.deliveries_in_window;
            s.foreign += x.foreign;
            s.add(x);
        }
        return s;
    }

    void on_login(Session&, bool ok, const std::string& error) override {
        if (ok) {
            ++logged_in;
            return;
        }
        std::lock_guard lock(mu);
        if (login_error.empty()) login_error = error;
        ++login_failed;
    }

    void on_closed(Session& s, const std::string& why) override {
        if (closing_) return;
        auto& st = stats_[members_[s.index()].worker];
        ++st.closed;
        st.note("session closed: " + why);
    }

    void on_envelope(Session& s, const pb::Envelope& env) override {
        Member& m = members_[s.index()];
        GroupStats& st = stats_[m.worker];
        switch (env.body_case()) {
            case pb::Envelope::kSendResult:
                on_send_result(m, st, env.request_id(), env.send_result());
                break;
            case pb::Envelope::kDeliver:
                on_deliver(m, st, env.deliver());
                break;
            default:
                st.count_control(env);  // SyncHint, Kick, Error; Pong, receipts, presence, typing ignored
                break;
        }
    }

    void on_batch_end(Session& s) override {
        Member& m = members_[s.index()];
        if (!m.receipt_due) return;
        m.receipt_due = false;
        auto& env = scratch_[m.worker];
        env.Clear();
        auto* r = env.mutable_receipt();
        r->set_conversation_id(m.group->id);
        r->set_kind(pb::DELIVERED);
        r->set_up_to_seq(m.max_seq);
        s.send(env);
        ++stats_[m.worker].receipts_sent;
    }

  private:
    bool in_window(std::int64_t stamp) const {
        return stamp >= measure_start.load(std::memory_order_relaxed) &&
               stamp < measure_end.load(std::memory_order_relaxed);
    }

    void send_one(Member& m, std::size_t w, std::int64_t stamp) {
        {
            std::lock_guard lock(m.group->mu);
            m.group->messages[{m.slot, m.next_stream}] = InFlight{stamp, 0, 0, false};
        }
        auto& env = scratch_[w];
        env.Clear();
        env.set_request_id(kSendRequestBase + m.next_stream);
        auto* s = env.mutable_send();
        s->set_group_id(m.group->id);
        encode_msg_id(*s->mutable_client_msg_id(), stamp, m.next_stream, nonce_);
        s->set_stream_seq(m.next_stream);
        s->set_type(pb::TEXT);
        s->set_text(payload_);
        s->set_stream_acked(m.stream_acked);
        m.unacked.emplace_back(m.next_stream, stamp);
        ++m.next_stream;
        ++stats_[w].sent;
        m.session->send(env);
    }

    void top_up(Member& m, std::size_t w) {
        while (sending_ && m.unacked.size() < o_.window && !m.session->closed())
            send_one(m, w, now_ns());
    }

    void tick(std::size_t w) {
        if (!sending_) return;
        const double due = static_cast<double>(now_ns() - open_start_ns_) / interval_ns_;
        for (auto* m : by_worker_[w]) {
            if (!m->sender) continue;
            while (static_cast<double>(m->scheduled) + m->phase < due && m->unacked.size() < o_.window &&
                   !m->session->closed()) {
                // The clock starts at the scheduled time (no coordinated omission).
                const auto stamp =
                    open_start_ns_ +
                    static_cast<std::int64_t>((static_cast<double>(m->scheduled) + m->phase) * interval_ns_);
                send_one(*m, w, stamp);
                ++m->scheduled;
            }
        }
        ticks_[w]->expires_after(200us);
        ticks_[w]->async_wait([this, w](const boost::system::error_code& ec) {
            if (!ec) tick(w);
        });
    }

    void on_send_result(Member& m, GroupStats& st, std::uint64_t request_id,
                        const pb::SendResult& r) {
        if (request_id < kSendRequestBase) return;
        const std::uint64_t stream = request_id - kSendRequestBase;
        auto it = m.unacked.begin();
        while (it != m.unacked.end() && it->first != stream)
            ++it;
        if (it == m.unacked.end()) return;
        const auto stamp = it->second;
        m.unacked.erase(it);
        {
            std::lock_guard lock(m.group->mu);
            auto f = m.group->messages.find({m.slot, stream});
            if (r.code() != pb::ERROR_NONE) {
                if (f != m.group->messages.end()) m.group->messages.erase(f);
            } else if (f != m.group->messages.end()) {
                f->second.acked = true;
                // Every member had it before our SendResult came: complete now.
                if (f->second.received >= o_.members - 1) {
                    if (in_window(stamp)) st.ttl.add(f->second.last_ns - stamp);
                    m.group->messages.erase(f);
                }
            }
        }
        if (r.code() != pb::ERROR_NONE) {
            ++st.send_errors;
            if (st.first_error.empty())
                st.first_error = "send failed: " + pb::ErrorCode_Name(r.code()) + " " + r.message();
            return;
        }
        ++st.acked;
        m.stream_acked = std::max(m.stream_acked, stream);
        if (in_window(stamp)) st.sent_ack.add(now_ns() - stamp);
        if (o_.rate <= 0) top_up(m, m.worker);
    }

    void on_deliver(Member& m, GroupStats& st, const pb::Deliver& d) {
        std::int64_t stamp = 0;
        std::uint64_t stream = 0;
        std::uint32_t nonce = 0;
        if (d.conversation_id() != m.group->id) return;
        m.max_seq = std::max(m.max_seq, d.seq());
        m.receipt_due = true;
        if (d.type() != pb::TEXT || d.sender_user_id() == m.user_id ||
            !decode_msg_id(d.client_msg_id(), stamp, stream, nonce) || nonce != nonce_) {
            ++st.foreign;  // system messages, my own, an earlier run's
            return;
        }
        const auto slot_it = m.group->sender_index.find(d.sender_user_id());
        if (slot_it == m.group->sender_index.end()) return;
        const std::size_t slot = slot_it->second;
        auto& last = m.last_stream[slot];
        if (stream <= last) {
            ++st.duplicates;
            return;
        }
        if (stream != last + 1) ++st.out_of_order;
        last = stream;
        ++st.deliveries;
        const auto now = now_ns();
        if (now >= measure_start.load(std::memory_order_relaxed) &&
            now < measure_end.load(std::memory_order_relaxed))
            ++st.deliveries_in_window;
        if (in_window(stamp)) st.ttd.add(now - stamp);
        std::lock_guard lock(m.group->mu);
        auto f = m.group->messages.find({slot, stream});
        if (f == m.group->messages.end()) return;
        f->second.last_ns = now;
        if (++f->second.received >= o_.members - 1 && f->second.acked) {
            if (in_window(stamp)) st.ttl.add(now - stamp);
            m.group->messages.erase(f);
        }
    }

    const Options& o_;
    Workers& workers_;
    std::vector<GroupStats> stats_;
    std::vector<pb::Envelope> scratch_;
    std::vector<std::unique_ptr<asio::steady_timer>> ticks_;
    std::vector<std::vector<Member*>> by_worker_;
    std::vector<std::unique_ptr<Group>> groups_;
    std::vector<Member> members_;
    std::vector<std::unique_ptr<Session>> sessions_;
    std::string payload_;
    std::uint32_t nonce_ = 0;
    std::atomic<bool> sending_{false};
    std::atomic<bool> closing_{false};
    std::int64_t open_start_ns_ = 0;
    double interval_ns_ = 1;
};

}  // namespace

int run_groups(const Options& o) {
    raise_fd_limit();
    if (o.groups == 0 || o.members < 2 || o.senders == 0 || o.senders > o.members ||
        o.window == 0) {
        std::cerr << "im-bench: groups needs --groups G >= 1, --members M >= 2, "
                     "1 <= --senders S <= M and --window W >= 1\n";
        return 2;
    }
    std::vector<BenchUser> users;
    std::vector<std::string> connectors;
    if (!load_users(o, o.groups * o.members, users, connectors)) return 2;
    std::vector<tcp::endpoint> targets;
    if (!resolve_connectors(connectors, targets)) return 2;

    Workers workers(o.threads);
    GroupsRun run(o, workers);
    // Set-up through im-rest: the first member of each group befriends the others (members must
    // be the creator's friends) and creates the group.
    const auto m = static_cast<std::size_t>(o.members);
    const auto t_setup = now_ns();
    auto& groups = run.groups();
    for (std::uint64_t g = 0; g < o.groups; ++g) {
        auto grp = std::make_unique<Group>();
        for (std::size_t j = 0; j < m; ++j)
            grp->member_ids.push_back(users[g * m + j].user_id);
        for (std::size_t j = 0; j < o.senders; ++j)
            grp->sender_index[grp->member_ids[j]] = j;
        groups.push_back(std::move(grp));
    }
    const bool set_up =
        parallel_rest(o.rest, o.groups, o.rest_threads, [&](HttpConnection& c, std::uint64_t g) {
            const BenchUser& owner = users[g * m];
            for (std::size_t j = 1; j < m; ++j)
                if (!befriend(c, owner, users[g * m + j])) return false;
            std::vector<std::uint64_t> others(groups[g]->member_ids.begin() + 1,
                                              groups[g]->member_ids.end());
            groups[g]->id = create_group(
                c, owner, "bench-" + std::to_string(run.nonce()) + "-" + std::to_string(g), others);
            return groups[g]->id != 0;
        });
    if (!set_up) return 1;
    const double setup_s = seconds_between(t_setup, now_ns());

    workers.start();
    run.build(users, targets);
    const auto n = o.groups * o.members;
    if (!wait_until([&] { return run.logged_in + run.login_failed >= n; }, 60) ||
        run.login_failed > 0) {
        std::cerr << "im-bench: " << run.logged_in << "/" << n
                  << " sessions logged in; first error: " << run.login_error << "\n";
        workers.stop();
        return 1;
    }

    CpuMeter cpu(find_watched_processes(o.watch_dirs));
    run.prepare_sending();
    workers.run_on_all([&](std::size_t w) { run.start_sending(w); });
    sleep_s(o.warmup_s);
    const auto t0 = now_ns();
    run.measure_start = t0;
    cpu.start();
    sleep_s(o.duration_s);
    const auto t1 = now_ns();
    run.measure_end = t1;
    cpu.stop();
    workers.run_on_all([&](std::size_t w) { run.stop_sending(w); });

    // Drain: every message acknowledged and at every member, or the drain time is over.
    std::uint64_t left = 0;
    const bool drained = wait_until(
        [&] {
            left = run.outstanding();
            return left == 0;
        },
        o.drain_s, 50ms);
    std::uint64_t groups_with_loss = 0;
    const std::uint64_t lost = run.lost(groups_with_loss);
    workers.run_on_all([&](std::size_t w) { run.close_all(w); });
    workers.stop();

    auto s = run.merged();
    const double interval = seconds_between(t0, t1);
    Report r(o.rate > 0 ? "groups-open" : "groups");
    add_common(r, o, connectors);
    r.add("groups", o.groups);
    r.add("members", o.members);
    r.add("senders_per_group", o.senders);
    r.add("window", o.window);
    r.add("size_bytes", o.size);
    r.add("rate_target_msgs_s", o.rate, 0);
    r.add("setup_s", setup_s, 2);
    r.add("warmup_s", o.warmup_s, 1);
    r.add("duration_s", interval, 2);
    r.add("acked_msgs_s", static_cast<double>(s.sent_ack.size()) / interval, 0);
    r.add("fanout_deliveries_s", static_cast<double>(s.deliveries_in_window) / interval, 0);
    r.add_latency("ttd", s.ttd, {50, 99});
    r.add_latency("ttd_last_member", s.ttl, {50, 90, 99, 99.9});
    r.add_latency("sent_ack", s.sent_ack, {50, 99});
    r.add("sent", s.sent);
    r.add("acked", s.acked);
    r.add("deliveries", s.deliveries);
    // Lost: a member never got an acknowledged (SENT) message. Per member: counted once per
    // (message, member).
    r.add("lost", lost);
    r.add("groups_with_loss", groups_with_loss);
    r.add("duplicated", s.duplicates);
    r.add("out_of_order", s.out_of_order);
    r.add("send_errors", s.send_errors);
    r.add("receipts_sent", s.receipts_sent);
    r.add("sync_hints", s.sync_hints);
    r.add("sessions_closed", s.closed + s.kicks);
    r.add("drained", drained ? 1 : 0);
    r.add("outstanding_after_drain", left);
    if (!s.first_error.empty()) r.add_text("first_error", s.first_error);
    r.add_cpu(cpu, interval);
    if (!r.emit(o.json_out)) return 1;
    const bool clean = drained && lost == 0 && s.duplicates == 0 && s.out_of_order == 0 &&
                       s.send_errors == 0 && s.closed == 0 && s.kicks == 0;
    return clean ? 0 : 1;
}

}  // namespace imbench
