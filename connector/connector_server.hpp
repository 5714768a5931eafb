#pragma once
// im-connector: holds client sessions, authenticates them, and moves their frames to and from the
// transfers. One I/O thread owns every session and link (no locks on the data path); Redis calls
// (token cache, user status, registry) run on a small blocking pool. Never opens MySQL: a token
// that misses the Redis cache is validated by a transfer over its link.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "im/server/metrics.hpp"
#include "im/server/thread_pool.hpp"
#include "im/server/token_format.hpp"
#include "im/user_status/user_status.hpp"
#include "im/wire/ids.hpp"
#include "session.hpp"
#include "transfer_links.hpp"

namespace im::connector {

struct ConnectorConfig;

class ConnectorServer {
public:
    ConnectorServer(boost::asio::io_context& io, const ConnectorConfig& config, Metrics& metrics);
    ~ConnectorServer();

    // Binds config.host:port, or takes a listener bound by the caller (im/server/listen_slots.hpp);
    // returns the client port.
    std::uint16_t start(boost::asio::ip::tcp::acceptor listening);
    std::uint16_t start() { return start(boost::asio::ip::tcp::acceptor(io_)); }
    // SIGTERM: stop accepting, Kick{RECONNECT} every session, deregister; calls done when the
    // sessions are gone or shutdown_grace passed.
    void drain(std::function<void()> done);
    void stop();
    // SIGHUP: read the TLS certificates again, for clients and for the links; sessions and links
    // already open keep going; a file that does not load keeps the previous ones.
    void reload_tls();

    std::size_t session_count() const { return sessions_.size(); }
    std::size_t ready_links() const { return links_.ready_count(); }

    // From sessions.
    void on_client_frame(ClientSession& s, client::Envelope& env);
    void on_session_closed(ClientSession& s, net::CloseReason reason);
    // A session whose pushes were dropped has written out its queue: it is told to sync.
    void on_session_caught_up(ClientSession& s);
    void count_frame_error(wire::FrameError e);

private:
    struct RedisBackend;
    struct TokenWait {
        std::weak_ptr<ClientSession> session;
        std::uint64_t login_request_id = 0;
        std::int64_t deadline_ms = 0;
        bool recheck = false;  // a live session's periodic re-check, not a login
    };

    void accept();
    // Refuses a connection at accept with one Error frame (plain TCP; TLS connections are just
    // closed: a handshake is what the refusal saves).
    void refuse_connection(boost::asio::ip::tcp::socket& socket, client::ErrorCode code, const std::string& why);
    // The abuse limits of one frame of an active session; false when it was refused (answered).
    bool admit(ClientSession& s, const client::Envelope& env);
    void sweep();
    void heartbeat();
    void recheck_tokens(std::int64_t now);
    void login(ClientSession& s, const client::Envelope& env);
    void finish_login(const std::shared_ptr<ClientSession>& s, std::uint64_t request_id, const tokens::SessionInfo& info);
    void refuse_login(ClientSession& s, std::uint64_t request_id, client::ErrorCode code, const std::string& why);
    void forward(ClientSession& s, client::Envelope& env, const Decision& d);
    void on_transfer_frame(TransferLink& link, internal::LinkEnvelope& env);
    void on_link_down(std::uint64_t link_id);
    void on_link_up();
    // Requests for a shard with no reachable owner (during a hand-over or takeover, or bounced by
    // a transfer that lost it) wait here, in arrival order, until an owner is announced or
    // links.reroute_timeout passes (then UNAVAILABLE, which imclient retries).
    struct Held {
        std::weak_ptr<ClientSession> session;
        std::uint64_t login_epoch = 0;
        client::Envelope env;
        std::uint32_t shard = 0;
        std::uint64_t avoid_link = 0;  // bounced by this link at this gen: not to it again...
        std::uint64_t avoid_gen = 0;   // ...unless it announces the shard anew
        std::int64_t deadline_ms = 0;
        bool rerouted = false;
    };
    void hold(ClientSession& s, client::Envelope env, std::uint32_t shard, std::uint64_t avoid_link,
              std::uint64_t avoid_gen, bool rerouted);
    void release_held();
    void expire_held(std::int64_t now);
    void send_to(TransferLink& link, ClientSession& s, client::Envelope env);
    void on_bounce(TransferLink& link, internal::Bounce& b);
    void kick_matching(std::uint64_t user, std::uint64_t token_session_id, std::uint64_t only_login_epoch,
                       client::KickReason reason, const std::string& message);
    ClientSession* find(std::uint64_t user, std::uint64_t login_epoch);
    internal::SessionRef ref_of(const ClientSession& s) const;
    bool redis_task(std::function<void(RedisBackend&)> task);
    // Session registrations (online/offline/re-register) run on one thread, in order: an offline
    // can never overtake the online of the same session.
    bool status_task(std::function<void(RedisBackend&)> task);
    std::vector<internal::SessionRef> session_refs() const;

