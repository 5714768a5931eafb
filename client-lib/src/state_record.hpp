#pragma once
// The records of the client's state log (state_log.hpp) as pure functions: encoding, framing with
// a length and a CRC-32C, and parsing that tells a torn or corrupt record from a valid one. No I/O.
//
// File: a 12-byte header ("IMCSTATE" + u32 version), then records, each
//   u32 payload length | u32 CRC-32C of the payload | payload
// with every integer little-endian and every string a u32 length + bytes. Payloads:
//   add          kind, client_msg_id, owner, peer, type, text, file (id, name, size, sha256, mime)
//   add_group    as add, with the group id in place of the peer (a group message)
//   done         kind, client_msg_id                 (SENT or refused for good: no longer queued)
//   login        kind, user       (a login of `user`: queued messages without an owner are his)
//   cursor_owner kind, user       (the CursorStore's owner)
//   cursor_clear kind             (the CursorStore was cleared)
//   sync_cursor  kind, cursor
//   marks        kind, conversation, delivered, read   (watermarks only move forward)

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "outbox.hpp"

namespace imclient::detail::state {

inline constexpr std::string_view kMagic = "IMCSTATE";
inline constexpr std::uint32_t kVersion = 1;
inline constexpr std::size_t kHeaderBytes = 12;
inline constexpr std::size_t kFrameBytes = 8;  // length + CRC
// Far above any message the connectors accept: a larger length is corruption.
inline constexpr std::uint32_t kMaxPayloadBytes = 64u << 20;

enum class Kind : std::uint8_t {
    add = 1,
    done = 2,
    login = 3,
    cursor_owner = 4,
    cursor_clear = 5,
    sync_cursor = 6,
    marks = 7,
    add_group = 8,  // parsed as an add with OutMessage::group set
};

struct Record {
    Kind kind = Kind::done;
    OutMessage message;           // add; done: client_msg_id only
    std::uint64_t value = 0;      // login, cursor_owner: the user; sync_cursor; marks: conversation
    std::uint64_t delivered = 0;  // marks
    std::uint64_t read = 0;       // marks
};

std::uint32_t crc32c(std::string_view data) noexcept;

std::string header();
// Whether `data` starts with a header of this version. A shorter `data` never does.
bool valid_header(std::string_view data) noexcept;

// Each appends one framed record to `out`.
void append_add(std::string& out, const OutMessage& m);
void append_done(std::string& out, std::string_view client_msg_id);
void append_value(std::string& out, Kind kind,
                  std::uint64_t value);  // login, cursor_owner, sync_cursor
void append_clear(std::string& out);
void append_marks(std::string& out, std::uint64_t conversation, std::uint64_t delivered,
                  std::uint64_t read);

struct Parsed {
    Record record;
    std::size_t bytes = 0;  // the whole framed record
};
// The record at data[pos..]; nullopt when it is torn (too short) or corrupt (a length beyond the
// bound, a CRC mismatch, a payload that does not decode).
std::optional<Parsed> parse(std::string_view data, std::size_t pos);

}  // namespace imclient::detail::state
