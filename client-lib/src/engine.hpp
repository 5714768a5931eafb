#pragma once
// The client's state machine. It lives on the client's io_context thread and is touched only
// there: the Client facade posts every call to it. One file per concern:
//   engine.cpp          login, connection life cycle, heartbeat, frame dispatch, requests
//   engine_send.cpp     the outbox on the wire (Send / SendResult)
//   engine_receive.cpp  Deliver, watermarks, receipts, sync (conversations and messages)
//   engine_requests.cpp mark_read, typing, conversations(), history(), read_by()
//   engine_groups.cpp   group specifics: visibility floors, member receipts on my messages

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "imclient/client.hpp"
#include "link.hpp"
#include "outbox.hpp"
#include "state_log.hpp"

namespace imclient::detail {

struct Callbacks {
    Client::MessageHandler message;
    Client::SentHandler sent;
    Client::SendFailedHandler send_failed;
    Client::ReceiptHandler receipt;
    Client::StateHandler state;
    Client::TypingHandler typing;
    Client::PresenceHandler presence;
    Client::MemberReceiptHandler member_receipt;
};

class Engine final : public LinkHandler {
  public:
    // `queued` counts the outbox for the facade's synchronous bound check. `state`: the log of
    // Options::state_dir (nullptr without one); it must outlive the engine.
    Engine(boost::asio::io_context& io, Options options, std::atomic<std::size_t>& queued,
           StateLog* state);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    Callbacks callbacks;

    void login(std::string username, std::string password, std::promise<LoginInfo> promise);
    void login_with_token(std::string token, std::uint64_t user_id,
                          std::vector<std::string> connectors, std::promise<LoginInfo> promise);
    void send(OutMessage message);
    // Before the first login: the messages restored from the state log, in order.
    void restore(std::vector<OutMessage> messages);
    void mark_read(std::uint64_t conversation_id, std::uint64_t seq);
    void typing(std::uint64_t peer, std::uint64_t group);  // exactly one of them non-zero
    void conversations(std::promise<std::vector<Conversation>> promise);
    void history(std::uint64_t conversation_id, std::uint64_t before_seq, std::uint32_t limit,
                 std::promise<std::vector<Message>> promise);
    void read_by(std::uint64_t conversation_id, std::uint64_t seq,
                 std::promise<ReadByResult> promise);
    void close(const std::string& reason);

    State state() const noexcept { return state_.load(); }
    std::uint64_t user_id() const noexcept { return user_id_.load(); }
    // The user of the last LoginResult (0 before the first): the owner of a message queued now.
    std::uint64_t session_user() const noexcept { return session_user_.load(); }
    // The current login's bearer token (empty before login()); on the engine's thread only.
    const std::string& token() const noexcept { return token_; }

  private:
    using Envelope = im::client::Envelope;
    // A request's answer: the response frame, or nullptr with the reason it has none.
    using Done = std::function<void(const Envelope* response, ErrorCode code)>;

    struct Request {
        Envelope frame;
        Clock::time_point deadline;
        Done done;
        bool survives_reconnect = false;  // app requests wait for the next session...
        // ...and ride out retryable answers (a transfer restarting) until their deadline.
        Clock::time_point not_before{};  // parked while live: when to ask again
        ErrorCode last_error = ErrorCode::none;
        unsigned failures = 0;
    };

    // Receive side, per conversation.
    struct InConversation {
        std::uint64_t delivered = 0;     // last contiguous seq handed out (or our own)
        std::uint64_t receipt_sent = 0;  // the DELIVERED watermark last sent
        std::map<std::uint64_t, std::optional<Message>> buffered;  // nullopt: our own send
        bool syncing = false;
        bool sync_queued = false;  // waiting in sync_queue_ for a slot
        bool sync_again = false;
        std::uint64_t pass_started_at = 0;  // delivered when the current sync pass began
        unsigned sync_failures = 0;
        std::uint64_t reported_peer_delivered = 0;
        std::uint64_t reported_peer_read = 0;
    };

    struct ListSync {
        bool running = false;
        bool again = false;
        std::uint64_t next_cursor = 0;
        bool has_more = false;
        std::set<std::uint64_t> waiting;  // listed conversations not synced yet
        unsigned failures = 0;
    };

