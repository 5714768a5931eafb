#include "modes.hpp"

#include <sys/resource.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <iostream>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "bench_common.hpp"
#include "flood.hpp"
#include "im/wire/ids.hpp"
#include "session.hpp"

namespace imbench {

namespace {

using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// A fleet of sessions started with bounded concurrency, used by idle and login.

class Fleet final : public SessionHandler {
  public:
    Fleet(Workers& workers, const Options& o, std::vector<tcp::endpoint> targets)
        : workers_(workers), o_(o), targets_(std::move(targets)) {}

    // Starts one session per token on workers round-robin, at most `concurrency` logging in at
    // once. devices[i] is the device of tokens[i] (a token is bound to its device).
    void launch(const std::vector<std::string>& tokens, const std::vector<std::string>& devices,
                std::uint64_t concurrency) {
        tokens_ = tokens;
        devices_ = devices;
        const std::size_t n = tokens.size();
        sessions_.resize(n);
        started_ns_.assign(n, 0);
        login_ns_.assign(n, 0);
        for (std::size_t i = 0; i < n; ++i)
            sessions_[i] = std::make_unique<Session>(workers_.at(i), *this, i);
        // Each worker launches its own share; per-worker concurrency = total / workers.
        const std::size_t w = workers_.size();
        per_worker_limit_ = std::max<std::uint64_t>(1, concurrency / w);
        next_.assign(w, 0);
        for (std::size_t k = 0; k < w; ++k) {
            asio::post(workers_.at(k).io(), [this, k] {
                for (std::uint64_t j = 0; j < per_worker_limit_; ++j)
                    launch_next(k);
            });
        }
    }

    std::uint64_t ok() const { return ok_.load(); }
    std::uint64_t failed() const { return failed_.load(); }
    std::uint64_t done() const { return ok_.load() + failed_.load(); }
    std::uint64_t closed_after_login() const { return closed_.load(); }
    std::string first_error() {
        std::lock_guard lock(mu_);
        return first_error_;
    }
    void latencies(Samples& out) const {
        for (std::size_t i = 0; i < login_ns_.size(); ++i)
            if (login_ns_[i] > 0) out.add(login_ns_[i] - started_ns_[i]);
    }
    std::int64_t last_login_ns() const { return last_login_ns_.load(); }
    void close_all() {
        workers_.run_on_all([this](std::size_t k) {
            for (std::size_t i = k; i < sessions_.size(); i += workers_.size())
                if (sessions_[i]) sessions_[i]->close();
        });
    }

    void on_login(Session& s, bool ok, const std::string& error) override {
        const auto i = s.index();
        if (ok) {
            login_ns_[i] = now_ns();
            auto prev = last_login_ns_.load();
            while (prev < login_ns_[i] &&
                   !last_login_ns_.compare_exchange_weak(prev, login_ns_[i])) {
            }
            ++ok_;
        } else {
            {
                std::lock_guard lock(mu_);
                if (first_error_.empty()) first_error_ = error;
            }
            ++failed_;
        }
        launch_next(i % workers_.size());
    }
    void on_envelope(Session&, const pb::Envelope&) override {}
    void on_closed(Session&, const std::string& why) override {
        if (closing_) return;
        ++closed_;
        std::lock_guard lock(mu_);
        if (first_error_.empty()) first_error_ = "closed after login: " + why;
    }
    void set_closing() { closing_ = true; }

  private:
    void launch_next(std::size_t k) {
        const std::size_t w = workers_.size();
        const std::size_t i = k + next_[k] * w;
        if (i >= sessions_.size()) return;
        ++next_[k];
        const auto& ep = targets_[i % targets_.size()];
        started_ns_[i] = now_ns();
        sessions_[i]->start(ep, source_for(o_, i, ep), tokens_[i], devices_[i]);
    }

    Workers& workers_;
    const Options& o_;
    std::vector<tcp::endpoint> targets_;
    std::vector<std::string> tokens_;
    std::vector<std::string> devices_;
    std::vector<std::unique_ptr<Session>> sessions_;
    std::vector<std::int64_t> started_ns_, login_ns_;
    std::vector<std::size_t> next_;
    std::uint64_t per_worker_limit_ = 1;
    std::atomic<std::uint64_t> ok_{0}, failed_{0}, closed_{0};
    std::atomic<std::int64_t> last_login_ns_{0};
    std::atomic<bool> closing_{false};
    std::mutex mu_;
    std::string first_error_;
};

// ---------------------------------------------------------------------------------------------
// pairs

struct PendingSend {
    std::uint64_t stream = 0;
    std::int64_t stamp = 0;
};

struct Stats : SessionCounters {
    Samples ttd, sent_ack, receipt;
    Samples ttd_b;  // isolation: sent during the second window (the flood)
    std::uint64_t received_in_b = 0;
    std::uint64_t received = 0, received_in_window = 0;
};

struct End {
    Session* session = nullptr;
    End* peer = nullptr;
    std::size_t worker = 0;
    std::uint64_t peer_user_id = 0;
    std::uint64_t conversation = 0;
    // sending
    std::uint64_t next_stream = 1;
    std::uint64_t stream_acked = 0;
    std::uint64_t inflight = 0;  // sent and not yet received by the peer
    std::deque<PendingSend> unacked;
    std::deque<std::pair<std::uint64_t, std::int64_t>> awaiting_receipt;  // (seq, stamp)
    std::uint64_t peer_delivered = 0;
    std::uint64_t scheduled = 0;  // open loop: messages scheduled so far
    // Open loop: this sender's offset within its interval, in intervals. The senders are spread
    // evenly over it, so the total is a steady R messages/s rather than 2P sends at the same
    // instant once per interval (a burst that measured the burst, not the rate).
    double phase = 0;
    // receiving
    std::uint64_t last_stream_received = 0;
    std::uint64_t max_seq = 0;
    bool receipt_due = false;
};

class PairsRun final : public SessionHandler {
  public:
    PairsRun(const Options& o, Workers& workers)
        : o_(o), workers_(workers), stats_(workers.size()) {
        payload_.assign(static_cast<std::size_t>(o.size), 'x');
        nonce_ = random_nonce();
        scratch_.resize(workers.size());
        ticks_.resize(workers.size());
        ends_by_worker_.resize(workers.size());
    }

