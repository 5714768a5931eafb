#include "im/wire/frame_codec.hpp"

#include <google/protobuf/message_lite.h>

#include <limits>

namespace im::wire {

const char* to_string(FrameError e) noexcept {
    switch (e) {
        case FrameError::none: return "none";
        case FrameError::zero_length: return "zero-length frame";
        case FrameError::oversize: return "frame exceeds the maximum size";
        case FrameError::unparsable: return "unparsable frame body";
    }
    return "unknown frame error";
}

std::uint32_t read_header(const char* p) noexcept {
    const auto* u = reinterpret_cast<const unsigned char*>(p);
    return (std::uint32_t{u[0]} << 24) | (std::uint32_t{u[1]} << 16) | (std::uint32_t{u[2]} << 8) |
           std::uint32_t{u[3]};
}

void write_header(char* p, std::uint32_t n) noexcept {
    p[0] = static_cast<char>((n >> 24) & 0xff);
    p[1] = static_cast<char>((n >> 16) & 0xff);
    p[2] = static_cast<char>((n >> 8) & 0xff);
    p[3] = static_cast<char>(n & 0xff);
}

std::size_t append_frame(std::string& out, const google::protobuf::MessageLite& msg) {
    const std::size_t body = msg.ByteSizeLong();
    const std::size_t at = out.size();
    out.resize(at + kHeaderBytes + body);
    write_header(out.data() + at, static_cast<std::uint32_t>(body));
    msg.SerializeWithCachedSizesToArray(reinterpret_cast<std::uint8_t*>(out.data() + at + kHeaderBytes));
    return body;
}

void append_raw_frame(std::string& out, std::string_view body) {
    char header[kHeaderBytes];
    write_header(header, static_cast<std::uint32_t>(body.size()));
    out.append(header, kHeaderBytes);
    out.append(body);
}

std::string encode_frame(const google::protobuf::MessageLite& msg) {
    std::string out;
    append_frame(out, msg);
    return out;
}

FrameError parse_body(std::string_view body, google::protobuf::MessageLite& msg) {
    if (body.empty()) return FrameError::zero_length;
    if (body.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()) ||
        !msg.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
        return FrameError::unparsable;
    }
    return FrameError::none;
}

void FrameDecoder::reset() noexcept {
    error_ = FrameError::none;
    std::string().swap(pending_);
}

FrameError FrameDecoder::check_length(std::uint32_t n) noexcept {
    if (n == 0) {
        error_ = FrameError::zero_length;
    } else if (n > max_frame_bytes_) {
        error_ = FrameError::oversize;
    }
    if (error_ != FrameError::none) std::string().swap(pending_);
    return error_;
}

}  // namespace im::wire
