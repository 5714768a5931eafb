#pragma once
// Plain value types of the imclient API. No Asio and no protobuf types appear in the public
// headers: an app needs only the C++ standard library to use them.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace imclient {

// The wire error codes (same numbers as im.client.ErrorCode in proto/client.proto) plus a few
// local ones that never travel on the wire.
enum class ErrorCode : std::uint32_t {
    none = 0,
    bad_request = 1,
    unauthenticated = 2,
    not_logged_in = 3,
    already_logged_in = 4,
    forbidden = 5,
    blocked = 6,
    not_found = 7,
    out_of_order = 8,
    rate_limited = 9,
    frame_too_large = 10,
    bad_frame = 11,
    unknown_body = 12,
    unavailable = 13,
    timeout = 14,
    internal = 15,
    version_unsupported = 16,
    overloaded = 17,
    // Local codes.
    message_too_large = 1000,  // the Send frame would exceed the connector's max_frame_bytes
    outbox_full = 1001,        // Options::max_outbox unacknowledged messages are queued already
    closed = 1002,             // the client was closed (or destroyed) before an answer came
    unreachable = 1003,        // no connector (or im-rest) could be reached
    rest_error = 1004,         // im-rest answered the login with an error status
    kicked = 1005,             // the session was kicked (replaced, logged out)
    invalid_argument = 1006,   // a bad argument to an API call (peer 0, empty token, ...)
    io_error = 1007,           // a local file could not be read or written
    integrity = 1008,          // a file's bytes do not match its sha256
    state_locked = 1009,       // Options::state_dir is in use by another Client (of any process)
    other_user = 1010,  // a message restored from state_dir was queued by another user: not sent
};

const char* to_string(ErrorCode code) noexcept;

// Thrown by the API calls that refuse synchronously (send_text on a full outbox) and stored in
// the futures that fail.
class Error : public std::runtime_error {
  public:
    Error(ErrorCode code, const std::string& what) : std::runtime_error(what), code_(code) {}
    ErrorCode code() const noexcept { return code_; }

  private:
    ErrorCode code_;
};

enum class State : std::uint8_t {
    idle,          // constructed, login() not called yet
    connecting,    // first connection of a login() (REST login, TCP/TLS, Login frame)
    connected,     // LoginResult received: the session is live
    reconnecting,  // the connection dropped; retrying with backoff
    kicked,        // Kick REPLACED or LOGGED_OUT: no reconnect until the next login()
    auth_failed,   // the token or the password was refused: no retry
    closed,        // close() (or no connector reachable at login): nothing runs
};

const char* to_string(State state) noexcept;

enum class ReceiptKind : std::uint8_t { delivered = 1, read = 2 };
// group_event: a group's system message (Message::group_event says what changed).
enum class MessageType : std::uint8_t { text = 1, file = 2, group_event = 3 };

// Same numbers as im.client.GroupRole and im.client.GroupEventKind.
enum class GroupRole : std::uint8_t { unspecified = 0, member = 1, admin = 2, owner = 3 };
enum class GroupEventKind : std::uint8_t {
    unspecified = 0,
    created = 1,         // user_ids: the initial members (actor: the owner); name
    members_added = 2,   // user_ids: who joined (they see the group from this seq on)
    member_removed = 3,  // user_ids: who the actor removed (they see nothing after this seq)
    member_left = 4,     // the actor left
    renamed = 5,         // name
    role_changed = 6,    // user_ids[0] got role
    owner_changed = 7,   // user_ids[0] is the new owner (the old one became admin)
    deleted = 8,         // the group's last message
};

const char* to_string(GroupRole role) noexcept;
const char* to_string(GroupEventKind kind) noexcept;

// What a group's system message says (Message::type == MessageType::group_event).
struct GroupEvent {
    GroupEventKind kind = GroupEventKind::unspecified;
    std::uint64_t actor_user_id = 0;
    std::vector<std::uint64_t> user_ids;
    std::string name;
    GroupRole role = GroupRole::unspecified;
};

// A file uploaded before with POST /v1/files.
struct FileRef {
    std::uint64_t file_id = 0;
    std::string name;
    std::uint64_t size = 0;
    std::string sha256;  // lowercase hex
    std::string mime;
};

// send_file(peer, path): the uploaded file and the FILE message queued for it.
struct FileSent {
    std::string client_msg_id;  // as send_text() returns; on_sent / on_send_failed report it
    FileRef file;               // as the server stored it
};

// One stored message of a conversation.
struct Message {
    std::uint64_t conversation_id = 0;
    std::uint64_t seq = 0;  // 1, 2, 3, ... per conversation
    std::uint64_t msg_id = 0;
    std::uint64_t sender_user_id = 0;
    std::string sender_device_id;
    MessageType type = MessageType::text;
    std::string text;
    FileRef file;  // type == file
    std::int64_t created_ms = 0;
    std::string client_msg_id;  // 32 lowercase hex characters (empty if the server sent none)
    GroupEvent group_event;     // type == group_event (sender_user_id is its actor)
};