    std::atomic<std::int64_t> measure_start{std::numeric_limits<std::int64_t>::max()};
    std::atomic<std::int64_t> measure_end{std::numeric_limits<std::int64_t>::max()};
    // isolation: a second measuring window (while the flood runs), reported apart.
    std::atomic<std::int64_t> b_start{std::numeric_limits<std::int64_t>::max()};
    std::atomic<std::int64_t> b_end{std::numeric_limits<std::int64_t>::max()};
    std::atomic<std::uint64_t> logged_in{0}, login_failed{0};
    std::string login_error;
    std::mutex mu;

    void build(const std::vector<BenchUser>& users, const std::vector<tcp::endpoint>& targets) {
        const std::size_t pairs = static_cast<std::size_t>(o_.pairs);
        ends_.resize(2 * pairs);
        for (std::size_t k = 0; k < pairs; ++k) {
            const std::size_t w = k % workers_.size();
            for (std::size_t side = 0; side < 2; ++side) {
                auto& e = ends_[2 * k + side];
                const auto& me = users[2 * k + side];
                const auto& other = users[2 * k + 1 - side];
                e.worker = w;
                e.phase = static_cast<double>(2 * k + side) / static_cast<double>(2 * pairs);
                e.peer = &ends_[2 * k + 1 - side];
                e.peer_user_id = other.user_id;
                e.conversation = im::conversation_id(me.user_id, other.user_id);
                sessions_.push_back(std::make_unique<Session>(workers_.at(w), *this, 2 * k + side));
                e.session = sessions_.back().get();
                ends_by_worker_[w].push_back(&e);
            }
        }
        for (std::size_t i = 0; i < ends_.size(); ++i) {
            const auto& ep =
                targets[(i % 2) % targets.size()];  // the two ends on different connectors
            asio::post(workers_.at(ends_[i].worker).io(), [this, i, ep, token = users[i].token] {
                ends_[i].session->start(ep, source_for(o_, i, ep), token, "bench");
            });
        }
    }

