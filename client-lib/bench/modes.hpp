#pragma once
// im-bench's subcommands (see docs/BENCHMARKS.md): pairs, idle, login, offline, isolation, groups.
// seed
// is in rest.hpp.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "rest.hpp"

namespace imbench {

struct Options {
    RestTarget rest;
    UserSet users;
    std::string tokens_file = "im-bench-tokens.txt";
    std::vector<std::string>
        connectors;         // host:port; default: from the token file (im-rest's list)
    int threads = 1;        // chat I/O threads
    int rest_threads = 16;  // concurrent REST requests (seed, login)
    int source_addrs = 1;   // connect from 127.0.0.1 .. 127.0.0.N (many sockets)
    std::string json_out;
    std::vector<std::string> watch_dirs;  // directories of *.pid files whose CPU is reported
    pid_t connector_pid = 0;              // idle: whose RSS and CPU are measured
    std::string mysql_flush =
        "unknown";                      // printed in every report (scripts/bench reads the server)
    std::string hash_cost = "unknown";  // im-rest's password hash setting, for the login report

    // pairs
    std::uint64_t pairs = 50;
    std::uint64_t window = 16;
    std::uint64_t size = 100;
    double warmup_s = 2;
    double duration_s = 10;
    double rate = 0;  // open loop: messages/s in total; 0 = closed loop
    double drain_s = 15;
    std::uint64_t flood_window = 1000;  // isolation: the flooder's sends in flight
    bool flood_pings = false;           // isolation: the flooder sends Pings, not Sends

    // idle / login / offline
    std::uint64_t sessions = 1000;
    std::uint64_t count = 5000;
    std::uint64_t concurrency = 200;
    std::uint64_t messages = 100000;

    // groups (pacing: window, rate, size, warmup, duration, drain as for pairs)
    std::uint64_t groups = 1;
    std::uint64_t members = 10;
    std::uint64_t senders = 1;
};

int run_pairs(const Options& o);
int run_idle(const Options& o);
int run_login(const Options& o);
int run_offline(const Options& o);
int run_isolation(const Options& o);
int run_groups(const Options& o);  // groups.cpp

}  // namespace imbench
