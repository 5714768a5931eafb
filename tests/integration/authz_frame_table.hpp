#pragma once
// The authorization sweep's table of client frame types: one row per member of the `oneof body`
// of im.client.Envelope (found by protobuf reflection; the sweep fails while a body type has no
// row here). Client->server rows give the frame alice would send to act (the control shows that
// it acts) and a check or an n/a reason for other_user, non_friend and blocked; the token columns
// are generated (the frame on a connection that never logged in, and pipelined right behind a
// Login with a malformed, expired or revoked token). Server->client rows give a forged frame
// naming alice and carol: generated checks send it from logged-in clients (server_only: refused
// with UNKNOWN_BODY, never forwarded) and from connections that are not logged in.

#include "authz_sweep_world.hpp"

namespace im::test::authz {

struct FrameEntry {
    std::string name;  // the oneof member
    bool from_client = true;
    std::function<Envelope(World&)> frame;  // client rows: alice's frame; server rows: a forged one
    std::map<Col, Cell> cells;
    bool custom_tokens = false;           // login and ping write their own token columns
    std::function<void(World&)> control;  // client rows: the frame works for its rightful sender
};

inline FrameEntry frame_row(std::string name, bool from_client,
                            std::function<Envelope(World&)> frame, std::map<Col, Cell> cells,
                            bool custom_tokens = false, std::function<void(World&)> control = {}) {
    FrameEntry e;
    e.name = std::move(name);
    e.from_client = from_client;
    e.frame = std::move(frame);
    e.cells = std::move(cells);
    e.custom_tokens = custom_tokens;
    e.control = std::move(control);
    return e;
}

inline Envelope login_frame(const std::string& token, const std::string& device,
                            std::uint64_t rid) {
    Envelope e;
    e.set_request_id(rid);
    e.mutable_login()->set_token(token);
    e.mutable_login()->set_device_id(device);
    e.mutable_login()->set_client_version("authz-sweep");
    e.mutable_login()->set_protocol_version(1);
    return e;
}

// Sends env with a fresh request id on c; the answer with that id (nullopt after timeout).
inline std::optional<Envelope> ask(RawClient& c, Envelope env,
                                   std::chrono::milliseconds timeout = 5s) {
    env.set_request_id(c.next_request_id());
    const auto rid = env.request_id();
    c.send(env);
    return c.wait_for([rid](const Envelope& e) { return e.request_id() == rid; }, timeout);
}

inline bool is_error(const std::optional<Envelope>& e, client::ErrorCode code) {
    return e && e->has_error() && e->error().code() == code;
}

// Sends env and, after the probe's window, finds no answer to it (the frame was dropped).
inline std::uint64_t send_unanswered(RawClient& c, Envelope env) {
    env.set_request_id(c.next_request_id());
    c.send(env);
    return env.request_id();
}
inline void expect_no_answer(const RawClient& c, std::uint64_t rid, const std::string& what) {
    for (const auto& f : c.all_frames()) {
        EXPECT_NE(f.request_id(), rid) << what << " was answered: " << describe(f);
    }
}

inline Envelope receipt(std::uint64_t conv, client::ReceiptKind kind, std::uint64_t up_to) {
    Envelope e;
    e.mutable_receipt()->set_conversation_id(conv);
    e.mutable_receipt()->set_kind(kind);
    e.mutable_receipt()->set_up_to_seq(up_to);
    return e;
}

inline Envelope typing(std::uint64_t peer) {
    Envelope e;
    e.mutable_typing()->set_peer_user_id(peer);
    return e;
}

inline Envelope sync_messages(std::uint64_t conv, std::uint64_t after, std::uint64_t before = 0) {
    Envelope e;
    e.mutable_sync_messages()->set_conversation_id(conv);
    e.mutable_sync_messages()->set_after_seq(after);
    e.mutable_sync_messages()->set_before_seq(before);
    return e;
}

inline Envelope read_by(std::uint64_t group, std::uint64_t seq) {
    Envelope e;
    e.mutable_read_by()->set_conversation_id(group);
    e.mutable_read_by()->set_seq(seq);
    return e;
}

// A group of alice's with carol (created once per world, outside any begin/end window).
inline std::uint64_t alice_group(World& w) {
    static std::map<const World*, std::uint64_t> made;
    auto& g = made[&w];
    if (g == 0) {
        const auto r = w.http.post("/v1/groups", {{"name", "authz"}, {"members", {w.carol.id}}}, w.alice.token);
        EXPECT_EQ(r.status, 201) << r.body;
        if (r.status == 201) g = r.json().at("group_id").get<std::uint64_t>();
        w.settle();
    }
    return g;
}

// A session of ken's besides his watcher (for what the blocker himself sends).
inline std::unique_ptr<RawClient> ken_session(World& w) {
    static int n = 0;
    const auto device = "ken-x" + std::to_string(++n);
    return w.cl.connect(0, w.cl.login_token(w.ken, device), device);
}

// A receipt (or typing) that must reach no one and store nothing.
inline void dropped_case(World& w, Envelope env, const std::string& what) {
    auto p = w.begin();
    const auto rid = send_unanswered(*w.bob_main, std::move(env));
    w.end(p);
    expect_no_answer(*w.bob_main, rid, what);
}

inline void expect_send_refused(World& w, const std::function<client::SendResult()>& send,
                                client::ErrorCode code, const std::string& what) {
    auto p = w.begin();
    const auto r = send();
    EXPECT_EQ(client::ErrorCode_Name(r.code()), client::ErrorCode_Name(code))
        << what << ": " << r.ShortDebugString();
    EXPECT_EQ(r.msg_id(), 0u) << what;
    w.end(p);
}

// Bob's only session goes away (dave, his friend, hears him go offline), then bob logs in again
// while every watcher listens: only dave may hear of it.
inline void bob_logs_in_again(World& w) {
    w.forget_streams(w.bob_main.get());
    w.bob_main.reset();
    auto& dave = *w.watcher("dave").client;
    const auto bob = w.bob.id;
    ASSERT_TRUE(dave.wait_for(
        [bob](const Envelope& e) {
            return e.has_presence() && e.presence().user_id() == bob && !e.presence().online();
        },
        10s))
        << "dave did not hear bob go offline";
    auto p = w.begin();
    w.bob_main = w.cl.connect(0, w.bob.token, "dev1");
    EXPECT_TRUE(dave.wait_for(
        [bob](const Envelope& e) {
            return e.has_presence() && e.presence().user_id() == bob && e.presence().online();
        },
        5s))
        << "dave did not hear bob come online (control)";
    w.end(p, kQuiet, [bob](const World::Watcher& who, const Envelope& f) {
        return who.name == "dave" && f.has_presence() && f.presence().user_id() == bob;
    });
}

inline std::vector<FrameEntry> frame_table() {
    std::vector<FrameEntry> t;
    const auto server_frame = [](const std::string& name, std::function<Envelope(World&)> forge) {
        const std::string why =
            "a server frame: refused from every client whoever it names (server_only)";
        return frame_row(
            name, false, std::move(forge),
            {{Col::other_user, na(why)}, {Col::non_friend, na(why)}, {Col::blocked, na(why)}});
    };

    // ---------------------------------------------------------------- client -> server
    t.push_back(frame_row(
        "login", true, [](World& w) { return login_frame(w.alice.token, "dev1", 1); },
        {{Col::no_token, check([](World& w) {
              auto p = w.begin();
              RawClient c(w.cl.connector_port(0));
              EXPECT_TRUE(
                  is_error(ask(c, login_frame("", "SECRET-anon", 0)), client::UNAUTHENTICATED));
              EXPECT_TRUE(c.wait_closed(5s));
              w.end(p);
          })},
         {Col::malformed_token, check([](World& w) {
              auto altered = w.alice.token;
              altered.back() = altered.back() == 'A' ? 'B' : 'A';
              auto p = w.begin();
              for (const auto& token : {std::string("garbage!"), World::unknown_token(), altered}) {
                  RawClient c(w.cl.connector_port(0));
                  EXPECT_TRUE(is_error(ask(c, login_frame(token, "SECRET-alice-probe", 0)),
                                       client::UNAUTHENTICATED))
                      << token;
                  EXPECT_TRUE(c.wait_closed(5s));
              }
              w.end(p);
          })},
         {Col::expired_token, check([](World& w) {
              const auto token = w.expired_token(w.alice, "SECRET-alice-old");
              auto p = w.begin();
              {
                  RawClient c(w.cl.connector_port(0));
                  EXPECT_TRUE(is_error(ask(c, login_frame(token, "SECRET-alice-old", 0)),
                                       client::UNAUTHENTICATED));
                  EXPECT_TRUE(c.wait_closed(5s));
              }
              w.end(p);
              // A live session whose token expires: the connector's re-check (every
              // sessions.token_recheck_interval) closes it. Its cached entry would have lived
              // until the expiry at most, so it goes with the row's expiry.
              const auto live = w.cl.login_token(w.alice, "SECRET-alice-expiring");
              auto c = w.cl.connect(0, live, "SECRET-alice-expiring");
              w.expire_now(live);
              auto kick = c->wait_body(Envelope::kKick, 10s);
              EXPECT_TRUE(kick && kick->kick().reason() == client::LOGGED_OUT)
                  << "no Kick after the token expired";
              EXPECT_TRUE(c->wait_closed(5s)) << "the session of an expired token stays open";
              auto q = w.begin();
              c->send(c->make_send(w.carol.id, "ATTACK after expiry", 1));
              w.end(q);
          })},
         {Col::revoked_token, check([](World& w) {
              // A token logged out before the Login.
              const auto token = w.revoked_token(w.alice, "SECRET-alice-gone");
              auto p = w.begin();
              {
                  RawClient c(w.cl.connector_port(0));
                  EXPECT_TRUE(is_error(ask(c, login_frame(token, "SECRET-alice-gone", 0)),
                                       client::UNAUTHENTICATED));
                  EXPECT_TRUE(c.wait_closed(5s));
              }
              w.end(p);
              // A live session whose token is logged out: kicked, and what it sends next is lost.
              const auto live = w.cl.login_token(w.alice, "SECRET-alice-live");
              auto c = w.cl.connect(0, live, "SECRET-alice-live");
              World::expect_status(w.http.del("/v1/sessions/current", live), 204, "logout");
              auto kick = c->wait_body(Envelope::kKick, 5s);
              EXPECT_TRUE(kick && kick->kick().reason() == client::LOGGED_OUT)
                  << "no Kick{LOGGED_OUT} after logout";
              EXPECT_TRUE(c->wait_closed(5s)) << "the logged-out session stays open";
              auto q = w.begin();
              c->send(c->make_send(w.carol.id, "ATTACK after logout", 1));
              w.end(q);
          })},
         {Col::other_user, check([](World& w) {
              // alice's token presented for another device (tokens are bound to their device).
              auto p = w.begin();
              RawClient c(w.cl.connector_port(0));
              EXPECT_TRUE(is_error(ask(c, login_frame(w.alice.token, "bob-evil", 0)),
                                   client::UNAUTHENTICATED));
              EXPECT_TRUE(c.wait_closed(5s));
              w.end(p);
              // A logged-in session cannot turn into another user: a second Login (alice's valid
              // token, on bob's connection) is refused and bob stays bob.
              auto q = w.begin();
              EXPECT_TRUE(is_error(ask(*w.bob_main, login_frame(w.alice.token, "dev1", 0)),
                                   client::ALREADY_LOGGED_IN));
              auto a = ask(*w.bob_main, sync_messages(w.conv_ac, 0));
              EXPECT_TRUE(a && !frame_carries(*a, "SECRET")) << (a ? describe(*a) : "no answer");
              w.end(q);
              EXPECT_FALSE(w.alice_main->closed()) << "alice's session was replaced";
              EXPECT_TRUE(w.alice_main->take_all(Envelope::kKick).empty())
                  << "alice's session was kicked";
          })},
         {Col::non_friend, check([](World& w) {
              bob_logs_in_again(w);  // alice and carol (strangers) hear nothing of it
          })},
         {Col::blocked, check([](World& w) {
              bob_logs_in_again(w);  // ken (who blocked bob) hears nothing of it ...
              // ... nor does bob hear of ken: ken's only session goes and comes back.
              auto& ken = w.watcher("ken");
              const auto mark = w.bob_main->all_frames().size();
              ken.client.reset();
              ken.client = w.cl.connect(1, ken.token, ken.device);
              auto p = w.begin();
              w.end(p);
              const auto frames = w.bob_main->all_frames();
              for (std::size_t i = mark; i < frames.size(); ++i) {
                  EXPECT_FALSE(frames[i].has_presence()) << "bob heard: " << describe(frames[i]);
              }
          })},
         {Col::server_only, na("a client frame")}},
        true,
        [](World& w) {
            const auto token = w.cl.login_token(w.alice, "SECRET-alice-ctl");
            RawClient c(w.cl.connector_port(0));
            auto r = c.login(token, "SECRET-alice-ctl");
            EXPECT_TRUE(r.has_login_result() && r.login_result().user_id() == w.alice.id)
                << describe(r);
        }));

    const std::string liveness =
        "public: liveness, answered by the connector alone, no state, no data";
    t.push_back(frame_row(
        "ping", true,
        [](World&) {
            Envelope e;
            e.mutable_ping()->set_client_time_ms(1);
            return e;
        },
        {{Col::no_token, check([](World& w) {
              // Allowed before Login by design (the only other frame that is).
              auto p = w.begin();
              RawClient c(w.cl.connector_port(0));
              Envelope ping;
              ping.mutable_ping()->set_client_time_ms(1);
              auto a = ask(c, ping);
              EXPECT_TRUE(a && a->has_pong()) << (a ? describe(*a) : "no answer");
              w.end(p);
          })},
         {Col::malformed_token, na(liveness)},
         {Col::expired_token, na(liveness)},
         {Col::revoked_token, na(liveness)},
         {Col::other_user, na(liveness)},
         {Col::non_friend, na(liveness)},
         {Col::blocked, na(liveness)},
         {Col::server_only, na("a client frame")}},
        true,
        [](World& w) {
            Envelope ping;
            ping.mutable_ping()->set_client_time_ms(1);
            auto a = ask(*w.alice_main, ping);
            EXPECT_TRUE(a && a->has_pong());
        }));

    t.push_back(frame_row(
        "send", true,
        [](World& w) {
            Envelope e;
            auto* s = e.mutable_send();
            s->set_peer_user_id(w.carol.id);
            s->set_client_msg_id(random_cmid());
            s->set_stream_seq(1);
            s->set_type(client::TEXT);
            s->set_text("ATTACK as alice");
            return e;
        },
        {{Col::other_user, check([](World& w) {
              // bob sends alice's files to his own friend: her unsent one and the one she sent
              // carol.
              for (const auto file : {w.private_file, w.sent_file}) {
                  expect_send_refused(
                      w, [&] { return w.send_file(*w.bob_main, w.dave.id, file); },
                      client::NOT_FOUND, "bob sends alice's file " + std::to_string(file));
              }
          })},
         {Col::non_friend, check([](World& w) {
              expect_send_refused(
                  w, [&] { return w.send_text(*w.bob_main, w.alice.id, "ATTACK to a stranger"); },
                  client::FORBIDDEN, "bob writes to alice");
          })},
         {Col::blocked, check([](World& w) {
              expect_send_refused(
                  w, [&] { return w.send_text(*w.bob_main, w.ken.id, "ATTACK to who blocked me"); },
                  client::BLOCKED, "bob writes to ken");
              // Nor does the blocker write to the blocked user.
              auto ken = ken_session(w);
              const auto mark = w.bob_main->all_frames().size();
              expect_send_refused(
                  w, [&] { return w.send_text(*ken, w.bob.id, "ATTACK to whom I blocked"); },
                  client::BLOCKED, "ken writes to bob");
              expect_no_push_since(*w.bob_main, mark, "bob heard from ken");
          })},
         {Col::server_only, na("a client frame")}},
        false,
        [](World& w) {
            World::expect_sent(w.send_text(*w.alice_main, w.carol.id, "CONTROL SECRET send"),
                               "alice -> carol");
            EXPECT_TRUE(w.watcher("carol").client->wait_body(Envelope::kDeliver, 5s))
                << "carol heard nothing (control)";
            const auto own = w.upload(w.bob, "bob.txt", "CONTROL bob's file");
            World::expect_sent(w.send_file(*w.bob_main, w.dave.id, own),
                               "bob -> dave (his own file)");
            EXPECT_TRUE(w.watcher("dave").client->wait_body(Envelope::kDeliver, 5s))
                << "dave heard nothing (control)";
            w.settle();
        }));

    t.push_back(frame_row(
        "receipt", true, [](World& w) { return receipt(w.conv_ac, client::READ, 1000); },
        {{Col::other_user, check([](World& w) {
              auto p = w.begin();
              const auto r1 = send_unanswered(*w.bob_main, receipt(w.conv_ac, client::READ, 1000));
              const auto r2 =
                  send_unanswered(*w.bob_main, receipt(w.conv_ac, client::DELIVERED, 1000));
              w.end(p);
              expect_no_answer(*w.bob_main, r1, "bob's READ in alice<->carol");
              expect_no_answer(*w.bob_main, r2, "bob's DELIVERED in alice<->carol");
          })},
         {Col::non_friend, check([](World& w) {
              dropped_case(w, receipt(conversation_id(w.bob.id, w.alice.id), client::READ, 5),
                           "bob's READ in his empty chat with alice");
          })},
         {Col::blocked, check([](World& w) {
              dropped_case(w, receipt(conversation_id(w.bob.id, w.ken.id), client::READ, 5),
                           "bob's READ in his empty chat with ken");
              // With history: neither one of a blocked pair hears the other's receipts.
              auto b = blocked_pair(w);
              for (const bool reader_is_x : {true, false}) {
                  auto& s = reader_is_x ? *b.xs : *b.ys;
                  read_stays_with_reader(
                      w, b, reader_is_x,
                      [&](std::uint64_t up_to) { s.send(receipt(b.conv, client::READ, up_to)); },
                      reader_is_x ? "the blocked user's Receipt" : "the blocker's Receipt");
              }
          })},
         {Col::server_only, na("a client frame")}},
        false,
        [](World& w) {
            World::expect_sent(w.send_text(*w.carol_main, w.alice.id, "CONTROL SECRET unread"),
                               "carol -> alice");
            EXPECT_TRUE(w.watcher("alice").client->wait_body(Envelope::kDeliver, 5s));
            w.alice_main->send(receipt(w.conv_ac, client::READ, w.last_seq(w.conv_ac)));
            const auto alice = w.alice.id;
            EXPECT_TRUE(w.watcher("carol").client->wait_for(
                [alice](const Envelope& e) {
                    return e.has_receipt_event() && e.receipt_event().user_id() == alice;
                },
                5s))
                << "carol did not hear alice's receipt (control)";
            w.settle();
        }));

    t.push_back(frame_row(
        "sync_conversations", true,
        [](World&) {
            Envelope e;
            e.mutable_sync_conversations()->set_cursor(0);
            return e;
        },
        {{Col::other_user, check([](World& w) {
              auto p = w.begin();
              Envelope e;
              e.mutable_sync_conversations()->set_cursor(0);
              auto a = ask(*w.bob_main, e);
              ASSERT_TRUE(a && a->has_conversation_list()) << (a ? describe(*a) : "no answer");
              EXPECT_GT(a->conversation_list().conversations_size(), 0) << "bob has one with dave";
              for (const auto& c : a->conversation_list().conversations()) {
                  EXPECT_TRUE(is_participant(c.conversation_id(), w.bob.id))
                      << c.ShortDebugString();
              }
              EXPECT_FALSE(frame_carries(*a, "SECRET"));
              w.end(p);
          })},
         {Col::non_friend, na("lists the caller's own conversations only (other_user)")},
         {Col::blocked, na("lists the caller's own conversations only (other_user)")},
         {Col::server_only, na("a client frame")}},
        false,
        [](World& w) {
            Envelope e;
            e.mutable_sync_conversations()->set_cursor(0);
            auto a = ask(*w.alice_main, e);
            ASSERT_TRUE(a && a->has_conversation_list());
            bool found = false;
            for (const auto& c : a->conversation_list().conversations())
                found = found || c.conversation_id() == w.conv_ac;
            EXPECT_TRUE(found) << describe(*a);
        }));

    t.push_back(frame_row(
        "sync_messages", true, [](World& w) { return sync_messages(w.conv_ac, 0); },
        {{Col::other_user, check([](World& w) {
              const auto swapped =
                  (conversation_high(w.conv_ac) << 32) | conversation_low(w.conv_ac);
              auto p = w.begin();
              for (const auto& req :
                   {sync_messages(w.conv_ac, 0), sync_messages(w.conv_ac, 0, 1000),
                    sync_messages(swapped, 0)}) {
                  auto a = ask(*w.bob_main, req);
                  ASSERT_TRUE(a.has_value()) << "no answer to " << describe(req);
                  const bool refused =
                      is_error(a, client::NOT_FOUND) ||
                      (a->has_message_page() && a->message_page().code() == client::NOT_FOUND &&
                       a->message_page().messages_size() == 0);
                  EXPECT_TRUE(refused) << describe(req) << " answered " << describe(*a);
                  EXPECT_FALSE(frame_carries(*a, "SECRET")) << describe(*a);
              }
              w.end(p);
          })},
         {Col::non_friend,
          na("a conversation is readable by its two participants only (other_user)")},
         {Col::blocked,
          na("a participant reads their own history; a block stops new messages (send)")},
         {Col::server_only, na("a client frame")}},
        false,
        [](World& w) {
            auto a = ask(*w.alice_main, sync_messages(w.conv_ac, 0));
            ASSERT_TRUE(a && a->has_message_page()) << (a ? describe(*a) : "no answer");
            EXPECT_GE(a->message_page().messages_size(), 3);
            EXPECT_TRUE(frame_carries(*a, "SECRET")) << "the control reads the history";
        }));

    t.push_back(frame_row(
        "typing", true, [](World& w) { return typing(w.carol.id); },
        {{Col::other_user,
          na("a Typing names only the peer: the conversation is always the sender's own")},
         {Col::non_friend,
          check([](World& w) { dropped_case(w, typing(w.alice.id), "bob types to alice"); })},
         {Col::blocked, check([](World& w) {
              dropped_case(w, typing(w.ken.id), "bob types to ken");
              auto ken = ken_session(w);
              const auto mark = w.bob_main->all_frames().size();
              auto p = w.begin();
              ken->send(typing(w.bob.id));
              w.end(p);
              expect_no_push_since(*w.bob_main, mark, "bob saw ken typing");
          })},
         {Col::server_only, na("a client frame")}},
        false,
        [](World& w) {
            w.alice_main->send(typing(w.carol.id));
            const auto alice = w.alice.id;
            EXPECT_TRUE(w.watcher("carol").client->wait_for(
                [alice](const Envelope& e) {
                    return e.has_typing_event() && e.typing_event().user_id() == alice;
                },
                5s))
                << "carol did not see alice typing (control)";
            w.settle();
        }));

    t.push_back(frame_row(
        "read_by", true, [](World&) { return read_by(1, 1); },
        {{Col::other_user, check([](World& w) {
              const auto g = alice_group(w);
              auto p = w.begin();
              for (const auto& req : {read_by(g, 1), read_by(g, 0), read_by(w.conv_ac, 1)}) {
                  auto a = ask(*w.bob_main, req);
                  ASSERT_TRUE(a.has_value()) << "no answer to " << describe(req);
                  const bool refused = is_error(a, client::NOT_FOUND) ||
                                       (a->has_read_by_result() && a->read_by_result().code() == client::NOT_FOUND &&
                                        a->read_by_result().members_size() == 0);
                  EXPECT_TRUE(refused) << describe(req) << " answered " << describe(*a);
              }
              w.end(p);
          })},
         {Col::non_friend, na("group membership decides, not friendship (other_user: a non-member)")},
         {Col::blocked, na("group membership decides, not blocks (other_user: a non-member)")},
         {Col::server_only, na("a client frame")}},
        false,
        [](World& w) {
            const auto g = alice_group(w);
            auto a = ask(*w.alice_main, read_by(g, 1));
            ASSERT_TRUE(a && a->has_read_by_result()) << (a ? describe(*a) : "no answer");
            EXPECT_EQ(a->read_by_result().code(), client::ERROR_NONE);
            ASSERT_EQ(a->read_by_result().members_size(), 1) << "carol (control)";
            EXPECT_EQ(a->read_by_result().members(0).user_id(), w.carol.id);
        }));

    // ---------------------------------------------------------------- server -> client (forged)
    t.push_back(server_frame("login_result", [](World& w) {
        Envelope e;
        e.mutable_login_result()->set_user_id(w.alice.id);
        e.mutable_login_result()->set_connector_id("FORGED");
        return e;
    }));
    t.push_back(server_frame("pong", [](World&) {
        Envelope e;
        e.mutable_pong()->set_client_time_ms(1);
        return e;
    }));
    t.push_back(server_frame("send_result", [](World& w) {
        Envelope e;
        auto* r = e.mutable_send_result();
        r->set_client_msg_id(random_cmid());
        r->set_msg_id(1);
        r->set_conversation_id(w.conv_ac);
        r->set_seq(99);
        r->set_message("FORGED");
        return e;
    }));
    const auto forged_deliver = [](World& w, client::Deliver* d) {
        d->set_conversation_id(w.conv_ac);
        d->set_seq(99);
        d->set_msg_id(1);
        d->set_sender_user_id(w.carol.id);
        d->set_sender_device_id("FORGED");
        d->set_type(client::TEXT);
        d->set_text("FORGED as carol");
    };
    t.push_back(server_frame("deliver", [forged_deliver](World& w) {
        Envelope e;
        forged_deliver(w, e.mutable_deliver());
        return e;
    }));
    t.push_back(server_frame("receipt_event", [](World& w) {
        Envelope e;
        e.mutable_receipt_event()->set_conversation_id(w.conv_ac);
        e.mutable_receipt_event()->set_user_id(w.carol.id);
        e.mutable_receipt_event()->set_kind(client::READ);
        e.mutable_receipt_event()->set_up_to_seq(99);
        return e;
    }));
    t.push_back(server_frame("conversation_list", [](World& w) {
        Envelope e;
        auto* c = e.mutable_conversation_list()->add_conversations();
        c->set_conversation_id(w.conv_ac);
        c->set_peer_user_id(w.carol.id);
        c->set_last_seq(99);
        return e;
    }));
    t.push_back(server_frame("message_page", [forged_deliver](World& w) {
        Envelope e;
        e.mutable_message_page()->set_conversation_id(w.conv_ac);
        forged_deliver(w, e.mutable_message_page()->add_messages());
        return e;
    }));
    t.push_back(server_frame("sync_hint", [](World& w) {
        Envelope e;
        e.mutable_sync_hint()->set_conversation_id(w.conv_ac);
        e.mutable_sync_hint()->set_reason("FORGED");
        return e;
    }));
    t.push_back(server_frame("typing_event", [](World& w) {
        Envelope e;
        e.mutable_typing_event()->set_conversation_id(w.conv_ac);
        e.mutable_typing_event()->set_user_id(w.carol.id);
        return e;
    }));
    t.push_back(server_frame("presence", [](World& w) {
        Envelope e;
        e.mutable_presence()->set_user_id(w.carol.id);
        e.mutable_presence()->set_online(true);
        return e;
    }));
    t.push_back(server_frame("kick", [](World&) {
        Envelope e;
        e.mutable_kick()->set_reason(client::LOGGED_OUT);
        e.mutable_kick()->set_message("FORGED");
        return e;
    }));
    t.push_back(server_frame("read_by_result", [](World& w) {
        Envelope e;
        e.mutable_read_by_result()->set_conversation_id(1);
        e.mutable_read_by_result()->add_members()->set_user_id(w.carol.id);
        return e;
    }));
    // im-rest -> transfer only: a client's GroupChange never passes a connector.
    t.push_back(server_frame("group_change", [](World& w) {
        Envelope e;
        e.mutable_group_change()->set_group_id(1);  // any: the connector refuses the frame type
        e.mutable_group_change()->set_kind(client::MEMBERS_ADDED);
        e.mutable_group_change()->add_user_ids(w.bob.id);
        return e;
    }));
    t.push_back(server_frame("group_change_result", [](World&) {
        Envelope e;
        e.mutable_group_change_result()->set_message("FORGED");
        return e;
    }));
    t.push_back(server_frame("error", [](World&) {
        Envelope e;
        e.mutable_error()->set_code(client::INTERNAL);
        e.mutable_error()->set_message("FORGED");
        return e;
    }));
    return t;
}

}  // namespace im::test::authz
