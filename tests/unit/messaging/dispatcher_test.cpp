// The connector's login state machine and routing (connector/dispatcher.hpp).
#include "dispatcher.hpp"

#include <gtest/gtest.h>

#include "im/wire/ids.hpp"

namespace im::connector {
namespace {

client::Envelope with(client::Envelope::BodyCase body) {
    client::Envelope e;
    switch (body) {
        case client::Envelope::kLogin: e.mutable_login()->set_token("t"); break;
        case client::Envelope::kPing: e.mutable_ping(); break;
        case client::Envelope::kSend: e.mutable_send()->set_peer_user_id(7); break;
        case client::Envelope::kReceipt: e.mutable_receipt()->set_conversation_id(conversation_id(5, 7)); break;
        case client::Envelope::kSyncConversations: e.mutable_sync_conversations(); break;
        case client::Envelope::kSyncMessages: e.mutable_sync_messages()->set_conversation_id(conversation_id(5, 7)); break;
        case client::Envelope::kTyping: e.mutable_typing()->set_peer_user_id(7); break;
        case client::Envelope::kDeliver: e.mutable_deliver(); break;
        case client::Envelope::kKick: e.mutable_kick(); break;
        default: break;
    }
    return e;
}

TEST(Dispatcher, BeforeLoginOnlyLoginAndPingPass) {
    for (auto state : {SessionState::awaiting_login, SessionState::authenticating}) {
        EXPECT_EQ(dispatch(state, 0, with(client::Envelope::kPing)).route, Route::pong);
        for (auto body : {client::Envelope::kSend, client::Envelope::kReceipt, client::Envelope::kSyncConversations,
                          client::Envelope::kSyncMessages, client::Envelope::kTyping, client::Envelope::kDeliver}) {
            const auto d = dispatch(state, 0, with(body));
            EXPECT_EQ(d.route, Route::error) << body;
            EXPECT_EQ(d.code, client::NOT_LOGGED_IN) << body;
        }
    }
    EXPECT_EQ(dispatch(SessionState::awaiting_login, 0, with(client::Envelope::kLogin)).route, Route::login);
    const auto twice = dispatch(SessionState::authenticating, 0, with(client::Envelope::kLogin));
    EXPECT_EQ(twice.route, Route::error);
    EXPECT_EQ(twice.code, client::ALREADY_LOGGED_IN);
}

TEST(Dispatcher, ActiveSessionRoutesByConversationOfTheSessionUser) {
    const auto d = dispatch(SessionState::active, 5, with(client::Envelope::kSend));
    EXPECT_EQ(d.route, Route::to_owner);
    EXPECT_EQ(d.conversation_id, conversation_id(5, 7));
    // The same Send from user 9 belongs to conversation (7, 9): the sender is the session's user.
    EXPECT_EQ(dispatch(SessionState::active, 9, with(client::Envelope::kSend)).conversation_id, conversation_id(7, 9));
    EXPECT_EQ(dispatch(SessionState::active, 5, with(client::Envelope::kSyncConversations)).route, Route::to_any);
    EXPECT_EQ(dispatch(SessionState::active, 5, with(client::Envelope::kSyncMessages)).route, Route::to_owner);
    EXPECT_EQ(dispatch(SessionState::active, 5, with(client::Envelope::kTyping)).route, Route::to_owner);
    EXPECT_EQ(dispatch(SessionState::active, 5, with(client::Envelope::kReceipt)).route, Route::to_owner);
    EXPECT_EQ(dispatch(SessionState::active, 5, with(client::Envelope::kLogin)).code, client::ALREADY_LOGGED_IN);
}

TEST(Dispatcher, ForeignConversationsAndBadPeers) {
    // User 6 is not in conversation (5, 7).
    EXPECT_EQ(dispatch(SessionState::active, 6, with(client::Envelope::kReceipt)).route, Route::drop);
    const auto sync = dispatch(SessionState::active, 6, with(client::Envelope::kSyncMessages));
    EXPECT_EQ(sync.route, Route::error);
    EXPECT_EQ(sync.code, client::NOT_FOUND);
    // To yourself or to an invalid id.
    client::Envelope self;
    self.mutable_send()->set_peer_user_id(5);
    EXPECT_EQ(dispatch(SessionState::active, 5, self).code, client::BAD_REQUEST);
    client::Envelope huge;
    huge.mutable_send()->set_peer_user_id(1ull << 40);
    EXPECT_EQ(dispatch(SessionState::active, 5, huge).code, client::BAD_REQUEST);
}

TEST(Dispatcher, ServerOnlyAndEmptyBodiesAreUnknown) {
    EXPECT_EQ(dispatch(SessionState::active, 5, with(client::Envelope::kDeliver)).code, client::UNKNOWN_BODY);
    EXPECT_EQ(dispatch(SessionState::active, 5, with(client::Envelope::kKick)).code, client::UNKNOWN_BODY);
    EXPECT_EQ(dispatch(SessionState::active, 5, client::Envelope{}).code, client::UNKNOWN_BODY);
}

TEST(Dispatcher, LoginChecksBeforeTheTokenLookup) {
    client::Login ok;
    ok.set_protocol_version(1);
    ok.set_device_id("phone-1.a_b:c");
    ok.set_token(std::string(43, 'A'));
    EXPECT_FALSE(check_login(ok));

    auto version = ok;
    version.set_protocol_version(2);
    ASSERT_TRUE(check_login(version));
    EXPECT_EQ(check_login(version)->code, client::VERSION_UNSUPPORTED);

    for (const auto& device : {std::string(), std::string(65, 'd'), std::string("a b"), std::string("x\0", 2),
                                     std::string("caf\xc3\xa9")}) {
        auto bad = ok;
        bad.set_device_id(device);
        ASSERT_TRUE(check_login(bad)) << device;
        EXPECT_EQ(check_login(bad)->code, client::BAD_REQUEST) << device;
    }
    auto longest = ok;
    longest.set_device_id(std::string(64, 'd'));
    EXPECT_FALSE(check_login(longest));

    for (const auto& token : {std::string(), std::string(42, 'A'), std::string(44, 'A'), std::string(42, 'A') + "="}) {
        auto bad = ok;
        bad.set_token(token);
        ASSERT_TRUE(check_login(bad)) << token;
        EXPECT_EQ(check_login(bad)->code, client::UNAUTHENTICATED) << token;
    }
}

}  // namespace
}  // namespace im::connector
