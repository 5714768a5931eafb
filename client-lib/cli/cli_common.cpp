#include "cli_common.hpp"

#include <cstdlib>
#include <ctime>
#include <future>

namespace imcli {

std::string rest_url_of(const Args& args, const std::string& from_session) {
    if (!args.rest_url.empty()) return args.rest_url;
    if (const char* v = std::getenv("IM_REST_URL"); v && *v) return v;
    if (!from_session.empty()) return from_session;
    return kDefaultRestUrl;
}

imclient::Options client_options(const Args& args, const SessionFile& file, const SessionData& s,
                                 const std::string& kind) {
    imclient::Options o;
    o.rest_url = rest_url_of(args, s.rest_url);
    o.connectors = args.connectors.empty() ? s.connectors : args.connectors;
    o.device_id = kind == "chat" ? s.chat_device : s.cmd_device;
    if (args.persist) o.state_dir = file.state_dir(kind);
    o.client_version = "im-cli/0.1";
    return o;
}

imclient::LoginInfo connect(imclient::Client& client, const SessionData& s, const std::string& kind,
                            std::chrono::seconds timeout) {
    auto f = client.login_with_token(kind == "chat" ? s.chat_token : s.cmd_token, s.user_id);
    if (f.wait_for(timeout) != std::future_status::ready) {
        client.close();
        throw CommandFailed("no connector answered within " + std::to_string(timeout.count()) +
                            " s (is the cluster up? ./scripts/status)");
    }
    try {
        return f.get();
    } catch (const imclient::Error& e) {
        if (e.code() == imclient::ErrorCode::unauthenticated ||
            client.state() == imclient::State::auth_failed) {
            throw NotLoggedIn("the saved session of " + s.username +
                              " was refused (expired or revoked): run im-cli login --user " +
                              s.username + " --password ...");
        }
        throw CommandFailed(std::string("cannot connect: ") + e.what() + " (" +
                            imclient::to_string(e.code()) + ")");
    }
}

namespace {
std::string format_time(std::int64_t ms, bool with_date) {
    const std::time_t t = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    ::localtime_r(&t, &tm);
    char buf[32];
    const auto n = with_date ? std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm)
                             : std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
    return std::string(buf, n);
}
}  // namespace

std::string clock_of(std::int64_t ms) {
    return format_time(ms, false);
}
std::string date_time_of(std::int64_t ms) {
    return format_time(ms, true);
}

}  // namespace imcli