// A message of ours was committed (SENT): it will never be lost.
struct SendAck {
    std::string client_msg_id;
    std::uint64_t peer_user_id = 0;  // 0 for a group message
    std::uint64_t group_id = 0;      // a group message: its group (== conversation_id)
    std::uint64_t conversation_id = 0;
    std::uint64_t msg_id = 0;
    std::uint64_t seq = 0;
    std::int64_t created_ms = 0;
};

// A message of ours was refused for good (FORBIDDEN, BLOCKED, BAD_REQUEST, NOT_FOUND, or locally:
// message_too_large). Nothing was stored.
struct SendFailure {
    std::string client_msg_id;
    std::uint64_t peer_user_id = 0;  // 0 for a group message
    std::uint64_t group_id = 0;      // a group message (FORBIDDEN: not a member)
    std::uint64_t conversation_id = 0;
    ErrorCode code = ErrorCode::none;
    std::string message;
};

// A message of ours restored from Options::state_dir (Client::restored_sends()).
struct RestoredSend {
    std::string client_msg_id;  // 32 hex chars, as send_text() returned it then
    std::uint64_t peer_user_id = 0;  // 0 for a group message
    std::uint64_t group_id = 0;
    MessageType type = MessageType::text;
    std::string text;
    FileRef file;  // type == file
};

struct Conversation {
    std::uint64_t conversation_id = 0;
    std::uint64_t peer_user_id = 0;
    std::uint64_t last_seq = 0;
    std::uint64_t my_delivered_seq = 0;
    std::uint64_t my_read_seq = 0;
    std::uint64_t peer_delivered_seq = 0;
    std::uint64_t peer_read_seq = 0;
    std::uint64_t unread = 0;
    std::int64_t updated_ms = 0;
    // A group conversation (conversation_id is the group id, peer_user_id 0; the peer_* seqs are
    // 0: read_by() tells the members' watermarks). unread counts the others' messages.
    bool group = false;
    std::string title;  // the group's name
    std::uint32_t member_count = 0;
    std::uint64_t joined_seq = 0;  // nothing before it is visible to me
    std::uint64_t left_seq = 0;    // non-zero: no longer a member; messages up to it stay visible
};

// read_by(): one member's watermarks in a group.
struct MemberReceipt {
    std::uint64_t user_id = 0;
    std::uint64_t delivered_seq = 0;
    std::uint64_t read_seq = 0;
    GroupRole role = GroupRole::unspecified;
};

// read_by(conversation, seq): every current member of the group but me and their watermarks; a
// member has received (read) message seq when delivered_seq (read_seq) >= seq.
struct ReadByResult {
    std::uint64_t conversation_id = 0;
    std::uint64_t seq = 0;
    std::vector<MemberReceipt> members;
    std::size_t delivered_count() const noexcept;  // members with delivered_seq >= seq
    std::size_t read_count() const noexcept;       // members with read_seq >= seq
};

// on_member_receipt(): a group member's watermark passed messages of mine.
struct MemberReceiptEvent {
    std::uint64_t conversation_id = 0;  // the group
    std::uint64_t user_id = 0;          // the member (never me)
    ReceiptKind kind = ReceiptKind::delivered;
    std::uint64_t up_to_seq = 0;
    // The seqs of my messages (sent by any of my devices during this Client's life) that this
    // watermark covers and an earlier one of the same member and kind did not, ascending.
    std::vector<std::uint64_t> my_seqs;
};

struct LoginInfo {
    std::uint64_t user_id = 0;
    std::uint64_t login_epoch = 0;
    std::string connector;     // "host:port" the session runs on
    std::string connector_id;  // as the connector names itself
    std::string token;         // the bearer token (also usable for im-rest calls)
    std::uint32_t heartbeat_interval_s = 0;
    std::uint32_t max_frame_bytes = 0;
    std::int64_t server_time_ms = 0;
};

// Group ids (and so group conversation ids) are 1 .. 2^31-1; one-to-one ids are >= 2^32.
constexpr bool is_group_conversation(std::uint64_t conversation) noexcept {
    return conversation >= 1 && conversation <= 0x7fffffffULL;
}

// The id of the one-to-one conversation of users a and b: (min << 32) | max.
constexpr std::uint64_t conversation_id(std::uint64_t a, std::uint64_t b) noexcept {
    return a < b ? (a << 32) | b : (b << 32) | a;
}

// The other participant of a one-to-one conversation.
constexpr std::uint64_t peer_of(std::uint64_t conversation, std::uint64_t me) noexcept {
    const std::uint64_t low = conversation >> 32;
    const std::uint64_t high = conversation & 0xffffffffULL;
    return low == me ? high : low;
}

}  // namespace imclient
