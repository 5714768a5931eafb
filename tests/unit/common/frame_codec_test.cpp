#include "im/wire/frame_codec.hpp"

#include <gtest/gtest.h>

#include <random>

#include "im/proto/client.pb.h"

namespace im::wire {
namespace {

client::Envelope make_send(std::uint64_t rid, const std::string& text) {
    client::Envelope env;
    env.set_request_id(rid);
    auto* s = env.mutable_send();
    s->set_peer_user_id(42);
    s->set_client_msg_id(std::string(16, 'x'));
    s->set_stream_seq(rid);
    s->set_type(client::TEXT);
    s->set_text(text);
    return env;
}

struct Collected {
    std::vector<std::string> bodies;
    auto sink() {
        return [this](std::string_view b) {
            bodies.emplace_back(b);
            return true;
        };
    }
};

TEST(FrameCodec, HeaderIsBigEndian) {
    char h[4];
    write_header(h, 0x01020304);
    EXPECT_EQ(h[0], 1);
    EXPECT_EQ(h[1], 2);
    EXPECT_EQ(h[2], 3);
    EXPECT_EQ(h[3], 4);
    EXPECT_EQ(read_header(h), 0x01020304u);
    write_header(h, 0xfffffffe);
    EXPECT_EQ(read_header(h), 0xfffffffeu);
}

TEST(FrameCodec, RoundTripOneFrame) {
    const auto env = make_send(7, "hello");
    const std::string wire = encode_frame(env);
    ASSERT_EQ(wire.size(), kHeaderBytes + env.ByteSizeLong());
    EXPECT_EQ(read_header(wire.data()), env.ByteSizeLong());

    FrameDecoder dec;
    Collected c;
    EXPECT_EQ(dec.feed(wire.data(), wire.size(), c.sink()), FrameError::none);
    ASSERT_EQ(c.bodies.size(), 1u);
    client::Envelope back;
    ASSERT_EQ(parse_body(c.bodies[0], back), FrameError::none);
    EXPECT_EQ(back.request_id(), 7u);
    EXPECT_EQ(back.send().text(), "hello");
    EXPECT_EQ(dec.buffered_bytes(), 0u);
}

TEST(FrameCodec, ManyFramesInOneRead) {
    std::string wire;
    for (int i = 1; i <= 100; ++i) append_frame(wire, make_send(static_cast<std::uint64_t>(i), "m" + std::to_string(i)));
    FrameDecoder dec;
    Collected c;
    ASSERT_EQ(dec.feed(wire.data(), wire.size(), c.sink()), FrameError::none);
    ASSERT_EQ(c.bodies.size(), 100u);
    for (int i = 0; i < 100; ++i) {
        client::Envelope e;
        ASSERT_EQ(parse_body(c.bodies[static_cast<std::size_t>(i)], e), FrameError::none);
        EXPECT_EQ(e.request_id(), static_cast<std::uint64_t>(i + 1));
    }
    EXPECT_LE(dec.buffer_capacity(), std::string().capacity()) << "no buffer is kept when every frame was whole";
}

TEST(FrameCodec, SplitAtEveryByteOffset) {
    std::string wire;
    append_frame(wire, make_send(1, "first"));
    append_frame(wire, make_send(2, std::string(300, 'z')));
    append_frame(wire, make_send(3, ""));
    for (std::size_t cut = 0; cut <= wire.size(); ++cut) {
        FrameDecoder dec;
        Collected c;
        ASSERT_EQ(dec.feed(wire.data(), cut, c.sink()), FrameError::none) << cut;
        ASSERT_EQ(dec.feed(wire.data() + cut, wire.size() - cut, c.sink()), FrameError::none) << cut;
        ASSERT_EQ(c.bodies.size(), 3u) << "cut at " << cut;
        for (std::uint64_t i = 0; i < 3; ++i) {
            client::Envelope e;
            ASSERT_EQ(parse_body(c.bodies[i], e), FrameError::none);
            EXPECT_EQ(e.request_id(), i + 1);
        }
        EXPECT_EQ(dec.buffered_bytes(), 0u);
        EXPECT_LE(dec.buffer_capacity(), std::string().capacity()) << "the carry-over buffer is released";
    }
}

TEST(FrameCodec, OneByteAtATime) {
    std::string wire;
    for (std::uint64_t i = 1; i <= 5; ++i) append_frame(wire, make_send(i, std::string(i * 10, 'a')));
    FrameDecoder dec;
    Collected c;
    for (char ch : wire) ASSERT_EQ(dec.feed(&ch, 1, c.sink()), FrameError::none);
    ASSERT_EQ(c.bodies.size(), 5u);
    client::Envelope e;
    ASSERT_EQ(parse_body(c.bodies[4], e), FrameError::none);
    EXPECT_EQ(e.send().text(), std::string(50, 'a'));
}

TEST(FrameCodec, ZeroLengthIsAnError) {
    const char zero[4] = {0, 0, 0, 0};
    FrameDecoder dec;
    Collected c;
    EXPECT_EQ(dec.feed(zero, 4, c.sink()), FrameError::zero_length);
    EXPECT_TRUE(c.bodies.empty());
    // The decoder stays failed: later bytes are not interpreted.
    const auto good = encode_frame(make_send(1, "x"));
    EXPECT_EQ(dec.feed(good.data(), good.size(), c.sink()), FrameError::zero_length);
    EXPECT_TRUE(c.bodies.empty());
}

TEST(FrameCodec, ZeroLengthAfterSplitHeader) {
    const char zero[4] = {0, 0, 0, 0};
    FrameDecoder dec;
    Collected c;
    EXPECT_EQ(dec.feed(zero, 2, c.sink()), FrameError::none);
    EXPECT_EQ(dec.feed(zero + 2, 2, c.sink()), FrameError::zero_length);
}

TEST(FrameCodec, OversizeDetectedFromTheHeaderAlone) {
    FrameDecoder dec(1024);
    char h[4];
    write_header(h, 1025);
    Collected c;
    EXPECT_EQ(dec.feed(h, 4, c.sink()), FrameError::oversize);
    EXPECT_EQ(dec.buffered_bytes(), 0u) << "nothing is buffered for an oversize frame";

    FrameDecoder split(1024);
    EXPECT_EQ(split.feed(h, 3, c.sink()), FrameError::none);
    EXPECT_EQ(split.feed(h + 3, 1, c.sink()), FrameError::oversize);
}

TEST(FrameCodec, MaximumIsInclusive) {
    FrameDecoder dec(16);
    std::string wire;
    append_raw_frame(wire, std::string(16, 'a'));
    Collected c;
    EXPECT_EQ(dec.feed(wire.data(), wire.size(), c.sink()), FrameError::none);
    EXPECT_EQ(c.bodies.size(), 1u);
}

TEST(FrameCodec, UnparsableBody) {
    client::Envelope e;
    const std::string garbage = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff";
    EXPECT_EQ(parse_body(garbage, e), FrameError::unparsable);
    EXPECT_EQ(parse_body("", e), FrameError::zero_length);
}

TEST(FrameCodec, StopEarlyDropsTheRest) {
    std::string wire;
    for (std::uint64_t i = 1; i <= 3; ++i) append_frame(wire, make_send(i, "x"));
    FrameDecoder dec;
    int seen = 0;
    EXPECT_EQ(dec.feed(wire.data(), wire.size(), [&](std::string_view) { return ++seen < 2; }),
              FrameError::none);
    EXPECT_EQ(seen, 2);
}

TEST(FrameCodec, RandomGarbageNeverCrashes) {
    std::mt19937_64 rng(12345);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_int_distribution<std::size_t> len(1, 4096);
    std::size_t frames = 0, errors = 0;
    for (int round = 0; round < 2000; ++round) {
        std::string junk(len(rng), '\0');
        for (auto& ch : junk) ch = static_cast<char>(byte(rng));
        // Small lengths sometimes, so that some "frames" complete and reach the parser.
        if (round % 3 == 0 && junk.size() >= 4) write_header(junk.data(), static_cast<std::uint32_t>(junk.size() % 64));
        FrameDecoder dec(2048);
        std::size_t off = 0;
        while (off < junk.size()) {
            const std::size_t n = std::min(junk.size() - off, len(rng) % 97 + 1);
            const auto err = dec.feed(junk.data() + off, n, [&](std::string_view body) {
                client::Envelope e;
                (void)parse_body(body, e);
                ++frames;
                return true;
            });
            off += n;
            if (err != FrameError::none) {
                ++errors;
                break;
            }
        }
        EXPECT_LE(dec.buffered_bytes(), 2048u + kHeaderBytes);
    }
    EXPECT_GT(frames, 0u);
    EXPECT_GT(errors, 0u);
}

TEST(FrameCodec, ErrorNames) {
    EXPECT_STREQ(to_string(FrameError::oversize), "frame exceeds the maximum size");
    EXPECT_STREQ(to_string(FrameError::zero_length), "zero-length frame");
    EXPECT_STREQ(to_string(FrameError::unparsable), "unparsable frame body");
}

}  // namespace
}  // namespace im::wire
