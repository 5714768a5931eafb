// The pure pieces of the push worker: the webhook body, its signature, the retry schedule and the
// push.* / rabbitmq.* configuration keys.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "im/proto/events.pb.h"
#include "im/server/config.hpp"
#include "im/server/mq.hpp"
#include "push_worker.hpp"

namespace im::rest {
namespace {

using namespace std::chrono_literals;

events::PushEvent sample_event() {
    events::PushEvent e;
    e.set_event_id("7:30064771080:12");
    e.set_user_id(7);
    e.set_conversation_id((7ULL << 32) | 8ULL);  // above 2^53: must stay exact
    e.set_from_user_id(8);
    e.set_up_to_seq(12);
    e.set_unread(3);
    e.set_created_ms(1764295029396);
    return e;
}

TEST(PushEventJson, HasExactlyTheDocumentedFieldsInOrder) {
    const auto body = push_event_json(sample_event());
    EXPECT_EQ(body, R"({"event_id":"7:30064771080:12","user_id":7,"conversation_id":30064771080,)"
                    R"("from_user_id":8,"up_to_seq":12,"unread":3,"created_ms":1764295029396})");
    const auto j = nlohmann::json::parse(body);
    EXPECT_EQ(j.size(), 7u);
}

TEST(PushEventJson, LargeIdsStayExactIntegers) {
    auto e = sample_event();
    e.set_conversation_id((2147483646ULL << 32) | 2147483647ULL);
    const auto j = nlohmann::json::parse(push_event_json(e));
    EXPECT_TRUE(j["conversation_id"].is_number_unsigned());
    EXPECT_EQ(j["conversation_id"].get<std::uint64_t>(), (2147483646ULL << 32) | 2147483647ULL);
}

TEST(PushSignature, HmacSha256MatchesRfc4231) {
    // RFC 4231, test case 2.
    EXPECT_EQ(hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    // A key longer than the block size is hashed first (RFC 4231, test case 6).
    EXPECT_EQ(hmac_sha256_hex(std::string(131, '\xaa'),
                              "Test Using Larger Than Block-Size Key - Hash Key First"),
              "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(PushSignature, HeadersCarryTheIdempotencyKeyAndASignatureOnlyWithASecret) {
    const std::string body = R"({"event_id":"1:2:3"})";
    auto headers = push_webhook_headers("1:2:3", body, "");
    ASSERT_EQ(headers.size(), 1u);
    EXPECT_EQ(headers[0], (std::pair<std::string, std::string>{"Idempotency-Key", "1:2:3"}));

    headers = push_webhook_headers("1:2:3", body, "s3cret");
    ASSERT_EQ(headers.size(), 2u);
    EXPECT_EQ(headers[1].first, "X-IM-Signature");
    EXPECT_EQ(headers[1].second, hmac_sha256_hex("s3cret", body));
    EXPECT_EQ(headers[1].second.size(), 64u);
}

TEST(PushRetry, BackoffDoublesAndIsCapped) {
    EXPECT_EQ(push_retry_delay(500ms, 1), 500ms);
    EXPECT_EQ(push_retry_delay(500ms, 2), 1000ms);
    EXPECT_EQ(push_retry_delay(500ms, 3), 2000ms);
    EXPECT_EQ(push_retry_delay(500ms, 7), 30000ms);
    EXPECT_EQ(push_retry_delay(500ms, 1000), 30000ms);  // no overflow
    EXPECT_EQ(push_retry_delay(40000ms, 1), 30000ms);
}

TEST(PushConfig, DefaultsAndKeys) {
    config::ConfigSource src(
        config::Env{{"IM_RABBITMQ_PORT", "44672"}, {"IM_RABBITMQ_PASSWORD", "mq-pw-secret"}});
    src.load_yaml_string(R"(
push:
  enabled: true
  webhook_url: https://push.example.test/hook?key=abc
  webhook_secret: hook-secret-value
  max_attempts: 3
  retry_backoff: 250ms
  timeout: 2s
  threads: 4
rabbitmq:
  exchange: ex
  queue: q
  dead_letter_exchange: dlx
  dead_letter_queue: dlq
  io_timeout: 1s
)");
    PushWorkerConfig p;
    mq::MqConfig m;
    config::Binder b(src, "IM_REST_");
    bind(b, p);
    mq::bind(b, m);
    ASSERT_NO_THROW(b.finish());
    EXPECT_TRUE(p.enabled);
    EXPECT_EQ(p.webhook_url, "https://push.example.test/hook?key=abc");
    EXPECT_EQ(p.max_attempts, 3u);
    EXPECT_EQ(p.retry_backoff, 250ms);
    EXPECT_EQ(p.timeout, 2000ms);
    EXPECT_EQ(p.threads, 4u);
    EXPECT_EQ(m.port, 44672);
    EXPECT_EQ(m.password, "mq-pw-secret");
    EXPECT_EQ(m.exchange, "ex");
    EXPECT_EQ(m.dead_letter_queue, "dlq");
    EXPECT_EQ(m.io_timeout, 1000ms);
    const auto described = b.describe();
    EXPECT_EQ(described.find("hook-secret-value"), std::string::npos) << described;
    EXPECT_EQ(described.find("mq-pw-secret"), std::string::npos) << described;
}

TEST(PushConfig, BadValuesAreReported) {
    config::ConfigSource src;
    src.load_yaml_string(R"(
push:
  webhook_url: ftp://push.example.test/hook
  max_attempts: 0
rabbitmq:
  exchange: same
  dead_letter_exchange: same
)");
    PushWorkerConfig p;
    mq::MqConfig m;
    config::Binder b(src, "IM_REST_");
    bind(b, p);
    mq::bind(b, m);
    try {
        b.finish();
        FAIL() << "expected a ConfigError";
    } catch (const config::ConfigError& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("push.webhook_url"), std::string::npos) << what;
        EXPECT_NE(what.find("push.max_attempts"), std::string::npos) << what;
        EXPECT_NE(what.find("rabbitmq.dead_letter_exchange"), std::string::npos) << what;
    }
}

}  // namespace
}  // namespace im::rest