    boost::asio::io_context& io_;
    const ConnectorConfig& config_;
    Metrics& metrics_;
    std::uint64_t epoch_;
    boost::asio::ip::tcp::acceptor acceptor_;
    std::shared_ptr<boost::asio::ssl::context> tls_;
    std::shared_ptr<boost::asio::ssl::context> make_client_tls() const;
    boost::asio::steady_timer sweep_timer_;
    boost::asio::steady_timer heartbeat_timer_;
    TransferLinks links_;
    std::unordered_map<ClientSession*, std::shared_ptr<ClientSession>> sessions_;
    std::unordered_map<std::uint64_t, std::vector<ClientSession*>> by_user_;  // active sessions
    std::unordered_map<std::uint64_t, TokenWait> token_waits_;                // link request id -> login
    std::uint64_t next_request_id_ = 1;
    std::vector<std::unique_ptr<RedisBackend>> redis_backends_;
    std::unique_ptr<ThreadPool> redis_pool_;
    std::unique_ptr<RedisBackend> status_backend_;
    std::unique_ptr<ThreadPool> status_pool_;
    std::unique_ptr<user_status::KickSubscriber> kicks_;
    std::mt19937_64 rng_{std::random_device{}()};
    std::uint64_t last_login_epoch_ = 0;
    std::shared_ptr<std::atomic<bool>> alive_;
    bool draining_ = false;
    std::deque<Held> held_;
    AddressCounter addresses_;                               // sessions.max_per_address
    std::unordered_map<std::uint64_t, FrameBuckets> user_buckets_;  // users.*: users with sessions here
    std::vector<std::uint32_t> held_per_shard_ = std::vector<std::uint32_t>(kShardCount, 0);

    prometheus::Gauge& sessions_gauge_;
    prometheus::Gauge& links_gauge_;
    prometheus::Counter& logins_ok_;
    prometheus::Counter& logins_failed_;
    prometheus::Counter& frames_in_;
    prometheus::Counter& pushes_out_;
    prometheus::Counter& pushes_shed_;
    prometheus::Counter& frame_errors_;
    prometheus::Counter& slow_consumers_;
    prometheus::Counter& kicks_total_;
    prometheus::Counter& unavailable_;
    prometheus::Counter& rejected_sessions_;
    prometheus::Counter& rerouted_;
    prometheus::Counter& held_total_;
    prometheus::Counter& held_expired_;
    prometheus::Gauge& held_gauge_;
    // Abuse limits: frames refused, by limit (session_messages ... user_typing, pending_requests),
    // and connections closed by one (connections_per_address, frames_before_login, login_timeout).
    std::array<std::array<prometheus::Counter*, 3>, 2> rate_limited_{};
    prometheus::Counter& pending_refused_;
    prometheus::Counter& address_refused_;
    prometheus::Counter& prelogin_refused_;
    prometheus::Counter& login_timeouts_;
    prometheus::Counter& frames_throttled_;  // frames over sessions.frames_per_second (handled, then a read pause)
};

}  // namespace im::connector
