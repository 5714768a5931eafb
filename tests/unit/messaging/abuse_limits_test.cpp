// The connector's abuse limits as pure pieces (connector/abuse_limits.hpp).
#include "abuse_limits.hpp"
#include "connector_config.hpp"
#include "im/server/config.hpp"

#include <gtest/gtest.h>

namespace im::connector {
namespace {

TEST(AbuseLimits, TheSessionBucketRefusesFirstThenTheUsersSharedByItsSessions) {
    AbuseLimits l;
    l.session_messages = {10, 3};
    l.user_messages = {10, 4};
    FrameBuckets a, b, user;
    const std::int64_t now = 1000;
    for (int i = 0; i < 3; ++i) EXPECT_FALSE(admit_frame(l, a, &user, Metered::messages, now)) << i;
    auto r = admit_frame(l, a, &user, Metered::messages, now);
    ASSERT_TRUE(r);
    EXPECT_EQ(r.scope, Refusal::Scope::session);
    EXPECT_STREQ(r.name(), "session_messages");
    EXPECT_EQ(r.retry_after_ms, 100u);
    // The user's fourth message, from another device, passes; the fifth is the user's limit.
    EXPECT_FALSE(admit_frame(l, b, &user, Metered::messages, now));
    r = admit_frame(l, b, &user, Metered::messages, now);
    ASSERT_TRUE(r);
    EXPECT_EQ(r.scope, Refusal::Scope::user);
    EXPECT_STREQ(r.name(), "user_messages");
    // Other kinds have buckets of their own; unmetered frames always pass.
    EXPECT_FALSE(admit_frame(l, a, &user, Metered::receipts, now));
    EXPECT_FALSE(admit_frame(l, a, &user, Metered::typing, now));
    EXPECT_FALSE(admit_frame(l, a, &user, Metered::none, now));
    EXPECT_EQ(metered_kind(client::Envelope::kSyncMessages), Metered::none);
    EXPECT_EQ(metered_kind(client::Envelope::kTyping), Metered::typing);
}

TEST(AbuseLimits, RefusalsAreRateLimitedWithAHintRetryableExceptTyping) {
    Refusal r;
    r.scope = Refusal::Scope::session;
    r.kind = Metered::messages;
    r.retry_after_ms = 250;
    client::Envelope send;
    send.set_request_id(42);
    send.mutable_send()->set_client_msg_id("0123456789abcdef");
    auto out = refusal_answer(send, r);
    ASSERT_TRUE(out.has_send_result());
    EXPECT_EQ(out.request_id(), 42u);
    EXPECT_EQ(out.send_result().code(), client::RATE_LIMITED);
    EXPECT_TRUE(out.send_result().retryable());
    EXPECT_EQ(out.send_result().retry_after_ms(), 250u);
    EXPECT_EQ(out.send_result().client_msg_id(), "0123456789abcdef");

    client::Envelope receipt;
    receipt.set_request_id(43);
    receipt.mutable_receipt()->set_up_to_seq(3);
    out = refusal_answer(receipt, r);
    ASSERT_TRUE(out.has_error());
    EXPECT_EQ(out.error().code(), client::RATE_LIMITED);
    EXPECT_TRUE(out.error().retryable());
    EXPECT_EQ(out.error().retry_after_ms(), 250u);

    client::Envelope typing;
    typing.mutable_typing()->set_peer_user_id(9);
    out = refusal_answer(typing, r);
    ASSERT_TRUE(out.has_error());
    EXPECT_EQ(out.error().code(), client::RATE_LIMITED);
    EXPECT_FALSE(out.error().retryable());
}

TEST(AbuseLimits, AddressCounterBoundsConnectionsPerAddressAndForgetsEmptyOnes) {
    AddressCounter c;
    const auto v4 = AddressCounter::key_of(boost::asio::ip::make_address("127.0.0.7"));
    const auto mapped = AddressCounter::key_of(boost::asio::ip::make_address("::ffff:127.0.0.7"));
    const auto other = AddressCounter::key_of(boost::asio::ip::make_address("::1"));
    EXPECT_EQ(v4, mapped);  // one client, whichever family the listener reports
    EXPECT_TRUE(c.try_add(v4, 2));
    EXPECT_TRUE(c.try_add(mapped, 2));
    EXPECT_FALSE(c.try_add(v4, 2));
    EXPECT_TRUE(c.try_add(other, 2));
    EXPECT_EQ(c.count(v4), 2u);
    c.remove(v4);
    EXPECT_TRUE(c.try_add(v4, 2));
    c.remove(v4);
    c.remove(v4);
    c.remove(other);
    EXPECT_EQ(c.addresses(), 0u);
    EXPECT_TRUE(c.try_add(v4, 0));  // 0: no limit
}

// Pushes are dropped past sessions.push_queue_bytes: half the write queue bound by default, and it
// must leave room below the bound for the session's answers.
TEST(ConnectorConfig, PushQueueBytesDefaultsToHalfTheWriteQueueAndMustStayBelowIt) {
    const config::Env secret{{"IM_CLUSTER_SECRET", "a-test-cluster-secret"}};
    auto c = load_connector_config(config::ConfigSource(secret));
    EXPECT_EQ(c.max_write_queue_bytes, 1u << 20);
    EXPECT_EQ(c.push_queue_bytes, 512u << 10);
    EXPECT_EQ(c.slow_consumer_timeout, std::chrono::seconds(10));
    auto env = secret;
    env["IM_CONNECTOR_SESSIONS_MAX_WRITE_QUEUE_BYTES"] = "4MiB";
    env["IM_CONNECTOR_SESSIONS_SLOW_CONSUMER_TIMEOUT"] = "3s";
    c = load_connector_config(config::ConfigSource(env));
    EXPECT_EQ(c.push_queue_bytes, 2u << 20);
    EXPECT_EQ(c.slow_consumer_timeout, std::chrono::seconds(3));
    env["IM_CONNECTOR_SESSIONS_PUSH_QUEUE_BYTES"] = "4MiB";
    try {
        load_connector_config(config::ConfigSource(env));
        FAIL() << "a push queue bound equal to the write queue bound was accepted";
    } catch (const config::ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("sessions.push_queue_bytes"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace im::connector