    // Worker threads: starts sending (closed loop: W per sender; open loop: the pacing timer).
    // Called once before start_sending on the workers.
    void prepare_sending() {
        open_start_ns_ = now_ns();
        interval_ns_ = o_.rate > 0 ? static_cast<double>(2 * o_.pairs) / o_.rate * 1e9 : 1;
    }
    void start_sending(std::size_t w) {
        sending_ = true;
        if (o_.rate > 0) {
            ticks_[w] = std::make_unique<asio::steady_timer>(workers_.at(w).io());
            tick(w);
        } else {
            for (auto* e : ends_by_worker_[w])
                top_up(*e, w);
        }
    }
    void stop_sending(std::size_t w) {
        sending_ = false;
        if (ticks_[w]) ticks_[w]->cancel();
    }
    // In flight anywhere on worker w (sent and not received, or not acked, or receipt pending).
    std::uint64_t outstanding(std::size_t w) const {
        std::uint64_t n = 0;
        for (const auto* e : ends_by_worker_[w])
            n += e->inflight + e->unacked.size() + e->awaiting_receipt.size();
        return n;
    }
    void close_all(std::size_t w) {
        closing_ = true;
        for (auto* e : ends_by_worker_[w])
            e->session->close();
    }
    Stats merged() {
        Stats s;
        for (auto& x : stats_) {
            s.ttd.merge(x.ttd);
            s.ttd_b.merge(x.ttd_b);
            s.received_in_b += x.received_in_b;
            s.sent_ack.merge(x.sent_ack);
            s.receipt.merge(x.receipt);
            s.received += x.received;
            s.received_in_window += x.received_in_window;
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
        auto& st = stats_[ends_[s.index()].worker];
        ++st.closed;
        st.note("session closed: " + why);
    }

    void on_envelope(Session& s, const pb::Envelope& env) override {
        End& e = ends_[s.index()];
        Stats& st = stats_[e.worker];
        switch (env.body_case()) {
            case pb::Envelope::kSendResult:
                on_send_result(e, st, env.request_id(), env.send_result());
                break;
            case pb::Envelope::kDeliver:
                on_deliver(e, st, env.deliver());
                break;
            case pb::Envelope::kReceiptEvent:
                on_receipt(e, st, env.receipt_event());
                break;
            default:
                st.count_control(env);  // SyncHint, Kick, Error; Pong, presence, typing ignored
                break;
        }
    }

    void on_batch_end(Session& s) override {
        End& e = ends_[s.index()];
        if (!e.receipt_due) return;
        e.receipt_due = false;
        auto& env = scratch_[e.worker];
        env.Clear();
        auto* r = env.mutable_receipt();
        r->set_conversation_id(e.conversation);
        r->set_kind(pb::DELIVERED);
        r->set_up_to_seq(e.max_seq);
        s.send(env);
        ++stats_[e.worker].receipts_sent;
    }

  private:
    bool in_window(std::int64_t stamp) const {
        return stamp >= measure_start.load(std::memory_order_relaxed) &&
               stamp < measure_end.load(std::memory_order_relaxed);
    }

    void send_one(End& e, std::size_t w, std::int64_t stamp) {
        auto& env = scratch_[w];
        env.Clear();
        env.set_request_id(kSendRequestBase + e.next_stream);
        auto* m = env.mutable_send();
        m->set_peer_user_id(e.peer_user_id);
        encode_msg_id(*m->mutable_client_msg_id(), stamp, e.next_stream, nonce_);
        m->set_stream_seq(e.next_stream);
        m->set_type(pb::TEXT);
        m->set_text(payload_);
        m->set_stream_acked(e.stream_acked);
        e.unacked.push_back({e.next_stream, stamp});
        ++e.next_stream;
        ++e.inflight;
        ++stats_[w].sent;
        e.session->send(env);
    }

    void top_up(End& e, std::size_t w) {
        while (sending_ && e.inflight < o_.window && !e.session->closed())
            send_one(e, w, now_ns());
    }

    void tick(std::size_t w) {
        if (!sending_) return;
        const auto now = now_ns();
        const double due = static_cast<double>(now - open_start_ns_) / interval_ns_;
        for (auto* e : ends_by_worker_[w]) {
            while (static_cast<double>(e->scheduled) + e->phase < due && e->inflight < o_.window &&
                   !e->session->closed()) {
                // The latency clock starts at the scheduled time, not when the send finally went
                // out: a stalled generator or server shows up as latency (no coordinated omission).
                const auto stamp =
                    open_start_ns_ +
                    static_cast<std::int64_t>((static_cast<double>(e->scheduled) + e->phase) * interval_ns_);
                send_one(*e, w, stamp);
                ++e->scheduled;
            }
        }
        ticks_[w]->expires_after(200us);
        ticks_[w]->async_wait([this, w](const boost::system::error_code& ec) {
            if (!ec) tick(w);
        });
    }

    void on_send_result(End& e, Stats& st, std::uint64_t request_id, const pb::SendResult& r) {
        if (request_id < kSendRequestBase) return;
        const std::uint64_t stream = request_id - kSendRequestBase;
        auto it = e.unacked.begin();
        while (it != e.unacked.end() && it->stream != stream)
            ++it;
        if (it == e.unacked.end()) return;  // not ours (a duplicate answer)
        const PendingSend p = *it;
        e.unacked.erase(it);
        if (r.code() != pb::ERROR_NONE) {
            ++st.send_errors;
            if (st.first_error.empty())
                st.first_error = "send failed: " + pb::ErrorCode_Name(r.code()) + " " + r.message();
            if (e.inflight > 0) --e.inflight;  // it will never arrive
            return;
        }
        ++st.acked;
        e.stream_acked = std::max(e.stream_acked, stream);
        const auto now = now_ns();
        if (in_window(p.stamp)) st.sent_ack.add(now - p.stamp);
        if (r.seq() <= e.peer_delivered) {
            if (in_window(p.stamp)) st.receipt.add(now - p.stamp);
        } else {
            e.awaiting_receipt.emplace_back(r.seq(), p.stamp);
        }
    }

    void on_deliver(End& e, Stats& st, const pb::Deliver& d) {
        std::int64_t stamp = 0;
        std::uint64_t stream = 0;
        std::uint32_t nonce = 0;
        if (d.conversation_id() != e.conversation ||
            !decode_msg_id(d.client_msg_id(), stamp, stream, nonce) || nonce != nonce_) {
            return;  // not of this run
        }
        e.max_seq = std::max(e.max_seq, d.seq());
        e.receipt_due = true;
        if (stream <= e.last_stream_received) {
            ++st.duplicates;
            return;
        }
        if (stream != e.last_stream_received + 1) ++st.out_of_order;
        e.last_stream_received = stream;
        ++st.received;
        const auto now = now_ns();
        if (now >= measure_start.load(std::memory_order_relaxed) &&
            now < measure_end.load(std::memory_order_relaxed))
            ++st.received_in_window;
        if (now >= b_start.load(std::memory_order_relaxed) && now < b_end.load(std::memory_order_relaxed))
            ++st.received_in_b;
        if (in_window(stamp)) st.ttd.add(now - stamp);
        else if (stamp >= b_start.load(std::memory_order_relaxed) && stamp < b_end.load(std::memory_order_relaxed))
            st.ttd_b.add(now - stamp);
        End& sender = *e.peer;
        if (sender.inflight > 0) --sender.inflight;
        if (o_.rate <= 0) top_up(sender, sender.worker);
    }

    void on_receipt(End& e, Stats& st, const pb::ReceiptEvent& r) {
        if (r.conversation_id() != e.conversation || r.user_id() != e.peer_user_id ||
            r.kind() != pb::DELIVERED)
            return;
        e.peer_delivered = std::max(e.peer_delivered, r.up_to_seq());
        const auto now = now_ns();
        while (!e.awaiting_receipt.empty() &&
               e.awaiting_receipt.front().first <= e.peer_delivered) {
            const auto stamp = e.awaiting_receipt.front().second;
            if (in_window(stamp)) st.receipt.add(now - stamp);
            e.awaiting_receipt.pop_front();
        }
    }

    const Options& o_;
    Workers& workers_;
    std::vector<Stats> stats_;
    std::vector<End> ends_;
    std::vector<std::unique_ptr<Session>> sessions_;
    std::vector<std::vector<End*>> ends_by_worker_;
    std::vector<pb::Envelope> scratch_;
    std::vector<std::unique_ptr<asio::steady_timer>> ticks_;
    std::string payload_;
    std::uint32_t nonce_ = 0;
    std::atomic<bool> sending_{false};
    std::atomic<bool> closing_{false};
    std::int64_t open_start_ns_ = 0;
    double interval_ns_ = 1;
};

// Waits until no worker has a message outstanding (sent and not yet received, acked and
// receipted) or drain_s is over; `left` gets what is still outstanding.
bool drain(Workers& workers, PairsRun& run, double drain_s, std::uint64_t& left) {
    return wait_until(
        [&] {
            std::atomic<std::uint64_t> sum{0};
            workers.run_on_all([&](std::size_t w) { sum += run.outstanding(w); });
            left = sum;
            return left == 0;
        },
        drain_s, 50ms);
}

}  // namespace

int run_pairs(const Options& o) {
    raise_fd_limit();
    std::vector<BenchUser> users;
    std::vector<std::string> connectors;
    if (o.pairs == 0 || o.window == 0) {
        std::cerr << "im-bench: --pairs and --window must be positive\n";
        return 2;
    }
    if (!load_users(o, 2 * o.pairs, users, connectors)) return 2;
    std::vector<tcp::endpoint> targets;
    if (!resolve_connectors(connectors, targets)) return 2;

    Workers workers(o.threads);
    PairsRun run(o, workers);
    workers.start();
    run.build(users, targets);
    const auto n = 2 * o.pairs;
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

    // Drain: everything sent is received, acked and receipted, or the drain time is over.
    std::uint64_t left = 0;
    const bool drained = drain(workers, run, o.drain_s, left);
    workers.run_on_all([&](std::size_t w) { run.close_all(w); });
    workers.stop();

    auto s = run.merged();
    const double interval = seconds_between(t0, t1);
    Report r(o.rate > 0 ? "pairs-open" : "pairs");
    add_common(r, o, connectors);
    r.add("pairs", o.pairs);
    r.add("window", o.window);
    r.add("size_bytes", o.size);
    r.add("rate_target_msgs_s", o.rate, 0);
    r.add("warmup_s", o.warmup_s, 1);
    r.add("duration_s", interval, 2);
    r.add("delivered_msgs_s", static_cast<double>(s.received_in_window) / interval, 0);
    r.add_latency("ttd", s.ttd, {50, 90, 99, 99.9});
    r.add_latency("sent_ack", s.sent_ack, {50, 99});
    r.add_latency("delivered_receipt", s.receipt, {50, 99});
    r.add("sent", s.sent);
    r.add("acked", s.acked);
    r.add("received", s.received);
    // Lost: acknowledged (SENT) and never received. Unacked sends (errors) are not "lost": the
    // sender was told; they are counted in send_errors.
    r.add("lost", s.acked > s.received ? s.acked - s.received : 0);
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
    const bool clean = drained && s.acked == s.received && s.duplicates == 0 &&
                       s.out_of_order == 0 && s.send_errors == 0 && s.closed == 0 && s.kicks == 0;
    return clean ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// isolation: the pairs' open-loop traffic measured twice in one run, without and then with one
// client flooding a connector as fast as it can (flood.hpp). The p99 time-to-delivery of the
// well-behaved pairs in both windows, side by side (docs/BENCHMARKS.md, "Isolation").

int run_isolation(const Options& o) {
    raise_fd_limit();
    if (o.pairs == 0 || o.window == 0 || o.rate <= 0) {
        std::cerr << "im-bench: isolation needs --pairs, --window and --rate (the well-behaved traffic)\n";
        return 2;
    }
    std::vector<BenchUser> users;
    std::vector<std::string> connectors;
    if (!load_users(o, 2 * o.pairs + 2, users, connectors)) return 2;
    std::vector<tcp::endpoint> targets;
    if (!resolve_connectors(connectors, targets)) return 2;

    Workers workers(o.threads);
    PairsRun run(o, workers);
    Worker flood_worker;  // a thread of its own: the flood is not slowed by the pairs' generator
    Flooder flood(flood_worker, o.flood_window, static_cast<std::size_t>(o.size), o.flood_pings);
    workers.start();
    flood_worker.start();
    run.build(users, targets);
    const auto& fu = users[2 * o.pairs];  // seeded friends: 2k and 2k+1
    const auto& ff = users[2 * o.pairs + 1];
    flood.start(targets[0], targets[1 % targets.size()], fu.token, ff.token, ff.user_id);
    const auto n = 2 * o.pairs;
    if (!wait_until([&] { return run.logged_in + run.login_failed >= n && flood.logged_in + flood.login_failed >= 2; },
                    60) ||
        run.login_failed > 0 || flood.login_failed > 0) {
        std::cerr << "im-bench: sessions did not log in; first error: " << run.login_error << " "
                  << flood.first_error() << "\n";
        flood.close();
        workers.stop();
        return 1;
    }

    run.prepare_sending();
    workers.run_on_all([&](std::size_t w) { run.start_sending(w); });
    sleep_s(o.warmup_s);
    // 1. quiet
    const auto t0 = now_ns();
    run.measure_start = t0;
    sleep_s(o.duration_s);
    const auto t1 = now_ns();
    run.measure_end = t1;
    // 2. the same traffic with the flood (after a second for it to reach full speed)
    flood.begin();
    sleep_s(1);
    const std::uint64_t f_sent0 = flood.sent, f_acked0 = flood.acked, f_limited0 = flood.rate_limited;
    const auto t2 = now_ns();
    run.b_start = t2;
    CpuMeter cpu(find_watched_processes(o.watch_dirs));
    cpu.start();
    sleep_s(o.duration_s);
    const auto t3 = now_ns();
    run.b_end = t3;
    cpu.stop();
    const std::uint64_t f_sent = flood.sent - f_sent0, f_acked = flood.acked - f_acked0,
                        f_limited = flood.rate_limited - f_limited0;
    flood.stop();
    workers.run_on_all([&](std::size_t w) { run.stop_sending(w); });
    std::uint64_t left = 0;
    const bool drained = drain(workers, run, o.drain_s, left);
    flood.close();
    workers.run_on_all([&](std::size_t w) { run.close_all(w); });
    workers.stop();
    flood_worker.stop();

    auto s = run.merged();
    const double quiet_s = seconds_between(t0, t1), flood_s = seconds_between(t2, t3);
    Report r("isolation");
    add_common(r, o, connectors);
    r.add("pairs", o.pairs);
    r.add("window", o.window);
    r.add("rate_target_msgs_s", o.rate, 0);
    r.add("duration_s", o.duration_s, 1);
    r.add("quiet_delivered_msgs_s", static_cast<double>(s.received_in_window) / quiet_s, 0);
    r.add_latency("quiet_ttd", s.ttd, {50, 99, 99.9});
    r.add("flood_delivered_msgs_s", static_cast<double>(s.received_in_b) / flood_s, 0);
    r.add_latency("flood_ttd", s.ttd_b, {50, 99, 99.9});
    const double q99 = s.ttd.percentile_us(99), f99 = s.ttd_b.percentile_us(99);
    r.add("p99_ratio_flood_quiet", q99 > 0 ? f99 / q99 : 0, 2);
    r.add("flooder_window", o.flood_window);
    r.add_text("flooder_frames", o.flood_pings ? "ping" : "send");
    r.add("flooder_sends_s", static_cast<double>(f_sent) / flood_s, 0);
    r.add("flooder_rate_limited_s", static_cast<double>(f_limited) / flood_s, 0);
    r.add("flooder_stored_s", static_cast<double>(f_acked) / flood_s, 0);
    r.add("flooder_other_errors", flood.other_errors.load());
    r.add("flooder_kicked", flood.kicked ? 1 : 0);
    r.add("sent", s.sent);
    r.add("acked", s.acked);
    r.add("received", s.received);
    r.add("lost", s.acked > s.received ? s.acked - s.received : 0);
    r.add("duplicated", s.duplicates);
    r.add("out_of_order", s.out_of_order);
    r.add("send_errors", s.send_errors);
    r.add("sessions_closed", s.closed + s.kicks);
    r.add("drained", drained ? 1 : 0);
    if (!s.first_error.empty()) r.add_text("first_error", s.first_error);
    const auto ferr = flood.first_error();
    if (!ferr.empty()) r.add_text("flooder_first_error", ferr);
    r.add_cpu(cpu, flood_s);
    if (!r.emit(o.json_out)) return 1;
    const bool clean = drained && s.acked == s.received && s.duplicates == 0 && s.out_of_order == 0 &&
                       s.send_errors == 0 && s.closed == 0 && s.kicks == 0;
    return clean ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------

int run_idle(const Options& o) {
    raise_fd_limit();
    std::vector<BenchUser> users;
    std::vector<std::string> connectors;
    if (!load_users(o, o.sessions, users, connectors)) return 2;
    std::vector<tcp::endpoint> targets;
    if (!resolve_connectors({connectors.front()}, targets)) return 2;  // all on one connector
    std::vector<std::string> tokens;
    for (std::uint64_t i = 0; i < o.sessions; ++i)
        tokens.push_back(users[i].token);

    const auto rss_before = o.connector_pid ? process_rss_bytes(o.connector_pid) : 0;
    Workers workers(o.threads);
    Fleet fleet(workers, o, targets);
    workers.start();
    const auto t0 = now_ns();
    fleet.launch(tokens, std::vector<std::string>(tokens.size(), "bench"), o.concurrency);
    const bool all = wait_until([&] { return fleet.done() >= o.sessions; }, 120, 5ms);
    const auto t_login = fleet.last_login_ns() ? fleet.last_login_ns() : now_ns();
    sleep_s(2);  // let the connector settle (registrations, first buffers released)
    const auto rss_after = o.connector_pid ? process_rss_bytes(o.connector_pid) : 0;

    CpuMeter cpu(find_watched_processes(o.watch_dirs));
    const double conn_cpu0 = o.connector_pid ? process_cpu_seconds(o.connector_pid) : 0;
    cpu.start();
    const auto i0 = now_ns();
    sleep_s(o.duration_s);
    const auto i1 = now_ns();
    cpu.stop();
    const double conn_cpu1 = o.connector_pid ? process_cpu_seconds(o.connector_pid) : 0;
    const auto alive = fleet.ok() - fleet.closed_after_login();
    fleet.set_closing();
    fleet.close_all();
    workers.stop();

    Samples lat;
    fleet.latencies(lat);
    const double idle_s = seconds_between(i0, i1);
    Report r("idle");
    add_common(r, o, {connectors.front()});
    r.add("sessions", o.sessions);
    r.add("logged_in", fleet.ok());
    r.add("login_failed", fleet.failed());
    r.add("alive_after_idle", alive);
    r.add("connect_login_all_s", seconds_between(t0, t_login), 2);
    r.add_latency("connect_login", lat, {50, 99});
    if (o.connector_pid) {
        r.add("connector_rss_before_kib", static_cast<double>(rss_before) / 1024, 0);
        r.add("connector_rss_after_kib", static_cast<double>(rss_after) / 1024, 0);
        const double per =
            o.sessions ? (static_cast<double>(rss_after) - static_cast<double>(rss_before)) /
                             static_cast<double>(o.sessions)
                       : 0;
        r.add("connector_rss_per_session_bytes", per, 0);
        r.add("connector_idle_cpu_pct", (conn_cpu1 - conn_cpu0) / idle_s * 100, 2);
    }
    r.add("idle_s", idle_s, 1);
    const auto err = fleet.first_error();
    if (!err.empty()) r.add_text("first_error", err);
    r.add_cpu(cpu, idle_s);
    if (!r.emit(o.json_out)) return 1;
    return all && fleet.failed() == 0 && alive == o.sessions ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------

int run_login(const Options& o) {
    raise_fd_limit();
    std::vector<BenchUser> seeded;
    std::vector<std::string> connectors;
    if (!load_users(o, 1, seeded, connectors)) return 2;
    std::vector<tcp::endpoint> targets;
    if (!resolve_connectors({connectors.front()}, targets)) return 2;

    // 1. REST logins at the configured hash cost: users u0.. (the count may exceed the seeded
    //    users: then a user logs in with several devices, one token each).
    const std::string device = "login-" + std::to_string(random_nonce() % 1000000);
    const std::uint64_t n = o.count;
    const std::uint64_t seeded_n = seeded.size();
    std::vector<std::string> devices(n);
    for (std::uint64_t i = 0; i < n; ++i)
        devices[i] = device + "-" + std::to_string(i / seeded_n);
    std::vector<BenchUser> logins;
    Samples rest_lat;
    const auto r0 = now_ns();
    const bool rest_ok = login_users(
        o.rest, o.users, n, seeded_n, [&](std::uint64_t i) { return devices[i]; },
        static_cast<int>(o.concurrency), logins, &rest_lat, nullptr);
    const auto r1 = now_ns();
    if (!rest_ok) return 1;

    // 2. Session establishment through one connector: connect + Login + LoginResult, C at once.
    std::vector<std::string> tokens;
    for (auto& l : logins)
        tokens.push_back(l.token);
    Workers workers(o.threads);
    Fleet fleet(workers, o, targets);
    workers.start();
    const auto c0 = now_ns();
    fleet.launch(tokens, devices, o.concurrency);
    const bool all = wait_until([&] { return fleet.done() >= n; }, 120, 2ms);
    const auto c1 = fleet.last_login_ns() ? fleet.last_login_ns() : now_ns();
    fleet.set_closing();
    fleet.close_all();
    workers.stop();
    Samples conn_lat;
    fleet.latencies(conn_lat);

    Report r("login");
    add_common(r, o, {connectors.front()});
    r.add_text("rest_password_hash", o.hash_cost);
    r.add("count", n);
    r.add("concurrency", o.concurrency);
    r.add("rest_logins_s", static_cast<double>(n) / seconds_between(r0, r1), 0);
    r.add_latency("rest_login", rest_lat, {50, 99});
    r.add("sessions_established", fleet.ok());
    r.add("sessions_failed", fleet.failed());
    r.add("session_establishments_s", static_cast<double>(fleet.ok()) / seconds_between(c0, c1), 0);
    r.add_latency("session_login", conn_lat, {50, 99});
    const auto err = fleet.first_error();
    if (!err.empty()) r.add_text("first_error", err);
    if (!r.emit(o.json_out)) return 1;
    return all && fleet.failed() == 0 ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// offline: u{2k} send to u{2k+1} while those are offline; then they log in and sync.

namespace {

struct OfflineEnd {
    Session* session = nullptr;
    std::uint64_t peer_user_id = 0;
    std::uint64_t conversation = 0;
    std::uint64_t quota = 0;
    // sender
    std::uint64_t next_stream = 1, stream_acked = 0, inflight = 0, acked = 0, errors = 0;
    std::uint64_t first_seq = 0;
    std::int64_t done_ns = 0;
    std::int64_t done_ns_recv = 0;
    // receiver
    std::uint64_t base_seq = 0, last_seq = 0, received = 0, duplicates = 0, gaps = 0, pages = 0;
    bool done = false;
};

class OfflineRun final : public SessionHandler {
  public:
    OfflineRun(const Options& o, Workers& workers) : o_(o), workers_(workers) {
        payload_.assign(static_cast<std::size_t>(o.size), 'x');
        nonce_ = random_nonce();
    }

    std::atomic<std::uint64_t> logged_in{0}, login_failed{0}, senders_done{0}, receivers_done{0};
    std::string first_error;
    std::mutex mu;

    void build(const std::vector<BenchUser>& users, std::uint64_t pairs, std::uint64_t messages) {
        ends_.resize(2 * pairs);
        for (std::size_t k = 0; k < pairs; ++k) {
            for (std::size_t side = 0; side < 2; ++side) {
                auto& e = ends_[2 * k + side];
                e.peer_user_id = users[2 * k + 1 - side].user_id;
                e.conversation =
                    im::conversation_id(users[2 * k].user_id, users[2 * k + 1].user_id);
                e.quota = messages / pairs + (k < messages % pairs ? 1 : 0);
                sessions_.push_back(std::make_unique<Session>(workers_.at(k), *this, 2 * k + side));
                e.session = sessions_.back().get();
            }
        }
    }
    // side 0: the senders, side 1: the receivers.
    void start_side(std::size_t side, const std::vector<BenchUser>& users,
                    const std::vector<tcp::endpoint>& targets) {
        for (std::size_t i = side; i < ends_.size(); i += 2) {
            const auto ep = targets[i % targets.size()];
            asio::post(ends_[i].session->worker().io(), [this, i, ep, token = users[i].token] {
                ends_[i].session->start(ep, source_for(o_, i, ep), token, "bench");
            });
        }
    }
    void begin_sending() {
        for (std::size_t i = 0; i < ends_.size(); i += 2) {
            asio::post(ends_[i].session->worker().io(), [this, i] { top_up(ends_[i]); });
        }
    }
    // Receivers' sync base: the seq before the sender's first message of this run.
    void set_receiver_bases() {
        for (std::size_t i = 0; i + 1 < ends_.size(); i += 2)
            ends_[i + 1].base_seq = ends_[i].first_seq - 1;
    }
    const std::vector<OfflineEnd>& ends() const { return ends_; }
    void close_all() {
        closing_ = true;
        workers_.run_on_all([this](std::size_t w) {
            for (auto& e : ends_)
                if (&e.session->worker() == &workers_.at(w)) e.session->close();
        });
    }

    void on_login(Session& s, bool ok, const std::string& error) override {
        if (!ok) {
            std::lock_guard lock(mu);
            if (first_error.empty()) first_error = "login: " + error;
            ++login_failed;
            return;
        }
        ++logged_in;
        auto& e = ends_[s.index()];
        if (s.index() % 2 == 1) {  // a receiver: sync at login, as imclient does
            pb::Envelope env;
            env.set_request_id(3);
            env.mutable_sync_conversations()->set_cursor(0);
            s.send(env);
            (void)e;
        }
    }
    void on_closed(Session&, const std::string& why) override {
        if (closing_) return;
        std::lock_guard lock(mu);
        if (first_error.empty()) first_error = "session closed: " + why;
    }
    void on_envelope(Session& s, const pb::Envelope& env) override {
        auto& e = ends_[s.index()];
        if (env.has_send_result()) {
            on_send_result(e, env.request_id(), env.send_result());
        } else if (env.has_conversation_list()) {
            request_page(e);
        } else if (env.has_message_page()) {
            on_page(e, env.message_page());
        } else if (env.has_error() || env.has_kick()) {
            std::lock_guard lock(mu);
            if (first_error.empty())
                first_error = env.has_error() ? env.error().message() : env.kick().message();
        }
    }

  private:
    void top_up(OfflineEnd& e) {
        while (e.inflight < o_.window && e.next_stream <= e.quota && !e.session->closed()) {
            pb::Envelope env;
            env.set_request_id(kSendRequestBase + e.next_stream);
            auto* m = env.mutable_send();
            m->set_peer_user_id(e.peer_user_id);
            encode_msg_id(*m->mutable_client_msg_id(), now_ns(), e.next_stream, nonce_);
            m->set_stream_seq(e.next_stream);
            m->set_type(pb::TEXT);
            m->set_text(payload_);
            m->set_stream_acked(e.stream_acked);
            ++e.next_stream;
            ++e.inflight;
            e.session->send(env);
        }
    }
    void on_send_result(OfflineEnd& e, std::uint64_t request_id, const pb::SendResult& r) {
        if (request_id < kSendRequestBase) return;
        const auto stream = request_id - kSendRequestBase;
        --e.inflight;
        if (r.code() == pb::ERROR_NONE) {
            ++e.acked;
            e.stream_acked = std::max(e.stream_acked, stream);
            if (stream == 1) e.first_seq = r.seq();
        } else {
            ++e.errors;
            std::lock_guard lock(mu);
            if (first_error.empty())
                first_error = "send failed: " + pb::ErrorCode_Name(r.code()) + " " + r.message();
        }
        if (e.acked + e.errors == e.quota) {
            e.done_ns = now_ns();
            ++senders_done;
            return;
        }
        top_up(e);
    }
    void request_page(OfflineEnd& e) {
        pb::Envelope env;
        env.set_request_id(4);
        auto* q = env.mutable_sync_messages();
        q->set_conversation_id(e.conversation);
        q->set_after_seq(e.last_seq ? e.last_seq : e.base_seq);
        e.session->send(env);
    }
    void on_page(OfflineEnd& e, const pb::MessagePage& page) {
        if (e.done) return;
        ++e.pages;
        for (const auto& m : page.messages()) {
            const auto expect = (e.last_seq ? e.last_seq : e.base_seq) + 1;
            if (m.seq() < expect) {
                ++e.duplicates;
                continue;
            }
            if (m.seq() != expect) ++e.gaps;
            e.last_seq = m.seq();
            ++e.received;
        }
        if (e.last_seq) {  // the DELIVERED watermark, once per page
            pb::Envelope env;
            auto* r = env.mutable_receipt();
            r->set_conversation_id(e.conversation);
            r->set_kind(pb::DELIVERED);
            r->set_up_to_seq(e.last_seq);
            e.session->send(env);
        }
        if (e.received >= e.quota || (!page.has_more() && page.messages().empty())) {
            e.done = true;
            e.done_ns_recv = now_ns();
            ++receivers_done;
            return;
        }
        request_page(e);
    }

    const Options& o_;
    Workers& workers_;
    std::vector<OfflineEnd> ends_;
    std::vector<std::unique_ptr<Session>> sessions_;
    std::string payload_;
    std::uint32_t nonce_ = 0;
    std::atomic<bool> closing_{false};
};

}  // namespace

int run_offline(const Options& o) {
    raise_fd_limit();
    const std::uint64_t pairs = std::max<std::uint64_t>(1, o.pairs);
    if (o.window == 0 || o.messages < pairs) {
        std::cerr << "im-bench: --window must be positive and --messages at least --pairs\n";
        return 2;
    }
    std::vector<BenchUser> users;
    std::vector<std::string> connectors;
    if (!load_users(o, 2 * pairs, users, connectors)) return 2;
    std::vector<tcp::endpoint> targets;
    if (!resolve_connectors(connectors, targets)) return 2;

    Workers workers(o.threads);
    OfflineRun run(o, workers);
    workers.start();
    run.build(users, pairs, o.messages);
    auto fail = [&](const std::string& what) {
        std::cerr << "im-bench: " << what << "; first error: " << run.first_error << "\n";
        run.close_all();
        workers.stop();
        return 1;
    };

    // 1. The senders store K messages for offline peers.
    run.start_side(0, users, targets);
    if (!wait_until([&] { return run.logged_in + run.login_failed >= pairs; }, 60) ||
        run.login_failed)
        return fail("senders did not log in");
    CpuMeter cpu(find_watched_processes(o.watch_dirs));
    cpu.start();
    const auto s0 = now_ns();
    run.begin_sending();
    if (!wait_until([&] { return run.senders_done >= pairs; }, 600, 5ms))
        return fail("storing did not finish in 600 s");
    std::int64_t s1 = s0;
    std::uint64_t acked = 0, errors = 0;
    for (std::size_t i = 0; i < run.ends().size(); i += 2) {
        s1 = std::max(s1, run.ends()[i].done_ns);
        acked += run.ends()[i].acked;
        errors += run.ends()[i].errors;
    }
    cpu.stop();
    run.set_receiver_bases();

    // 2. The receivers log in and sync everything.
    const auto r0 = now_ns();
    run.start_side(1, users, targets);
    const bool synced =
        wait_until([&] { return run.receivers_done + run.login_failed >= pairs; }, 600, 2ms);
    std::int64_t r1 = r0;
    std::uint64_t received = 0, dups = 0, gaps = 0, pages = 0;
    for (std::size_t i = 1; i < run.ends().size(); i += 2) {
        const auto& e = run.ends()[i];
        r1 = std::max(r1, e.done_ns_recv);
        received += e.received;
        dups += e.duplicates;
        gaps += e.gaps;
        pages += e.pages;
    }
    run.close_all();
    workers.stop();

    const double store_s = seconds_between(s0, s1), sync_s = seconds_between(r0, r1);
    Report r("offline");
    add_common(r, o, connectors);
    r.add("messages", o.messages);
    r.add("pairs", pairs);
    r.add("window", o.window);
    r.add("size_bytes", o.size);
    r.add("store_s", store_s, 2);
    r.add("stored_msgs_s", static_cast<double>(acked) / store_s, 0);
    r.add("sync_s", sync_s, 2);
    r.add("synced_msgs_s", static_cast<double>(received) / sync_s, 0);
    r.add("pages", pages);
    r.add("acked", acked);
    r.add("received", received);
    r.add("lost", acked > received ? acked - received : 0);
    r.add("duplicated", dups);
    r.add("out_of_order", gaps);
    r.add("send_errors", errors);
    if (!run.first_error.empty()) r.add_text("first_error", run.first_error);
    r.add_cpu(cpu, store_s);
    if (!r.emit(o.json_out)) return 1;
    return synced && acked == o.messages && received == acked && dups == 0 && gaps == 0 ? 0 : 1;
}

}  // namespace imbench
