#pragma once
// imclient: the asynchronous C++ client of the IM cluster. An app uses it without knowing Asio.
//
// Threading: a Client owns one internal thread that runs all of its network I/O and state.
// Every public method is thread-safe (it hands the work to that thread) and returns at once.
// Every callback runs on that internal thread, one at a time: do not block in a callback (the
// client cannot read, send or acknowledge anything meanwhile), do not wait on a future of this
// client there, and do not destroy the Client from a callback (close() is fine).
//
// Guarantees (see docs/CLIENT.md): on_message fires at most once per (conversation, seq) within
// a client lifetime and in seq order per conversation; the DELIVERED receipt and the cursor store
// advance only after on_message returned; a message handed to send_*() is resent with the same
// client_msg_id until the server answers it for good (on_sent or on_send_failed), across
// reconnects, in the order it was sent within its conversation; with Options::state_dir also
// across app restarts and crashes.

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "imclient/cursor_store.hpp"
#include "imclient/types.hpp"

namespace imclient {

struct Options {
    std::string rest_url = "http://127.0.0.1:8080";  // im-rest, for login(); http or https
    std::vector<std::string> connectors;  // "host:port"; non-empty overrides the login answer
    std::string device_id;                // stable per installation; empty: a random one
    // Where the client keeps what must survive the app (docs/CLIENT.md "Persistent state"): its
    // unacknowledged messages and, unless cursor_store is set, its cursors, in one append-only
    // log. Empty (the default): both live in memory and die with the Client. One directory per
    // (user, device), used by one Client at a time: the constructor throws Error{state_locked}
    // while another one (of any process) holds it, Error{io_error} when it cannot be used.
    std::string state_dir;
    std::shared_ptr<CursorStore> cursor_store;  // default: state_dir's, else a MemoryCursorStore
    bool tls = false;                           // TLS to the connectors
    std::string tls_ca_file;      // CA bundle (PEM) for connectors and https; empty: system CAs
    std::string tls_server_name;  // SNI and certificate name; empty: the connector's host
    std::chrono::milliseconds connect_timeout{5000};   // TCP + TLS handshake
    std::chrono::milliseconds request_timeout{10000};  // a request (LoginResult, Send, sync)
    std::chrono::milliseconds reconnect_min{100};
    std::chrono::milliseconds reconnect_max{5000};
    std::uint32_t sync_page = 200;  // messages per SyncMessages page
    std::string client_version = "imclient/0.1";
    // Bounds.
    std::size_t max_outbox = 10000;   // unacknowledged messages; send_*() throws beyond
    std::size_t max_in_flight = 256;  // Sends in flight per conversation
    // Requests a session has at the connector at once, every conversation together: Sends (also
    // superseded attempts not answered yet) plus syncs and history. Keep it below the connector's
    // sessions.max_pending_requests (256 by default), which answers OVERLOADED beyond; Sends wait.
    std::size_t max_session_in_flight = 192;
    std::size_t max_buffered = 1024;  // out-of-order Delivers kept per conversation
    std::uint32_t max_receive_frame_bytes =
        8 * 1024 * 1024;                                   // a larger server frame drops the link
    std::size_t max_write_queue_bytes = 16 * 1024 * 1024;  // unsent bytes before the link drops
    // Diagnostics, for test harnesses: every message as it arrives from the server (a pushed
    // Deliver: pushed = true; an entry of a sync page: false), BEFORE the library drops repeats,
    // on the internal thread. Repeats are normal (a push and a sync page can carry the same seq);
    // on_message still fires once per (conversation, seq). Leave it empty in apps.
    std::function<void(const Message& raw, bool pushed)> on_raw_message;
};

class Client {
  public:
    using MessageHandler = std::function<void(const Message&)>;
    using SentHandler = std::function<void(const SendAck&)>;
    using SendFailedHandler = std::function<void(const SendFailure&)>;
    using ReceiptHandler = std::function<void(std::uint64_t conversation_id, std::uint64_t user_id,
                                              ReceiptKind kind, std::uint64_t up_to_seq)>;
    using StateHandler = std::function<void(State state, const std::string& detail)>;
    using TypingHandler = std::function<void(std::uint64_t conversation_id, std::uint64_t user_id)>;
    using PresenceHandler = std::function<void(std::uint64_t user_id, bool online)>;
    using MemberReceiptHandler = std::function<void(const MemberReceiptEvent&)>;
    // Bytes transferred so far and the total (0 when the server did not say).
    using ProgressHandler = std::function<void(std::uint64_t done, std::uint64_t total)>;

    explicit Client(Options options);
    // Closes the session and joins the internal thread. No callback runs once it started, but one
    // may be running when it starts: keep what the callbacks use alive until it returns.
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    // Callbacks: set them before login(). A handler that throws is ignored (the event counts as
    // handled).
    void on_message(MessageHandler fn);
    void on_sent(SentHandler fn);
    void on_send_failed(SendFailedHandler fn);
    void on_receipt(ReceiptHandler fn);
    void on_state(StateHandler fn);
    void on_typing(TypingHandler fn);
    void on_presence(PresenceHandler fn);
    // A group member's DELIVERED or READ watermark passed messages I sent in the group (from any
    // of my devices, seen by this Client): fires once per (member, kind) and newly covered seqs.
    // on_receipt fires for every receipt event as well, groups included.
    void on_member_receipt(MemberReceiptHandler fn);

