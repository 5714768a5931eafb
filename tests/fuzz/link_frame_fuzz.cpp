// The frames of an internal link as im-transfer reads them from a connector (and the HelloAck a
// connector checks): the frame codec with the link limit, LinkEnvelope parsing, the rule that
// nothing but a proven Hello is read before authentication, the Hello verifier (MAC, clock
// window, replayed nonces: common/server link_auth) and the session directory the link feeds
// (transfer/session_directory).
//
// Input: the byte stream of a connector. A link that must close (bad frame, first frame not a
// proven Hello, a second Hello) is replaced by a new one reading the rest, like a reconnecting
// connector; the verifier and the directory are the transfer's and live on. A Hello (HelloAck)
// whose auth_mac is the 4 bytes "sign" gets the correct MAC for its fields, so the fuzzer reaches
// past authentication; the clock advances by request_id % 200 s at every Hello. Properties:
// - the verifier accepts exactly the Hellos with a valid MAC, a time within 60 s and a nonce it
//   did not accept before (checked against a model; a nonce is never accepted twice);
// - HelloAck proofs are accepted exactly when they are the transfer's MAC over the Hello nonce;
// - the directory agrees with a model (sessions, users, online) after every frame and reports
//   exactly the users whose presence changed; a closed link leaves no session behind.
#include <google/protobuf/stubs/logging.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "fuzz_check.hpp"
#include "im/proto/internal.pb.h"
#include "im/server/link_auth.hpp"
#include "im/wire/frame_codec.hpp"
#include "session_directory.hpp"

namespace {

using namespace im;
using link_auth::HelloVerifier;

const std::string kSecret = "fuzz-cluster-secret-0123456789";
constexpr std::int64_t kSkewMs = 60'000;
constexpr std::uint32_t kLinkMaxFrame = 16u << 20;  // link.max_frame_bytes default

// The directory's contract, spelled out: (link, user, login_epoch) triples.
struct Model {
    std::set<std::tuple<std::uint64_t, std::uint64_t, std::uint64_t>> sessions;

    std::set<std::uint64_t> online() const {
        std::set<std::uint64_t> users;
        for (const auto& [link, user, epoch] : sessions)
            users.insert(user);
        return users;
    }
    void remove_link(std::uint64_t link) {
        for (auto it = sessions.begin(); it != sessions.end();) {
            it = std::get<0>(*it) == link ? sessions.erase(it) : std::next(it);
        }
    }
};

struct Transfer {
    HelloVerifier verifier{kSecret, std::chrono::milliseconds(kSkewMs)};
    transfer::SessionDirectory directory;
    Model model;
    std::int64_t now_ms = 1'700'000'000'000;
    std::set<std::string> accepted_nonces;
    std::map<std::string, std::int64_t> accepted_at;  // nonce -> the verifier's clock then

    std::uint64_t link_id = 1;
    bool hello_done = false;
    std::string hello_nonce;

    // Compares the directory with the model, and its reported changes with the model's.
    void check(const std::set<std::uint64_t>& before,
               const std::vector<transfer::PresenceChange>& changes) {
        const auto after = model.online();
        FUZZ_CHECK(directory.sessions() == model.sessions.size());
        FUZZ_CHECK(directory.users() == after.size());
        std::map<std::uint64_t, bool> expected;
        for (auto u : after) {
            if (!before.count(u)) expected[u] = true;
        }
        for (auto u : before) {
            if (!after.count(u)) expected[u] = false;
        }
        std::map<std::uint64_t, bool> got;
        for (const auto& c : changes)
            FUZZ_CHECK(got.emplace(c.user, c.online).second);  // once each
        FUZZ_CHECK(got == expected);
        for (const auto& [user, on] : expected)
            FUZZ_CHECK(directory.online(user) == on);
    }

    void close_link() {
        const auto before = model.online();
        const auto changes = directory.remove_link(link_id);
        model.remove_link(link_id);
        check(before, changes);
        ++link_id;
        hello_done = false;
        hello_nonce.clear();
    }

