// The frame codec (common/wire) on an untrusted byte stream, as every connection runs it: client
// sessions, connector<->transfer links, the client library.
//
// Input: [max frame size choice][read size seed][the stream...]. Properties:
// - the frames found do not depend on how the stream is cut into reads (one read, many short
//   ones), nor does the first framing error;
// - every frame is 1..max bytes; the decoder never holds more than one partial frame and holds
//   no buffer at all when nothing is pending (idle connections cost nothing);
// - on_frame returning false stops at once;
// - a body that parses as a client or link envelope re-encodes (append_frame, encode_frame) to a
//   frame that decodes and parses to the same message; append_raw_frame round-trips any body.
#include <google/protobuf/stubs/logging.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "im/proto/client.pb.h"
#include "im/proto/internal.pb.h"
#include "im/wire/frame_codec.hpp"

namespace {

using im::wire::FrameDecoder;
using im::wire::FrameError;

constexpr std::array<std::uint32_t, 8> kMaxFrame = {
    1, 2, 5, 16, 300, 4096, im::wire::kDefaultMaxFrameBytes, 16u << 20};

struct Decoded {
    std::vector<std::string> frames;
    FrameError error = FrameError::none;
};

void check_decoder_state(const FrameDecoder& d) {
    FUZZ_CHECK(d.buffered_bytes() < im::wire::kHeaderBytes + d.max_frame_bytes());
    // Nothing pending: no heap buffer (an empty std::string keeps only its inline capacity).
    if (d.buffered_bytes() == 0) FUZZ_CHECK(d.buffer_capacity() <= std::string().capacity());
}

// Feeds `stream` in reads whose sizes come from `seed` (0: one read of everything).
Decoded decode(std::string_view stream, std::uint32_t max, std::uint8_t seed) {
    Decoded out;
    FrameDecoder d(max);
    std::uint32_t x = seed * 2654435761u + 1;
    std::size_t at = 0;
    while (at < stream.size() && d.error() == FrameError::none) {
        std::size_t n = stream.size() - at;
        if (seed != 0) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            n = std::min<std::size_t>(n, 1 + x % (seed % 2 == 0 ? 7u : 300u));
        }
        const auto err = d.feed(stream.data() + at, n, [&](std::string_view body) {
            FUZZ_CHECK(!body.empty() && body.size() <= max);
            out.frames.emplace_back(body);
            return true;
        });
        FUZZ_CHECK(err == d.error());
        if (err == FrameError::none) check_decoder_state(d);
        at += n;
    }
    out.error = d.error();
    return out;
}

template <class Message>
void check_reencode(std::string_view body) {
    Message m;
    if (im::wire::parse_body(body, m) != FrameError::none) return;
    const std::string frame = im::wire::encode_frame(m);
    FUZZ_CHECK(frame.size() >= im::wire::kHeaderBytes);
    FUZZ_CHECK(im::wire::read_header(frame.data()) == frame.size() - im::wire::kHeaderBytes);
    std::string appended = "prefix";
    const auto n = im::wire::append_frame(appended, m);
    FUZZ_CHECK(appended.substr(6) == frame && n == frame.size() - im::wire::kHeaderBytes);
    if (frame.size() == im::wire::kHeaderBytes) return;  // an empty message: a zero-length frame
    Message again;
    FUZZ_CHECK(im::wire::parse_body(std::string_view(frame).substr(im::wire::kHeaderBytes),
                                    again) == FrameError::none);
    FUZZ_CHECK(again.SerializeAsString() == m.SerializeAsString());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    // protobuf logs every string field with invalid UTF-8 it refuses; the fuzzer makes many.
    google::protobuf::SetLogHandler(nullptr);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const std::uint32_t max = kMaxFrame[data[0] % kMaxFrame.size()];
    const std::uint8_t seed = data[1];
    const std::string_view stream(reinterpret_cast<const char*>(data + 2), size - 2);

    const Decoded whole = decode(stream, max, 0);
    const Decoded pieces = decode(stream, max, seed == 0 ? 1 : seed);
    FUZZ_CHECK(whole.frames == pieces.frames);
    FUZZ_CHECK(whole.error == pieces.error);

    // Stopping after k frames delivers exactly the first k.
    if (!whole.frames.empty()) {
        const std::size_t k = seed % whole.frames.size();
        FrameDecoder d(max);
        std::size_t seen = 0;
        d.feed(stream.data(), stream.size(), [&](std::string_view body) {
            FUZZ_CHECK(seen <= k && body == whole.frames[seen]);
            ++seen;
            return seen <= k;
        });
        FUZZ_CHECK(seen == k + 1);
    }

    std::size_t parsed = 0;
    for (const auto& body : whole.frames) {
        if (++parsed > 8) break;  // bounded work per input
        check_reencode<im::client::Envelope>(body);
        check_reencode<im::internal::LinkEnvelope>(body);
        std::string raw;
        im::wire::append_raw_frame(raw, body);
        const Decoded back = decode(raw, max, 0);
        FUZZ_CHECK(back.error == FrameError::none && back.frames.size() == 1 &&
                   back.frames[0] == body);
    }
    return 0;
}
