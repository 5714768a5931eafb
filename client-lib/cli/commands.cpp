#include "commands.hpp"

#include <unistd.h>

#include <chrono>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>

#include "cli_common.hpp"
#include "json_lite.hpp"
#include "rest_api.hpp"
#include "social.hpp"

namespace imcli {
namespace {

using imclient::detail::json_quote;

// A device id per machine and kind ("cli-myhost-chat"): 1-64 of A-Z a-z 0-9 . _ : -.
std::string device_id(const std::string& kind) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
    std::string clean;
    for (const char* p = host; *p && clean.size() < 40; ++p) {
        const char c = *p;
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        clean.push_back(ok ? c : '-');
    }
    return "cli-" + (clean.empty() ? std::string("host") : clean) + "-" + kind;
}

struct Loaded {
    SessionFile file;
    SessionData data;
    std::string rest_url;
};

Loaded load_session(const Args& args) {
    SessionFile file(cli_home(args.home), args.user);
    SessionData data = file.load();
    std::string url = rest_url_of(args, data.rest_url);
    return {std::move(file), std::move(data), std::move(url)};
}

// POST /v1/sessions for one device: (token, connectors).
std::pair<std::string, JsonValue> password_login(RestApi& rest, const Args& args,
                                                 const std::string& device) {
    auto answer = rest.post("/v1/sessions", "{\"username\":" + json_quote(args.user) +
                                                ",\"password\":" + json_quote(args.password) +
                                                ",\"device_id\":" + json_quote(device) + "}");
    auto token = json_str(answer, "token");
    if (token.empty()) throw CommandFailed("im-rest: malformed login answer");
    return {std::move(token), std::move(answer)};
}

// The Client of the one-shot commands' device. Its state directory is locked while another
// im-cli send of the user runs (scripts may send in parallel): wait for it until the deadline.
std::unique_ptr<imclient::Client> cmd_client(const Args& args, const SessionFile& file,
                                             const SessionData& data,
                                             std::chrono::steady_clock::time_point deadline) {
    for (;;) {
        try {
            return std::make_unique<imclient::Client>(client_options(args, file, data, "cmd"));
        } catch (const imclient::Error& e) {
            if (e.code() != imclient::ErrorCode::state_locked ||
                std::chrono::steady_clock::now() >= deadline) {
                throw CommandFailed(e.what());
            }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
}

void print_lines(const std::vector<std::string>& lines) {
    for (const auto& l : lines)
        std::cout << l << "\n";
}

}  // namespace

int run_register(const Args& args) {
    RestApi rest(rest_url_of(args, ""), "");
    std::string body =
        "{\"username\":" + json_quote(args.user) + ",\"password\":" + json_quote(args.password);
    if (!args.display_name.empty()) body += ",\"display_name\":" + json_quote(args.display_name);
    body += "}";
    const auto user = rest.post("/v1/users", body);
    std::cout << "registered " << json_str(user, "username") << " (user id " << json_u64(user, "id")
              << ")\nnext: im-cli login --user " << args.user << " --password ...\n";
    return 0;
}

int run_login(const Args& args) {
    SessionFile file(cli_home(args.home), args.user);
    SessionData s;
    s.username = args.user;
    s.rest_url = rest_url_of(args, "");
    RestApi rest(s.rest_url, "");
    s.chat_device = device_id("chat");
    s.cmd_device = device_id("cmd");
    JsonValue answer;
    std::tie(s.chat_token, answer) = password_login(rest, args, s.chat_device);
    std::tie(s.cmd_token, std::ignore) = password_login(rest, args, s.cmd_device);
    if (const JsonValue* user = answer.find("user")) s.user_id = json_u64(*user, "id");
    if (const JsonValue* list = answer.find("connectors")) {
        for (const auto& c : list->items) {
            if (const auto* str = c.as_string()) s.connectors.push_back(*str);
        }
    }
    if (s.user_id == 0) throw CommandFailed("im-rest: malformed login answer (no user id)");
    // The state directories stay: a login again (an expired token, say) keeps the unsent
    // messages and the cursors of the two devices (imclient clears the cursors and drops the
    // messages of another user id, should the name now belong to another account).
    file.remove_old_cursor_files();
    file.save(s);
    std::cout << "logged in as " << s.username << " (user id " << s.user_id
              << "); session saved in " << file.path() << "\nnext: im-cli --user " << s.username
              << "   (the interactive chat; /help lists its commands)\n";
    return 0;
}

int run_logout(const Args& args) {
    auto l = load_session(args);
    for (const auto* token : {&l.data.chat_token, &l.data.cmd_token}) {
        try {
            RestApi(l.rest_url, *token).del("/v1/sessions/current");
        } catch (const NotLoggedIn&) {  // already revoked or expired, which is the goal
        }
    }
    l.file.remove();
    std::cout << "logged out " << l.data.username << "; removed " << l.file.path() << "\n";
    return 0;
}

int run_send(const Args& args) {
    using Clock = std::chrono::steady_clock;
    auto l = load_session(args);
    std::string text;
    for (const auto& w : args.words)
        text += (text.empty() ? "" : " ") + w;
    const auto peer = RestApi(l.rest_url, l.data.cmd_token).user_id_of(args.to);
    const auto timeout = std::chrono::seconds(args.timeout_s);
    const auto deadline = Clock::now() + timeout;

    std::promise<std::string> outcome;  // "" when SENT, else the reason
    std::mutex mu;
    std::string my_id;
    bool settled = false;
    auto settle = [&](const std::string& id, std::string result) {
        std::lock_guard lock(mu);
        if (settled || id != my_id) return;
        settled = true;
        outcome.set_value(std::move(result));
    };
    std::uint64_t seq = 0;
    const auto client = cmd_client(args, l.file, l.data, deadline);
    const std::size_t earlier = client->pending_sends();  // restored: an earlier send left them
    client->on_sent([&](const imclient::SendAck& a) {
        {
            std::lock_guard lock(mu);
            if (a.client_msg_id == my_id) seq = a.seq;
        }
        settle(a.client_msg_id, "");
    });
    client->on_send_failed([&](const imclient::SendFailure& f) {
        settle(f.client_msg_id, std::string(imclient::to_string(f.code)) + ": " + f.message);
    });
    connect(*client, l.data, "cmd", timeout);
    {
        // Under the lock: on_sent cannot compare against my_id before it is set.
        std::lock_guard lock(mu);
        my_id = client->send_text(peer, text);
    }
    auto result = outcome.get_future();
    if (result.wait_until(deadline) != std::future_status::ready) {
        client->close();
        throw CommandFailed("not SENT within " + std::to_string(args.timeout_s) + " s" +
                            (args.persist
                                 ? " (it stays queued in " + l.file.state_dir("cmd") +
                                       " and goes with the next im-cli --user " + args.user +
                                       " send: sending it again would make it two messages)"
                                 : " (the message may still be delivered if a resend reaches the "
                                   "server; a retry with im-cli is a new message)"));
    }
    const auto reason = result.get();
    // Messages an earlier send left queued go too: give them the rest of the time.
    while (client->pending_sends() > 0 && Clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const std::size_t left = client->pending_sends();
    client->close();
    if (earlier > 0) {
        std::cout << (earlier - std::min(earlier, left)) << " of " << earlier
                  << " message(s) queued by an earlier im-cli send went too\n";
    }
    if (!reason.empty()) throw CommandFailed("refused: " + reason);
    std::cout << "sent to " << args.to << " (#" << seq << ")\n";
    return 0;
}

int run_history(const Args& args) {
    auto l = load_session(args);
    RestApi rest(l.rest_url, l.data.cmd_token);
    const auto peer = rest.user_id_of(args.with);
    print_lines(history_lines(rest, l.data.user_id, l.data.username, peer, args.with,
                              args.limit.value_or(0)));
    return 0;
}

int run_friends(const Args& args) {
    auto l = load_session(args);
    RestApi rest(l.rest_url, l.data.cmd_token);
    const std::string verb = args.words.empty() ? "list" : args.words.front();
    const bool named = !(verb == "list" || verb == "requests");
    if (named ? args.words.size() != 2 : args.words.size() > 1) {
        throw UsageError(named ? "friends " + verb + " needs one NAME"
                               : "friends " + verb + " takes no argument");
    }
    if (verb == "list") {
        print_lines(friends_lines(rest));
    } else if (verb == "requests") {
        print_lines(requests_lines(rest));
    } else if (verb == "add") {
        std::cout << add_friend(rest, checked_username(args.words[1], "friends add"), args.message)
                  << "\n";
    } else if (verb == "accept" || verb == "decline") {
        std::cout << answer_request(rest, checked_username(args.words[1], "friends accept"), verb)
                  << "\n";
    } else if (verb == "remove") {
        const auto peer = checked_username(args.words[1], "friends remove");
        rest.del("/v1/friends/" + std::to_string(rest.user_id_of(peer)));
        std::cout << "removed " << peer << " from your friends\n";
    } else {
        throw UsageError("unknown friends command '" + verb +
                         "' (list, add, accept, decline, remove, requests)");
    }
    return 0;
}

int run_chats(const Args& args) {
    auto l = load_session(args);
    RestApi rest(l.rest_url, l.data.cmd_token);
    print_lines(chats_lines(rest));
    return 0;
}

}  // namespace imcli
