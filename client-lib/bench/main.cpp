// im-bench: the project's load generator (docs/BENCHMARKS.md).
//
//   im-bench seed    --users N
//   im-bench pairs   --pairs P --window W --size B --warmup S --duration D [--rate R]
//   im-bench idle    --sessions N --duration D
//   im-bench login   --count N --concurrency C
//   im-bench offline --messages K [--pairs P --window W]
//   im-bench isolation --pairs P --window W --rate R --duration D [--flood-window F]
//   im-bench groups  --groups G --members M --senders S --window W --duration D [--rate R]
//
// Every subcommand prints a table and one JSON line (also appended to --json-out FILE). The exit
// status is 0 only when the run was clean: nothing lost, duplicated or out of order, no errors.

#include <charconv>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <google/protobuf/stubs/common.h>

#include "modes.hpp"

namespace {

const char* kUsage = R"(usage: im-bench COMMAND [options]

commands:
  seed     --users N                 register bench0..bench{N-1}, befriend bench{2k} with bench{2k+1}, write the token file
  pairs    --pairs P --window W --size B --warmup S --duration D [--rate R]
                                     u{2k} and u{2k+1} send to each other; closed loop (W in flight per
                                     sender) or open loop at R messages/s in total
  idle     --sessions N --duration D logged-in idle sessions on one connector: login time, RSS, CPU
  login    --count N --concurrency C REST logins, then session establishments through one connector
  offline  --messages K [--pairs P]  store K messages for offline users, then log them in and sync
  isolation --pairs P --window W --rate R --duration D [--flood-window F] [--flood-frames send|ping]
                                     open-loop pairs measured without, then with one client flooding
                                     the first connector (F sends in flight, RATE_LIMITED ignored);
                                     needs 2P+2 seeded users
  groups   --groups G --members M --senders S [--window W --size B --warmup S --duration D --rate R]
                                     G groups of M seeded users (created through im-rest), S senders
                                     each; fan-out deliveries/s, time to the last member p50/p99,
                                     lost/dup/ooo per member; needs G*M seeded users

common options:
  --rest URL              im-rest address (default http://127.0.0.1:8080)
  --connectors A,B        connector addresses host:port (default: im-rest's list in the token file)
  --tokens FILE           token file written by seed (default im-bench-tokens.txt)
  --prefix P              user name prefix (default bench)  --password PW (default bench-password)
  --threads N             chat I/O threads (default 1)      --rest-threads N (default 16)
  --source-addrs N        connect from 127.0.0.1..127.0.0.N (more than ~28k sockets per target)
  --watch DIR             report the CPU of every process with a *.pid file under DIR (repeatable)
  --connector-pid PID     idle: the connector whose RSS and CPU are measured
  --mysql-flush V         the server's innodb_flush_log_at_trx_commit, printed in the report
  --hash-cost TEXT        im-rest's password hash setting, printed in the login report
  --json-out FILE         append the JSON line to FILE
  --drain S               pairs, groups: seconds to wait for in-flight messages after the run (default 15)
)";

bool parse_u64(const std::string& s, std::uint64_t& out) {
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && end == s.data() + s.size();
}

bool parse_double(const std::string& s, double& out) {
    char* end = nullptr;
    out = std::strtod(s.c_str(), &end);
    return !s.empty() && end == s.c_str() + s.size() && out >= 0;
}

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : s) {
        if (c == ',') {
            if (!cur.empty()) out.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    if (!cur.empty()) out.push_back(cur);
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    GOOGLE_PROTOBUF_VERIFY_VERSION;
    if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
        std::cout << kUsage;
        return argc < 2 ? 2 : 0;
    }
    const std::string command = argv[1];
    imbench::Options o;
    std::uint64_t users = 0;
    bool have_pairs = false, have_window = false;

    for (int i = 2; i < argc; ++i) {
        const std::string flag = argv[i];
        if (i + 1 >= argc) {
            std::cerr << "im-bench: " << flag << " needs a value\n" << kUsage;
            return 2;
        }
        const std::string v = argv[++i];
        std::uint64_t u = 0;
        double d = 0;
        auto bad = [&] {
            std::cerr << "im-bench: bad value for " << flag << ": " << v << "\n";
            return 2;
        };
        auto num = [&](std::uint64_t& field) {
            if (!parse_u64(v, u)) return false;
            field = u;
            return true;
        };
        auto real = [&](double& field) {
            if (!parse_double(v, d)) return false;
            field = d;
            return true;
        };
        auto small = [&](int& field, std::uint64_t max) {
            if (!parse_u64(v, u) || u == 0 || u > max) return false;
            field = static_cast<int>(u);
            return true;
        };
        bool ok = true;
        if (flag == "--rest")
            ok = imbench::parse_rest_target(v, o.rest);
        else if (flag == "--connectors")
            o.connectors = split(v);
        else if (flag == "--tokens")
            o.tokens_file = v;
        else if (flag == "--prefix")
            o.users.prefix = v;
        else if (flag == "--password")
            o.users.password = v;
        else if (flag == "--threads")
            ok = small(o.threads, 64);
        else if (flag == "--rest-threads")
            ok = small(o.rest_threads, 1024);
        else if (flag == "--source-addrs")
            ok = small(o.source_addrs, 250);
        else if (flag == "--watch")
            o.watch_dirs.push_back(v);
        else if (flag == "--connector-pid") {
            ok = parse_u64(v, u) && u > 0 && u < (1u << 31);
            o.connector_pid = static_cast<pid_t>(u);
        } else if (flag == "--mysql-flush")
            o.mysql_flush = v;
        else if (flag == "--hash-cost")
            o.hash_cost = v;
        else if (flag == "--json-out")
            o.json_out = v;
        else if (flag == "--users")
            ok = num(users) && users >= 2;
        else if (flag == "--pairs")
            ok = (have_pairs = num(o.pairs)) && o.pairs > 0;
        else if (flag == "--window")
            ok = (have_window = num(o.window)) && o.window > 0 && o.window <= 100000;
        else if (flag == "--size")
            ok = num(o.size) && o.size <= (1u << 20);
        else if (flag == "--warmup")
            ok = real(o.warmup_s);
        else if (flag == "--duration")
            ok = real(o.duration_s) && o.duration_s > 0;
        else if (flag == "--rate")
            ok = real(o.rate);
        else if (flag == "--drain")
            ok = real(o.drain_s);
        else if (flag == "--sessions")
            ok = num(o.sessions) && o.sessions > 0;
        else if (flag == "--count")
            ok = num(o.count) && o.count > 0;
        else if (flag == "--concurrency")
            ok = num(o.concurrency) && o.concurrency > 0 && o.concurrency <= 100000;
        else if (flag == "--messages")
            ok = num(o.messages) && o.messages > 0;
        else if (flag == "--groups")
            ok = num(o.groups) && o.groups > 0 && o.groups <= 100000;
        else if (flag == "--members")
            ok = num(o.members) && o.members >= 2 && o.members <= 100000;
        else if (flag == "--senders")
            ok = num(o.senders) && o.senders > 0 && o.senders <= 100000;
        else if (flag == "--flood-window")
            ok = num(o.flood_window) && o.flood_window > 0 && o.flood_window <= 100000;
        else if (flag == "--flood-frames")
            ok = (v == "send" || v == "ping") && ((o.flood_pings = v == "ping"), true);
        else {
            std::cerr << "im-bench: unknown option " << flag << "\n" << kUsage;
            return 2;
        }
        if (!ok) return bad();
    }

    try {
        if (command == "seed") {
            if (users == 0) {
                std::cerr << "im-bench: seed needs --users N (N >= 2)\n";
                return 2;
            }
            return imbench::run_seed(o.rest, o.users, users, o.rest_threads, o.tokens_file,
                                     o.json_out);
        }
        if (command == "pairs") return imbench::run_pairs(o);
        if (command == "idle") return imbench::run_idle(o);
        if (command == "login") return imbench::run_login(o);
        if (command == "isolation") return imbench::run_isolation(o);
        if (command == "groups") return imbench::run_groups(o);
        if (command == "offline") {
            if (!have_pairs) o.pairs = 1;
            if (!have_window)
                o.window = 128;  // the live-chat default is too small for bulk storing
            return imbench::run_offline(o);
        }
    } catch (const std::exception& e) {
        std::cerr << "im-bench: " << e.what() << "\n";
        return 1;
    }
    std::cerr << "im-bench: unknown command " << command << "\n" << kUsage;
    return 2;
}