    enum class Phase : std::uint8_t { idle, rest_login, connecting, awaiting_login, live, stopped };
    enum class Reconnect : std::uint8_t { backoff, next_at_once };

    struct ConversationsJob {
        std::promise<std::vector<Conversation>> promise;
        std::vector<Conversation> items;
        std::map<std::uint64_t, std::size_t> index;  // conversation -> items[]: groups come again
    };

    // A group where this client saw messages of mine: which seqs, and how far each member's
    // watermarks were reported already (on_member_receipt reports only what is new).
    struct MyGroupMessages {
        std::set<std::uint64_t> seqs;  // the newest kMaxTrackedSeqs
        std::map<std::pair<std::uint64_t, ReceiptKind>, std::uint64_t> reported;
    };

    // engine.cpp
    void on_link_open(Link& link) override;
    bool on_link_frame(Link& link, const Envelope& frame) override;
    void on_link_batch_end(Link& link) override;
    void on_link_closed(Link& link, const std::string& reason) override;
    void start_session(std::string token, std::uint64_t user_id,
                       std::vector<std::string> connectors, std::promise<LoginInfo> promise);
    void connect();
    void session_down(const std::string& reason, bool connector_failed, Reconnect how);
    void stop(State state, const std::string& detail, ErrorCode code);
    void set_state(State state, const std::string& detail);
    void fail_login(ErrorCode code, const std::string& detail);
    void handle_login_result(const Envelope& frame);
    void handle_kick(const Envelope& frame);
    void handle_error(const Envelope& frame);
    void arm_heartbeat();
    void arm_tick();
    void on_tick();
    std::chrono::milliseconds reconnect_delay();
    std::uint64_t next_request_id() { return ++last_request_id_; }
    bool send_frame(Envelope& frame);  // on the live link; assigns nothing
    void issue(Request request);       // sends (live) or parks (survives_reconnect) a request
    void answer(std::uint64_t request_id, const Envelope* response, ErrorCode code);
    void expire_requests(Clock::time_point now);
    void reissue_parked(Clock::time_point now);  // app requests whose retry time came
    static bool is_retryable(ErrorCode code);
    void conversations_page(std::shared_ptr<ConversationsJob> job, std::uint64_t cursor);

    // engine_send.cpp
    void pump_outbox();
    std::size_t send_budget() const;  // Sends that may go now within max_session_in_flight
    void handle_send_result(const Envelope& frame);
    void send_answered(const std::string& client_msg_id, std::uint64_t request_id, ErrorCode code,
                       bool retryable, std::uint64_t expected_stream_seq, const std::string& detail,
                       const im::client::SendResult* ok,
                       std::chrono::milliseconds retry_after = std::chrono::milliseconds(0));
    void report_send_failure(const OutMessage& m, ErrorCode code, const std::string& detail);
    void forget(const std::string& client_msg_id);  // no longer queued: the log learns it...
    void flush_state();                             // ...here, once per burst

    // engine_receive.cpp
    InConversation& in(std::uint64_t conversation_id);
    Message to_message(const im::client::Deliver& d) const;
    bool is_own_send(const im::client::Deliver& d) const;
    void handle_deliver(const im::client::Deliver& d);
    void accept(std::uint64_t conversation_id, std::uint64_t seq, std::optional<Message> message);
    void hand_out(std::uint64_t conversation_id, InConversation& c, std::uint64_t seq,
                  const std::optional<Message>& message);
    void drain(std::uint64_t conversation_id, InConversation& c);  // buffered seqs now in order
    void flush_receipts();
    void resend_watermarks();
    void sync_conversation(std::uint64_t conversation_id);
    void sync_ended(InConversation& c);  // frees the sync's slot, starts queued ones
    void fetch_page(std::uint64_t conversation_id, std::uint64_t after_seq);
    void on_page(std::uint64_t conversation_id, std::uint64_t after_seq, const Envelope* response,
                 ErrorCode code);
    void conversation_synced(std::uint64_t conversation_id);
    void sync_list();
    void fetch_list(std::uint64_t cursor);
    void on_list(const Envelope* response, ErrorCode code);
    void list_page_done();
    void sync_after_login();
    void handle_sync_hint(const im::client::SyncHint& hint);
    void handle_receipt_event(const im::client::ReceiptEvent& e);
    void retry_syncs(Clock::time_point now);
    void reset_receive_session();
    void invoke_receipt(std::uint64_t conversation, std::uint64_t user, ReceiptKind kind,
                        std::uint64_t seq);
    std::chrono::milliseconds retry_delay(unsigned failures) const;

