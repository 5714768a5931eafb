#pragma once
// What the run modes (modes.cpp, groups.cpp) share: users and connectors from the token file,
// pacing and waiting, and the client_msg_id that carries a send's stamp and stream number.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "modes.hpp"
#include "report.hpp"
#include "session.hpp"

namespace imbench {

inline constexpr std::uint64_t kSendRequestBase = 16;  // request ids 1 (Login), 2 (Ping) taken

double seconds_between(std::int64_t a, std::int64_t b);
void sleep_s(double s);
void raise_fd_limit();
// The first `need` users of the token file, and the connectors (--connectors or the file's).
bool load_users(const Options& o, std::uint64_t need, std::vector<BenchUser>& users,
                std::vector<std::string>& connectors);
bool resolve_connectors(const std::vector<std::string>& in, std::vector<tcp::endpoint>& out);
// The source address of session i (--source-addrs), if any.
std::optional<asio::ip::address> source_for(const Options& o, std::size_t i,
                                            const tcp::endpoint& ep);
void add_common(Report& r, const Options& o, const std::vector<std::string>& connectors);
// Waits until pred() (evaluated on the caller's thread) or the timeout.
bool wait_until(const std::function<bool()>& pred, double timeout_s,
                std::chrono::milliseconds step = std::chrono::milliseconds(20));
// client_msg_id: [send stamp ns, 8 bytes][stream seq, 4][run nonce, 4]; unique per sender forever.
void encode_msg_id(std::string& out, std::int64_t stamp, std::uint64_t stream, std::uint32_t nonce);
bool decode_msg_id(const std::string& in, std::int64_t& stamp, std::uint64_t& stream,
                   std::uint32_t& nonce);
std::uint32_t random_nonce();

// What every chat mode counts per worker besides its own samples: sends and their answers, the
// control frames a session gets (SyncHint, Kick, Error), closed sessions, the first error seen.
struct SessionCounters {
    std::uint64_t sent = 0, acked = 0, send_errors = 0, duplicates = 0, out_of_order = 0, sync_hints = 0,
                  kicks = 0, closed = 0, errors = 0, receipts_sent = 0;
    std::string first_error;
    void note(const std::string& error) {
        if (first_error.empty()) first_error = error;
    }
    void add(const SessionCounters& o);
    // A SyncHint, Kick or Error frame: counted (true); any other frame: false.
    bool count_control(const pb::Envelope& env);
};

}  // namespace imbench
