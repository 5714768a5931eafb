#pragma once
// The frame codec of every link in the system: a 4-byte big-endian length N followed by N bytes
// of one serialized protobuf message. Depends on protobuf alone (the client library links it).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace google::protobuf {
class MessageLite;
}

namespace im::wire {

inline constexpr std::size_t kHeaderBytes = 4;
inline constexpr std::uint32_t kDefaultMaxFrameBytes = 64 * 1024;
// No configuration may exceed this: a length beyond it is certainly garbage.
inline constexpr std::uint32_t kAbsoluteMaxFrameBytes = 64 * 1024 * 1024;

enum class FrameError : std::uint8_t {
    none = 0,
    zero_length,  // a header announcing an empty frame
    oversize,     // a header announcing more than the configured maximum
    unparsable,   // a body that is not a valid message of the expected type
};

const char* to_string(FrameError e) noexcept;

std::uint32_t read_header(const char* p) noexcept;
void write_header(char* p, std::uint32_t body_bytes) noexcept;

// Appends header + serialized message to `out` (no intermediate copy). Returns the body size.
// The caller keeps the result under the peer's maximum (see encoded_size()).
std::size_t append_frame(std::string& out, const google::protobuf::MessageLite& msg);
// Appends header + an already serialized body.
void append_raw_frame(std::string& out, std::string_view body);
std::string encode_frame(const google::protobuf::MessageLite& msg);

// Parses one frame body into `msg`; unparsable when protobuf rejects it.
FrameError parse_body(std::string_view body, google::protobuf::MessageLite& msg);

// Incremental decoder for one byte stream. Whole frames found in the bytes passed to feed() are
// handed out as views into those bytes (no copy); only a partial frame at the end is copied into
// the decoder, and that buffer is released once it empties, so an idle connection holds no buffer.
class FrameDecoder {
public:
    explicit FrameDecoder(std::uint32_t max_frame_bytes = kDefaultMaxFrameBytes) noexcept
        : max_frame_bytes_(max_frame_bytes) {}

    // Calls on_frame(std::string_view body) for every complete frame, in order; on_frame returns
    // false to stop early (the rest of the bytes are dropped: the connection is being closed).
    // Returns the first framing error; after an error the decoder stays failed.
    template <class OnFrame>
    FrameError feed(const char* data, std::size_t n, OnFrame&& on_frame);

    std::size_t buffered_bytes() const noexcept { return pending_.size(); }
    std::size_t buffer_capacity() const noexcept { return pending_.capacity(); }
    std::uint32_t max_frame_bytes() const noexcept { return max_frame_bytes_; }
    FrameError error() const noexcept { return error_; }
    void reset() noexcept;

private:
    FrameError check_length(std::uint32_t n) noexcept;

    std::uint32_t max_frame_bytes_;
    FrameError error_ = FrameError::none;
    std::string pending_;  // an incomplete frame (header included) carried over between reads
};

template <class OnFrame>
FrameError FrameDecoder::feed(const char* data, std::size_t n, OnFrame&& on_frame) {
    if (error_ != FrameError::none) return error_;

    // 1. Complete the carried-over frame, if any, from the front of the new bytes.
    if (!pending_.empty()) {
        if (pending_.size() < kHeaderBytes) {
            const std::size_t take = std::min(kHeaderBytes - pending_.size(), n);
            pending_.append(data, take);
            data += take;
            n -= take;
            if (pending_.size() < kHeaderBytes) return FrameError::none;
            if (check_length(read_header(pending_.data())) != FrameError::none) return error_;
        }
        const std::size_t want = kHeaderBytes + read_header(pending_.data());
        const std::size_t take = std::min(want - pending_.size(), n);
        pending_.append(data, take);
        data += take;
        n -= take;
        if (pending_.size() < want) return FrameError::none;
        const bool go_on = on_frame(std::string_view(pending_).substr(kHeaderBytes));
        std::string().swap(pending_);  // release: the common case needs no buffer at all
        if (!go_on) return FrameError::none;
    }

    // 2. Every whole frame directly from the caller's bytes.
    while (n >= kHeaderBytes) {
        const std::uint32_t len = read_header(data);
        if (check_length(len) != FrameError::none) return error_;
        if (n - kHeaderBytes < len) break;
        if (!on_frame(std::string_view(data + kHeaderBytes, len))) return FrameError::none;
        data += kHeaderBytes + len;
        n -= kHeaderBytes + len;
    }

    // 3. Keep the partial tail.
    if (n > 0) pending_.assign(data, n);
    return FrameError::none;
}

}  // namespace im::wire