    // engine_groups.cpp
    // Seqs up to `seq` of a group are not visible to me (before I joined, or while I was not a
    // member): the watermark moves past them without a message.
    void skip_invisible(std::uint64_t conversation_id, std::uint64_t seq);
    void note_my_message(std::uint64_t conversation_id, std::uint64_t seq);
    void member_receipt(std::uint64_t conversation_id, std::uint64_t user, ReceiptKind kind,
                        std::uint64_t up_to_seq);

    boost::asio::io_context& io_;
    Options opts_;
    std::atomic<std::size_t>& queued_;
    std::shared_ptr<CursorStore> store_;
    std::unique_ptr<boost::asio::ssl::context> tls_;
    std::mt19937_64 jitter_;

    std::atomic<State> state_{State::idle};
    std::atomic<std::uint64_t> user_id_{0};
    std::atomic<std::uint64_t> session_user_{0};
    Phase phase_ = Phase::idle;
    std::uint64_t session_generation_ = 0;  // bumped by every login() and close()

    // The current login.
    std::optional<std::promise<LoginInfo>> login_promise_;
    std::string token_;
    std::vector<std::string> connectors_;
    std::size_t connector_index_ = 0;
    std::size_t failed_in_a_row_ = 0;  // connectors that failed before the first LoginResult
    bool ever_connected_ = false;      // in this login()
    unsigned attempts_ = 0;            // reconnects since the last LoginResult
    // A connector refused the connection with a retry_after_ms (an abuse limit): the next
    // reconnect waits at least this long.
    std::chrono::milliseconds reconnect_hint_{0};

    // The current connection and session.
    std::shared_ptr<Link> link_;
    LoginInfo session_;
    std::uint32_t max_frame_bytes_ = im::wire::kDefaultMaxFrameBytes;
    Clock::time_point last_received_{};
    boost::asio::steady_timer reconnect_timer_;
    boost::asio::steady_timer login_timer_;
    boost::asio::steady_timer heartbeat_timer_;
    boost::asio::steady_timer tick_timer_;

    std::uint64_t last_request_id_ = 0;
    std::map<std::uint64_t, Request> pending_;  // in flight on the live link
    std::deque<Request> parked_;                // app requests waiting for a session

    Outbox outbox_;
    StateLog* state_log_ = nullptr;       // Options::state_dir's, or none
    std::vector<std::string> forgotten_;  // acknowledged since the last flush_state()
    // Send attempts on the wire without an answer yet (the current ones and superseded ones): the
    // connector counts each until it answers, whatever the outbox thinks of it. By request id, with
    // the time after which it is assumed lost.
    std::map<std::uint64_t, Clock::time_point> sends_on_wire_;

    std::map<std::uint64_t, InConversation> inbox_;
    std::set<std::uint64_t> receipts_due_;
    std::map<std::uint64_t, Clock::time_point> sync_retry_at_;
    // Conversation syncs run at most kMaxSyncs at once (a login after a long absence may find
    // hundreds of conversations behind: the connector would refuse what exceeds its pending
    // limit); the others wait here, in order.
    std::size_t syncs_running_ = 0;
    std::deque<std::uint64_t> sync_queue_;
    std::optional<Clock::time_point> list_retry_at_;
    ListSync list_;
    // A SyncHint{0} means the connector lost a transfer link: receipts sent around then were
    // dropped (the connector answers none). Once the list sync gets an answer again, every stored
    // watermark goes again (idempotent).
    bool watermarks_due_ = false;
    std::map<std::uint64_t, MyGroupMessages> my_group_messages_;  // by group
    bool store_dirty_ = false;
};

}  // namespace imclient::detail