    // POST /v1/sessions to im-rest, then connect. The future holds the first LoginResult, or an
    // Error: rest_error / auth_failed (401) / unreachable / closed / kicked.
    std::future<LoginInfo> login(std::string username, std::string password);
    // Connect with a token obtained elsewhere. user_id may be 0 (learned from LoginResult);
    // connectors empty: Options::connectors.
    std::future<LoginInfo> login_with_token(std::string token, std::uint64_t user_id = 0,
                                            std::vector<std::string> connectors = {});

    // Queue a message (also while offline). Returns its client_msg_id (32 hex chars). Throws
    // Error{outbox_full} when Options::max_outbox messages are unacknowledged, Error
    // {invalid_argument} for peer 0. With Options::state_dir the message is in the state log
    // when this returns (it survives a crash of the app from then on); Error{io_error} when it
    // cannot be written there (it is not queued then).
    std::string send_text(std::uint64_t peer_user_id, std::string text);
    std::string send_file(std::uint64_t peer_user_id, const FileRef& file);
    // The same to a group (docs/CLIENT.md "Groups"): one stream per group, as per peer. Error
    // {invalid_argument} for an id outside 1 .. 2^31-1. A non-member's message fails for good
    // with forbidden (on_send_failed).
    std::string send_group_text(std::uint64_t group_id, std::string text);
    std::string send_group_file(std::uint64_t group_id, const FileRef& file);

    // Files (docs/CLIENT.md "Files"). Transfers stream over HTTP(S) to im-rest on the client's
    // file thread (started on first use), never on the chat connection; progress runs on the
    // internal thread like every callback. They need a login (the token): Error{not_logged_in}
    // otherwise. A Client destroyed meanwhile abandons them (the future reports broken_promise).
    //
    // Uploads the file at `path` (POST /v1/files, its last path component as the name), checks
    // that the server stored the same sha256, then queues a FILE message to the peer. Errors:
    // io_error, unauthenticated, rest_error (e.g. 413 too large), unreachable, integrity,
    // outbox_full, invalid_argument.
    std::future<FileSent> send_file(std::uint64_t peer_user_id, std::string path,
                                    ProgressHandler progress = {});
    // Uploads as send_file(peer, path), then queues the FILE message to the group.
    std::future<FileSent> send_group_file(std::uint64_t group_id, std::string path,
                                          ProgressHandler progress = {});
    // Downloads file `file_id` to `path` (written to path + ".part", renamed when complete) and
    // verifies its sha256 against expected_sha256 (the FileRef's, when given) or else the
    // server's. Errors: not_found (no such file, or not allowed), io_error, integrity,
    // unauthenticated, unreachable, rest_error.
    std::future<FileRef> download(std::uint64_t file_id, std::string path,
                                  ProgressHandler progress = {}, std::string expected_sha256 = {});

    // Receipt READ up to seq (stored, resent after every login).
    void mark_read(std::uint64_t conversation_id, std::uint64_t seq);
    // Typing indicator to peer (dropped while offline).
    void typing(std::uint64_t peer_user_id);
    // Typing indicator in a group (forwarded to its live members; dropped while offline).
    void group_typing(std::uint64_t group_id);

    // Every conversation of the user (SyncConversations from cursor 0, all pages), groups
    // included (Conversation::group), one entry per conversation.
    std::future<std::vector<Conversation>> conversations();
    // The page of messages just below before_seq (0: the newest page), ascending by seq. Does not
    // fire on_message and does not move any watermark.
    std::future<std::vector<Message>> history(std::uint64_t conversation_id,
                                              std::uint64_t before_seq, std::uint32_t limit);

    // Who of a group has received and read message seq: every current member but me and their
    // watermarks. Errors: forbidden / not_found (not a member, no such group), timeout, closed.
    std::future<ReadByResult> read_by(std::uint64_t conversation_id, std::uint64_t seq);

    // Ends the session (state closed). Pending futures fail with Error{closed}. Unacknowledged
    // messages stay in Options::state_dir for the next Client on it (without one they are
    // abandoned; a later resend with the same client_msg_id would dedupe).
    void close();

    std::uint64_t user_id() const;
    State state() const;
    std::size_t pending_sends() const;  // unacknowledged messages in the outbox
    // The messages restored from Options::state_dir when the Client was constructed (queued by an
    // earlier run and not acknowledged then), in the order they were queued. They go after the
    // login like any other, and on_sent / on_send_failed report them.
    const std::vector<RestoredSend>& restored_sends() const;
    const std::string& device_id() const;

  private:
    std::future<FileSent> upload_and_send(std::uint64_t peer_user_id, std::uint64_t group_id,
                                          std::string path, ProgressHandler progress);
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace imclient
