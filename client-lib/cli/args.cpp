#include "args.hpp"

#include <cctype>
#include <charconv>

namespace imcli {
namespace {

unsigned parse_count(const std::string& opt, const std::string& v, unsigned min, unsigned max) {
    unsigned n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || end != v.data() + v.size() || n < min || n > max) {
        throw UsageError(opt + " must be a number from " + std::to_string(min) + " to " +
                         std::to_string(max) + " (got '" + v + "')");
    }
    return n;
}

}  // namespace

Args parse_args(const std::vector<std::string>& argv) {
    Args a;
    std::vector<std::string> positional;
    bool only_positional = false;
    for (std::size_t i = 0; i < argv.size(); ++i) {
        std::string arg = argv[i];
        if (only_positional || arg.size() < 2 || arg[0] != '-') {
            positional.push_back(arg);
            continue;
        }
        if (arg == "--") {
            only_positional = true;
            continue;
        }
        if (arg == "-h" || arg == "--help") {
            a.help = true;
            continue;
        }
        if (arg == "--version") {
            a.version = true;
            continue;
        }
        if (arg == "--no-persist") {
            a.persist = false;
            continue;
        }
        std::string value;
        bool has_value = false;
        if (const auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
            value = arg.substr(eq + 1);
            arg.resize(eq);
            has_value = true;
        }
        auto take = [&]() -> std::string {
            if (has_value) return value;
            if (i + 1 >= argv.size()) throw UsageError(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "--user" || arg == "-u") {
            a.user = take();
        } else if (arg == "--password" || arg == "-p") {
            a.password = take();
        } else if (arg == "--display-name") {
            a.display_name = take();
        } else if (arg == "--to") {
            a.to = take();
        } else if (arg == "--with") {
            a.with = take();
        } else if (arg == "--message") {
            a.message = take();
        } else if (arg == "--rest") {
            a.rest_url = take();
        } else if (arg == "--connector") {
            a.connectors.push_back(take());
        } else if (arg == "--home") {
            a.home = take();
        } else if (arg == "--limit") {
            a.limit = parse_count(arg, take(), 1, 100000);
        } else if (arg == "--timeout") {
            a.timeout_s = parse_count(arg, take(), 1, 3600);
        } else {
            throw UsageError("unknown option " + arg);
        }
    }
    if (!positional.empty()) {
        a.command = positional.front();
        a.words.assign(positional.begin() + 1, positional.end());
    } else {
        a.command = "chat";
    }
    static const char* const kCommands[] = {"register", "login",   "logout",  "chat",
                                            "send",     "history", "friends", "chats"};
    bool known = false;
    for (const char* c : kCommands)
        known = known || a.command == c;
    if (!known && !a.help && !a.version) throw UsageError("unknown command '" + a.command + "'");
    if (a.help || a.version) return a;

    if (a.user.empty()) throw UsageError("--user NAME is required");
    a.user = checked_username(a.user, "--user");
    if ((a.command == "register" || a.command == "login") && a.password.empty()) {
        throw UsageError(a.command + " needs --password PASSWORD");
    }
    if (a.command == "send") {
        if (a.to.empty()) throw UsageError("send needs --to NAME");
        a.to = checked_username(a.to, "--to");
        if (a.words.empty()) throw UsageError("send needs the text of the message");
    }
    if (a.command == "history") {
        if (a.with.empty() && a.words.size() == 1) a.with = a.words.front();
        if (a.with.empty()) throw UsageError("history needs --with NAME");
        a.with = checked_username(a.with, "--with");
    }
    const bool takes_words = a.command == "send" || a.command == "friends" ||
                             (a.command == "history" && a.words.size() == 1);
    if (!takes_words && !a.words.empty()) {
        throw UsageError("unexpected '" + a.words.front() + "' after " + a.command);
    }
    return a;
}

std::string checked_username(const std::string& name, const char* what) {
    std::string out;
    for (const char c : name)
        out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    bool ok =
        out.size() >= 3 && out.size() <= 32 && std::isalnum(static_cast<unsigned char>(out[0]));
    for (const char c : out) {
        ok = ok && (std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'z') ||
                    c == '.' || c == '_' || c == '-');
    }
    if (!ok) {
        throw UsageError(std::string(what) + ": '" + name +
                         "' is not a username (3-32 of a-z 0-9 . _ -, starting with a letter or "
                         "digit)");
    }
    return out;
}

const char* usage_text() {
    return R"(usage: im-cli [options] COMMAND ...

  im-cli register --user NAME --password PW [--display-name TEXT]
  im-cli login    --user NAME --password PW     keeps the session in a 0600 file
  im-cli --user NAME                            the interactive chat (type /help)
  im-cli --user NAME send --to PEER TEXT...     exits 0 once the message is SENT
  im-cli --user NAME history --with PEER [--limit N]
  im-cli --user NAME friends [list | add PEER [--message TEXT] | accept PEER |
                              decline PEER | requests]
  im-cli --user NAME chats                      conversations with unread counts
  im-cli --user NAME logout                     revokes the session, deletes its file

options:
  --rest URL          im-rest (default: $IM_REST_URL or http://127.0.0.1:8080; login stores it)
  --connector H:P     a connector to use (repeatable; default: the ones login was given)
  --home DIR          session files (default: $IM_CLI_HOME, else ~/.config/im-cli)
  --timeout SECONDS   send: how long to wait for SENT (default 30)
  --no-persist        keep unsent messages and cursors in memory only (default: in
                      <home>/<user>.chat/ and <user>.cmd/, so a crash loses no message and a
                      restart shows no history again)

exit codes: 0 done, 1 failed (the error is printed), 2 bad command line, 3 not logged in
)";
}

}  // namespace imcli
