// What the run modes share: users and connectors from the token file, pacing and waiting, the
// client_msg_id that carries a send's stamp and stream number.

#include "bench_common.hpp"

#include <sys/resource.h>

#include <iostream>
#include <random>
#include <thread>

namespace imbench {

using namespace std::chrono_literals;

double seconds_between(std::int64_t a, std::int64_t b) {
    return static_cast<double>(b - a) / 1e9;
}

void sleep_s(double s) {
    std::this_thread::sleep_for(std::chrono::duration<double>(s));
}

void raise_fd_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

bool load_users(const Options& o, std::uint64_t need, std::vector<BenchUser>& users,
                std::vector<std::string>& connectors) {
    std::vector<std::string> from_file;
    if (!read_tokens(o.tokens_file, users, from_file)) {
        std::cerr << "im-bench: cannot read the token file " << o.tokens_file
                  << " (run `im-bench seed` first)\n";
        return false;
    }
    if (users.size() < need) {
        std::cerr << "im-bench: " << o.tokens_file << " has " << users.size()
                  << " users, this run needs " << need << " (run `im-bench seed --users " << need
                  << "`)\n";
        return false;
    }
    connectors = o.connectors.empty() ? from_file : o.connectors;
    if (connectors.empty()) {
        std::cerr << "im-bench: no connector address (--connectors host:port,...)\n";
        return false;
    }
    return true;
}

bool resolve_connectors(const std::vector<std::string>& in, std::vector<tcp::endpoint>& out) {
    asio::io_context io;
    tcp::resolver resolver(io);
    for (const auto& c : in) {
        Endpoint e;
        boost::system::error_code ec;
        if (!parse_endpoint(c, e)) {
            std::cerr << "im-bench: bad connector address " << c << "\n";
            return false;
        }
        auto r = resolver.resolve(e.host, std::to_string(e.port), ec);
        if (ec || r.empty()) {
            std::cerr << "im-bench: cannot resolve " << c << ": " << ec.message() << "\n";
            return false;
        }
        out.push_back(*r.begin());
    }
    return true;
}

std::optional<asio::ip::address> source_for(const Options& o, std::size_t i,
                                            const tcp::endpoint& ep) {
    if (o.source_addrs <= 1 || !ep.address().is_loopback() || !ep.address().is_v4())
        return std::nullopt;
    const auto k = static_cast<unsigned>(i % static_cast<std::size_t>(o.source_addrs));
    return asio::ip::make_address_v4((127u << 24) | (k + 1));
}

void add_common(Report& r, const Options& o, const std::vector<std::string>& connectors) {
    r.add_text("mysql_innodb_flush_log_at_trx_commit", o.mysql_flush);
    std::string list;
    for (const auto& c : connectors)
        list += (list.empty() ? "" : ",") + c;
    r.add_text("connectors", list);
    r.add("generator_threads", o.threads);
}

// Waits until pred() (evaluated on the caller's thread) or the timeout.
bool wait_until(const std::function<bool()>& pred, double timeout_s,
                std::chrono::milliseconds step) {
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(timeout_s));
    while (!pred()) {
        if (Clock::now() >= deadline) return false;
        std::this_thread::sleep_for(step);
    }
    return true;
}

// client_msg_id: [send stamp ns, 8 bytes][stream seq, 4][run nonce, 4]; unique per sender forever.
void encode_msg_id(std::string& out, std::int64_t stamp, std::uint64_t stream,
                   std::uint32_t nonce) {
    out.resize(16);
    auto put = [&](std::size_t at, std::uint64_t v, int bytes) {
        for (int b = 0; b < bytes; ++b)
            out[at + static_cast<std::size_t>(b)] =
                static_cast<char>((v >> (8 * (bytes - 1 - b))) & 0xff);
    };
    put(0, static_cast<std::uint64_t>(stamp), 8);
    put(8, stream & 0xffffffffu, 4);
    put(12, nonce, 4);
}

bool decode_msg_id(const std::string& in, std::int64_t& stamp, std::uint64_t& stream,
                   std::uint32_t& nonce) {
    if (in.size() != 16) return false;
    auto get = [&](std::size_t at, int bytes) {
        std::uint64_t v = 0;
        for (int b = 0; b < bytes; ++b)
            v = (v << 8) | static_cast<unsigned char>(in[at + static_cast<std::size_t>(b)]);
        return v;
    };
    stamp = static_cast<std::int64_t>(get(0, 8));
    stream = get(8, 4);
    nonce = static_cast<std::uint32_t>(get(12, 4));
    return true;
}

std::uint32_t random_nonce() {
    std::random_device rd;
    return rd();
}
void SessionCounters::add(const SessionCounters& o) {
    sent += o.sent;
    acked += o.acked;
    send_errors += o.send_errors;
    duplicates += o.duplicates;
    out_of_order += o.out_of_order;
    sync_hints += o.sync_hints;
    kicks += o.kicks;
    closed += o.closed;
    errors += o.errors;
    receipts_sent += o.receipts_sent;
    note(o.first_error);
}

bool SessionCounters::count_control(const pb::Envelope& env) {
    switch (env.body_case()) {
        case pb::Envelope::kSyncHint:
            ++sync_hints;
            return true;
        case pb::Envelope::kKick:
            ++kicks;
            note("kicked: " + env.kick().message());
            return true;
        case pb::Envelope::kError:
            ++errors;
            note("error: " + env.error().message());
            return true;
        default:
            return false;
    }
}

}  // namespace imbench
