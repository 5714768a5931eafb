// The authorization sweep (issue 14, Hardening): every REST endpoint and every client frame type,
// tried with no token, a malformed, an expired and a revoked token, with another user's token, as
// a non-friend and as a blocked user, against the real cluster (im-rest, im-transfer, two
// connectors, MariaDB, Redis). Each refusal is checked for its status or error code AND for the
// absence of side effects: the database as it was (row counts and checksums of every table a
// request could write), nothing delivered to the targets' other logged-in clients within a short
// window, nothing of another user in the answer. Every row ends with its control: the same
// request with the rightful credentials succeeds, so a refusal is never a malformed request.
//
// The tables (authz_rest_table.hpp, authz_frame_table.hpp) must cover what the code registers:
// the routes come from im::rest::registered_routes() (what RestService serves), the frame types
// from the reflection of im.client.Envelope's `oneof body`. A new endpoint or frame type fails the
// *Table tests below until it has a row. See docs/REST.md and docs/PROTOCOL.md "Authorization
// sweep".

#include <gtest/gtest.h>

#include <google/protobuf/descriptor.h>

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>

#include "authz_frame_table.hpp"
#include "authz_rest_table.hpp"
#include "route_table.hpp"

namespace im::test::authz {
namespace {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------- plans
// What the sweep does for each column of a row: "check" (written in the row), "generated" (the
// token columns), "n/a: why", or a problem ("MISSING", "INVALID: ...") that fails the *Table test.
std::map<Col, std::string> plan(const RestEntry& e) {
    std::map<Col, std::string> out;
    for (Col c : kRestCols) {
        const auto it = e.cells.find(c);
        if (is_token_col(c) && e.needs_auth) {
            out[c] = it == e.cells.end()
                         ? "generated"
                         : "INVALID: an authenticated route cannot opt out of token checks";
        } else if (it == e.cells.end()) {
            out[c] = "MISSING";
        } else if (it->second.run) {
            out[c] = "check";
        } else {
            out[c] =
                it->second.na.empty() ? "INVALID: n/a without a reason" : "n/a: " + it->second.na;
        }
    }
    for (const auto& [c, cell] : e.cells) {
        if (std::find(std::begin(kRestCols), std::end(kRestCols), c) == std::end(kRestCols)) {
            out[c] = "INVALID: not a REST column";
        }
    }
    return out;
}

std::map<Col, std::string> plan(const FrameEntry& e) {
    std::map<Col, std::string> out;
    for (Col c : kFrameCols) {
        const auto it = e.cells.find(c);
        const bool generated =
            (is_token_col(c) && !e.custom_tokens) || (c == Col::server_only && !e.from_client);
        if (generated) {
            out[c] = it == e.cells.end() ? "generated"
                                         : "INVALID: this column is generated for this row";
        } else if (it == e.cells.end()) {
            out[c] = "MISSING";
        } else if (it->second.run) {
            out[c] = "check";
        } else {
            out[c] =
                it->second.na.empty() ? "INVALID: n/a without a reason" : "n/a: " + it->second.na;
        }
    }
    return out;
}

template <class Entry, std::size_t N>
std::string render(const std::vector<Entry>& rows, const Col (&cols)[N],
                   const std::function<std::string(const Entry&)>& key, int* checks, int* nas) {
    std::ostringstream o;
    o << std::left << std::setw(44) << "entry";
    for (Col c : cols)
        o << std::setw(16) << col_name(c);
    o << "\n";
    for (const auto& e : rows) {
        o << std::setw(44) << key(e);
        for (const auto& [c, p] : plan(e)) {
            const bool na_cell = p.rfind("n/a", 0) == 0;
            o << std::setw(16) << (na_cell ? "n/a" : p);
            (na_cell ? *nas : *checks) += 1;
        }
        o << "\n";
    }
    return o.str();
}

std::string rest_key(const RestEntry& e) {
    return e.method + " " + e.pattern;
}
std::string frame_key(const FrameEntry& e) {
    return e.name + (e.from_client ? " (C->S)" : " (S->C)");
}

// ---------------------------------------------------------------------------- the tables cover the
// code
TEST(AuthzSweepTable, EveryRegisteredRouteHasARow) {
    std::map<std::string, bool> registered;
    for (const auto& r : im::rest::registered_routes())
        registered[r.method + " " + r.pattern] = r.needs_auth;
    ASSERT_FALSE(registered.empty());
    std::map<std::string, bool> table;
    for (const auto& e : rest_table()) {
        EXPECT_TRUE(table.emplace(rest_key(e), e.needs_auth).second)
            << "two rows for " << rest_key(e);
        for (const auto& [c, p] : plan(e)) {
            EXPECT_TRUE(p == "check" || p == "generated" || p.rfind("n/a: ", 0) == 0)
                << rest_key(e) << " column " << col_name(c) << ": " << p;
        }
    }
    for (const auto& [route, auth] : registered) {
        auto it = table.find(route);
        if (it == table.end()) {
            ADD_FAILURE() << "the route " << route
                          << " is registered but has no row in the authorization sweep "
                          << "(tests/integration/authz_rest_table.hpp): add one";
            continue;
        }
        EXPECT_EQ(it->second, auth)
            << route << ": the row says needs_auth=" << it->second << ", the service " << auth;
    }
    for (const auto& [route, auth] : table) {
        EXPECT_TRUE(registered.count(route))
            << "the sweep has a row for " << route << ", which is not registered";
    }
}

TEST(AuthzSweepTable, EveryClientFrameTypeHasARow) {
    const auto* body = client::Envelope::descriptor()->FindOneofByName("body");
    ASSERT_NE(body, nullptr);
    std::set<std::string> types;
    for (int i = 0; i < body->field_count(); ++i)
        types.insert(body->field(i)->name());
    std::set<std::string> table;
    for (const auto& e : frame_table()) {
        EXPECT_TRUE(table.insert(e.name).second) << "two rows for " << e.name;
        for (const auto& [c, p] : plan(e)) {
            EXPECT_TRUE(p == "check" || p == "generated" || p.rfind("n/a: ", 0) == 0)
                << e.name << " column " << col_name(c) << ": " << p;
        }
        EXPECT_EQ(static_cast<bool>(e.control), e.from_client)
            << e.name << ": client rows need a control";
    }
    for (const auto& t : types) {
        EXPECT_TRUE(table.count(t))
            << "the frame type " << t << " (Envelope.body) has no row in the authorization "
            << "sweep (tests/integration/authz_frame_table.hpp): add one";
    }
    for (const auto& t : table)
        EXPECT_TRUE(types.count(t)) << "the sweep has a row for " << t << ", not in Envelope.body";
}

// ---------------------------------------------------------------------------- runs
ClusterOptions sweep_cluster(const std::string& name) {
    ClusterOptions o;
    o.name = name;
    o.connectors = 2;
    // Typing is rate-limited per pair before the policy check: no rate limit may hide a leak.
    o.transfer_sets = {"policy.typing_per_second=1000"};
    // Live sessions re-check their token often, so an expiring token's session ends in the run.
    o.connector_sets = {"sessions.token_recheck_interval=500ms"};
    return o;
}

std::uint64_t count(World& w, const std::string& sql) {
    std::unique_ptr<sql::ResultSet> rs(w.cl.db().db().prepare(sql).executeQuery());
    rs->next();
    return rs->getUInt64(1);
}

// The four token columns of an authenticated route, from its rightful request.
void rest_token_columns(World& w, const RestEntry& e, const Req& rq) {
    static int n = 0;
    const auto refused = [&](const std::string& label,
                             const std::optional<std::string>& authorization) {
        SCOPED_TRACE(label);
        auto p = w.begin();
        expect_refused(rq.call(w, authorization), 401, "unauthenticated",
                       rest_key(e) + " with " + label);
        w.end(p, e.pushes ? kQuiet : 0ms);
    };
    refused("no Authorization header", std::nullopt);
    auto altered = rq.token;
    altered.back() = altered.back() == 'A' ? 'B' : 'A';
    for (const auto& h :
         {std::string("Bearer"), std::string("Bearer not-a-token"),
          "Bearer " + World::unknown_token(), "Bearer " + altered,
          "Basic " + std::string("YWxpY2U6c2VjcmV0"), "Token " + rq.token, rq.token}) {
        refused("malformed Authorization '" + h.substr(0, 12) + "...'", h);
    }
    const auto device = "SECRET-sweep-" + std::to_string(++n);
    refused("an expired token", "Bearer " + w.expired_token(rq.owner, device + "-exp"));
    refused("a revoked token", "Bearer " + w.revoked_token(rq.owner, device + "-rev"));
}

TEST(AuthzSweep, RestEndpoints) {
    const auto t0 = Clock::now();
    Cluster cl(sweep_cluster("authz-rest"));
    World w(cl);
    const auto rows = rest_table();
    for (const auto& e : rows) {
        SCOPED_TRACE(rest_key(e));
        const Req rq = e.rightful(w);
        if (e.needs_auth) rest_token_columns(w, e, rq);
        for (Col c : kRestCols) {
            auto it = e.cells.find(c);
            if (it == e.cells.end() || !it->second.run) continue;
            SCOPED_TRACE(col_name(c));
            it->second.run(w);
        }
        // The control: the same request with the rightful token succeeds.
        const auto res = rq.as(w, rq.token);
        EXPECT_EQ(res.status, rq.ok) << "control of " << rest_key(e) << ": " << res.body;
        if (e.after_control) e.after_control(w, rq, res);
    }
    EXPECT_EQ(count(w, "SELECT COUNT(*) FROM friend_requests WHERE message LIKE '%ATTACK%'"), 0u);
    int checks = 0, nas = 0;
    std::cout << render<RestEntry>(rows, kRestCols, rest_key, &checks, &nas);
    std::cout << "REST sweep: " << rows.size() << " routes x " << std::size(kRestCols)
              << " columns: " << checks << " checked, " << nas << " n/a, in "
              << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()
              << " ms\n";
}

// The four token columns of a frame row: never logged in, and pipelined behind a refused Login.
void frame_token_columns(World& w, const FrameEntry& e) {
    static int n = 0;
    {
        SCOPED_TRACE("no_token");
        auto p = w.begin();
        RawClient c(w.cl.connector_port(0));
        auto a = ask(c, e.frame(w));
        EXPECT_TRUE(is_error(a, client::NOT_LOGGED_IN)) << (a ? describe(*a) : "no answer");
        w.end(p);
        expect_no_secret(c, e.name + " before Login");
    }
    const auto behind_login = [&](const std::string& label,
                                  const std::vector<std::pair<std::string, std::string>>& creds) {
        SCOPED_TRACE(label);
        std::vector<std::unique_ptr<RawClient>> conns;
        auto p = w.begin();
        for (const auto& [token, device] : creds) {
            auto& c = *conns.emplace_back(std::make_unique<RawClient>(w.cl.connector_port(0)));
            auto frame = e.frame(w);
            frame.set_request_id(2);
            c.send_bytes(wire::encode_frame(login_frame(token, device, 1)) +
                         wire::encode_frame(frame));
            auto a = c.wait_for([](const Envelope& f) { return f.request_id() == 1; }, 10s);
            EXPECT_TRUE(is_error(a, client::UNAUTHENTICATED))
                << "Login answered " << (a ? describe(*a) : "nothing");
            EXPECT_TRUE(c.wait_closed(5s)) << "the connection stays open after a refused Login";
            for (const auto& f : c.all_frames()) {
                if (f.request_id() != 2) continue;
                EXPECT_TRUE(f.has_error() && f.error().code() == client::NOT_LOGGED_IN)
                    << describe(f);
            }
            expect_no_secret(c, e.name + " behind a refused Login");
        }
        w.end(p);
    };
    const auto device = "SECRET-alice-sweep-" + std::to_string(++n);
    auto altered = w.alice.token;
    altered.back() = altered.back() == 'A' ? 'B' : 'A';
    behind_login(
        "malformed_token",
        {{"", device}, {"garbage!", device}, {World::unknown_token(), device}, {altered, "dev1"}});
    const auto expired = w.expired_token(w.alice, device + "-exp");
    behind_login("expired_token", {{expired, device + "-exp"}});
    const auto revoked = w.revoked_token(w.alice, device + "-rev");
    behind_login("revoked_token", {{revoked, device + "-rev"}});
}

// server_only: a logged-in client (a stranger, and a participant of the conversation it names)
// sends a server frame: UNKNOWN_BODY, the session stays, nothing is forwarded or stored.
void forged_by_clients(World& w, const FrameEntry& e) {
    SCOPED_TRACE("server_only");
    auto p = w.begin();
    for (RawClient* c : {w.bob_main.get(), w.alice_main.get()}) {
        auto a = ask(*c, e.frame(w));
        EXPECT_TRUE(is_error(a, client::UNKNOWN_BODY)) << (a ? describe(*a) : "no answer");
    }
    w.end(p);
    EXPECT_FALSE(w.bob_main->closed());
    EXPECT_FALSE(w.alice_main->closed());
}

TEST(AuthzSweep, ClientFrames) {
    const auto t0 = Clock::now();
    Cluster cl(sweep_cluster("authz-frames"));
    World w(cl);
    const auto rows = frame_table();
    for (const auto& e : rows) {
        SCOPED_TRACE(frame_key(e));
        if (!e.custom_tokens) frame_token_columns(w, e);
        for (Col c : kFrameCols) {
            auto it = e.cells.find(c);
            if (it == e.cells.end() || !it->second.run) continue;
            SCOPED_TRACE(col_name(c));
            it->second.run(w);
        }
        if (!e.from_client) forged_by_clients(w, e);
        if (e.control) e.control(w);
    }
    {
        SCOPED_TRACE("an Envelope without a body");
        auto p = w.begin();
        EXPECT_TRUE(is_error(ask(*w.bob_main, Envelope{}), client::UNKNOWN_BODY));
        w.end(p);
    }
    // Over the whole run: no attack reached a watcher or the messages table.
    for (const auto& wt : w.watchers) {
        for (const auto& f : wt.client->all_frames()) {
            EXPECT_FALSE(frame_carries(f, "ATTACK") || frame_carries(f, "FORGED"))
                << wt.name << ": " << describe(f);
        }
    }
    EXPECT_EQ(
        count(w,
              "SELECT COUNT(*) FROM messages WHERE body LIKE '%ATTACK%' OR body LIKE '%FORGED%'"),
        0u);
    expect_no_secret(*w.bob_main, "bob's session");
    int checks = 0, nas = 0;
    std::cout << render<FrameEntry>(rows, kFrameCols, frame_key, &checks, &nas);
    std::cout << "frame sweep: " << rows.size() << " frame types x " << std::size(kFrameCols)
              << " columns: " << checks << " checked, " << nas << " n/a, in "
              << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()
              << " ms\n";
}

}  // namespace
}  // namespace im::test::authz