    void hello(const internal::LinkEnvelope& env) {
        internal::Hello h = env.hello();
        if (h.auth_mac() == "sign") {
            h.set_auth_mac(link_auth::hello_mac(kSecret, h.connector_id(), h.connector_epoch(),
                                                h.auth_time_ms(), h.auth_nonce()));
        }
        now_ms += static_cast<std::int64_t>(env.request_id() % 200'000);
        const auto got = verifier.verify(h.connector_id(), h.connector_epoch(), h.auth_time_ms(),
                                         h.auth_nonce(), h.auth_mac(), now_ms);
        // The model: MAC first, then the clock window, then replays within twice the window.
        auto expected = HelloVerifier::Result::ok;
        const bool mac_ok =
            h.auth_nonce().size() == link_auth::kNonceBytes &&
            h.auth_mac() == link_auth::hello_mac(kSecret, h.connector_id(), h.connector_epoch(),
                                                 h.auth_time_ms(), h.auth_nonce());
        const auto seen = accepted_at.find(h.auth_nonce());
        if (!mac_ok) {
            expected = HelloVerifier::Result::bad_mac;
        } else if (h.auth_time_ms() < now_ms - kSkewMs || h.auth_time_ms() > now_ms + kSkewMs) {
            expected = HelloVerifier::Result::stale;
        } else if (seen != accepted_at.end() && seen->second >= now_ms - 2 * kSkewMs) {
            expected = HelloVerifier::Result::replayed;
        }
        FUZZ_CHECK(got == expected);
        if (got != HelloVerifier::Result::ok) return close_link();
        FUZZ_CHECK(accepted_nonces.insert(h.auth_nonce()).second);  // never accepted twice
        accepted_at[h.auth_nonce()] = now_ms;
        hello_done = true;
        hello_nonce = h.auth_nonce();
        // The transfer's answer proves the secret to the connector, for this Hello only.
        const auto ack = link_auth::ack_mac(kSecret, "transfer-0", 7, hello_nonce);
        FUZZ_CHECK(link_auth::verify_ack(kSecret, "transfer-0", 7, hello_nonce, ack));
        FUZZ_CHECK(!link_auth::verify_ack(kSecret, "transfer-0", 7, hello_nonce + "x", ack));
    }

    // A HelloAck as the connector that sent this link's Hello checks it.
    void hello_ack(const internal::HelloAck& a) const {
        std::string mac = a.auth_mac();
        const auto right =
            link_auth::ack_mac(kSecret, a.transfer_id(), a.transfer_epoch(), hello_nonce);
        if (mac == "sign") mac = right;
        FUZZ_CHECK(link_auth::verify_ack(kSecret, a.transfer_id(), a.transfer_epoch(), hello_nonce,
                                         mac) == (mac == right));
    }

    void frame(std::string_view body) {
        internal::LinkEnvelope env;
        if (wire::parse_body(body, env) != wire::FrameError::none) return close_link();
        if (!hello_done && env.body_case() != internal::LinkEnvelope::kHello) return close_link();
        const auto before = model.online();
        switch (env.body_case()) {
            case internal::LinkEnvelope::kHello:
                if (hello_done) return close_link();
                return hello(env);
            case internal::LinkEnvelope::kSessionSync: {
                const std::vector<internal::SessionRef> sessions(
                    env.session_sync().sessions().begin(), env.session_sync().sessions().end());
                const auto changes = directory.replace_link(link_id, sessions);
                model.remove_link(link_id);
                for (const auto& s : sessions)
                    model.sessions.emplace(link_id, s.user_id(), s.login_epoch());
                return check(before, changes);
            }
            case internal::LinkEnvelope::kSessionEvent: {
                const auto& s = env.session_event().session();
                const auto key = std::make_tuple(link_id, s.user_id(), s.login_epoch());
                if (env.session_event().online()) {
                    const auto changes = directory.add(link_id, s);
                    model.sessions.insert(key);
                    return check(before, changes);
                }
                const auto changes = directory.remove(link_id, s);
                model.sessions.erase(key);
                return check(before, changes);
            }
            case internal::LinkEnvelope::kHelloAck:
                return hello_ack(env.hello_ack());
            default:
                return;  // requests, token checks and pings need the stores: not here
        }
    }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    google::protobuf::SetLogHandler(nullptr);  // refused invalid UTF-8 strings are logged
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Transfer t;
    wire::FrameDecoder decoder(kLinkMaxFrame);
    std::size_t frames = 0;
    decoder.feed(reinterpret_cast<const char*>(data), size, [&](std::string_view body) {
        t.frame(body);
        return ++frames < 256;
    });
    t.close_link();  // the connection ends (or its framing failed): nothing may stay behind
    FUZZ_CHECK(t.directory.sessions() == 0 && t.directory.users() == 0);
    return 0;
}
