#include "chat.hpp"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "cli_common.hpp"
#include "console.hpp"
#include "groups.hpp"
#include "rest_api.hpp"
#include "social.hpp"

namespace imcli {
namespace {

using Clock = std::chrono::steady_clock;
using imclient::ReceiptKind;
using imclient::State;

std::atomic<bool> g_interrupted{false};
void on_interrupt(int) {
    g_interrupted = true;
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::vector<std::string> split_words(const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> out;
    for (std::string w; in >> w;)
        out.push_back(w);
    return out;
}

const char* kHelp =
    "commands:\n"
    "  /to NAME            talk to NAME: every plain line is then a message to NAME\n"
    "  /to #GROUP          talk in a group (#ID or #NAME): plain lines go to its members\n"
    "  /group create NAME USER...  create a group with friends (names or ids)\n"
    "  /groups             your groups            /members  the current group's members\n"
    "  /readby N           who of the current group received and read message #N\n"
    "  /friends            your friends, online or not\n"
    "  /add NAME [TEXT]    send NAME a friend request\n"
    "  /accept [NAME]      accept NAME's friend request (no NAME: every pending one)\n"
    "  /decline NAME       decline NAME's friend request\n"
    "  /requests           pending friend requests, both ways\n"
    "  /chats              your conversations with unread counts\n"
    "  /history [NAME] [N] the last N (20) messages with NAME (default: the current peer)\n"
    "  /read               mark what NAME (or the group) sent you as read\n"
    "  /typing             tell NAME (the group) you are typing (a terminal does it as you type)\n"
    "  /file NAME PATH     send a file            /get FILE_ID [PATH]  download a file\n"
    "  /quit               leave (so does Ctrl-D or the end of piped input)";

// What the sender sees of a message of ours: sent, then delivered, then read.
enum class Receipt : int { sent = 0, delivered = 1, read = 2 };
const char* receipt_name(Receipt r) {
    return r == Receipt::read ? "read" : r == Receipt::delivered ? "delivered" : "sent";
}

class ChatSession {
  public:
    ChatSession(const Args& args, SessionFile file, SessionData data)
        : file_(std::move(file)),
          data_(std::move(data)),
          rest_url_(rest_url_of(args, data_.rest_url)),
          persist_(args.persist),
          client_(client_options(args, file_, data_, "chat")) {
        names_[data_.user_id] = data_.username;
        client_.on_message([this](const imclient::Message& m) { on_message(m); });
        client_.on_sent([this](const imclient::SendAck& a) { on_sent(a); });
        client_.on_send_failed([this](const imclient::SendFailure& f) { on_send_failed(f); });
        client_.on_receipt([this](std::uint64_t conv, std::uint64_t user, ReceiptKind kind,
                                  std::uint64_t up_to) { on_receipt(conv, user, kind, up_to); });
        client_.on_state([this](State s, const std::string& detail) { on_state(s, detail); });
        client_.on_typing(
            [this](std::uint64_t conv, std::uint64_t user) { on_typing(conv, user); });
        client_.on_presence([this](std::uint64_t user, bool online) {
            say(name_of(user) + (online ? " is online" : " went offline"));
        });
        client_.on_member_receipt(
            [this](const imclient::MemberReceiptEvent& e) { on_member_receipt(e); });
    }

    ~ChatSession() { client_.close(); }

    int run();

  private:
    // ---- imclient callbacks (the client's thread: no blocking, print through the console)
    void on_message(const imclient::Message& m);
    void on_sent(const imclient::SendAck& a);
    void on_send_failed(const imclient::SendFailure& f);
    void on_receipt(std::uint64_t conv, std::uint64_t user, ReceiptKind kind, std::uint64_t up_to);
    void on_state(State s, const std::string& detail);
    void on_typing(std::uint64_t conv, std::uint64_t user);
    void on_member_receipt(const imclient::MemberReceiptEvent& e);

    // ---- the input thread (this one may wait: it is no imclient or Asio thread)
    void handle(const std::string& line);
    void command(const std::vector<std::string>& w, const std::string& line);
    void send_line(const std::string& text);
    void group_command(const std::vector<std::string>& w);
    void choose_group(const std::string& ref);  // /to #ID or #NAME
    void read_by(const std::string& seq_text);
    std::uint64_t resolve(const std::string& name);  // REST lookup, cached; throws RestError
    void resolve_wanted();                           // names of unknown senders seen meanwhile
    void send_file(const std::string& name, const std::string& path);
    void get_file(const std::string& id_text, const std::string& path);
    std::function<void(std::uint64_t, std::uint64_t)> progress_printer(const std::string& what);
    bool drain(std::chrono::seconds max);
    RestApi rest() { return RestApi(rest_url_, data_.chat_token); }

    void say(const std::string& text) { console_.print("[" + clock_of(now_ms()) + "] " + text); }
    std::string name_of(std::uint64_t id);  // any thread
    std::string group_label(std::uint64_t group);  // "#7 team", any thread
    // Where plain lines go: "bob" or "#7 team".
    std::string target_name() const { return group_ != 0 ? group_label_ : peer_name_; }

    SessionFile file_;
    SessionData data_;
    std::string rest_url_;
    bool persist_ = true;
    Console console_;  // before client_: the callbacks print through it until client_ is gone

    std::mutex mu_;  // everything below
    std::map<std::uint64_t, std::string> names_;
    std::set<std::uint64_t> wanted_names_;
    std::map<std::uint64_t, imclient::FileRef> files_seen_;  // file id -> ref, from messages shown
    struct Unacked {
        std::uint64_t peer = 0;
        std::string preview;
        std::uint64_t group = 0;  // a group message
    };
    std::map<std::string, Unacked> unacked_;  // client_msg_id -> (bounded by imclient's outbox)
    struct Tracked {
        std::uint64_t seq = 0;
        Receipt state = Receipt::sent;
    };
    static constexpr std::size_t kMaxTracked = 1000;        // per conversation, oldest dropped
    std::map<std::uint64_t, std::deque<Tracked>> tracked_;  // conv -> not yet read
    std::map<std::uint64_t, std::pair<std::uint64_t, std::uint64_t>>
        peer_marks_;                                        // delivered, read
    std::map<std::uint64_t, std::uint64_t> last_received_;  // conv -> highest seq from the peer
    std::map<std::uint64_t, Clock::time_point> typing_shown_;
    std::map<std::uint64_t, std::string> group_names_;  // group id -> name
    State state_ = State::idle;
    bool connected_once_ = false;
    std::atomic<int> quit_code_{-1};

    std::uint64_t peer_ = 0;  // input thread only
    std::string peer_name_;
    std::uint64_t group_ = 0;  // instead of peer_: talking in this group
    std::string group_label_;
    Clock::time_point last_typing_sent_{};

    // Last: destroyed first, so no callback can run once the state above is gone.
    imclient::Client client_;
};

std::string ChatSession::name_of(std::uint64_t id) {
    std::lock_guard lock(mu_);
    if (const auto it = names_.find(id); it != names_.end()) return it->second;
    if (wanted_names_.size() < 1000) wanted_names_.insert(id);
    return "user#" + std::to_string(id);
}

std::string ChatSession::group_label(std::uint64_t group) {
    std::lock_guard lock(mu_);
    const auto it = group_names_.find(group);
    return "#" + std::to_string(group) + (it == group_names_.end() ? "" : " " + it->second);
}

void ChatSession::on_message(const imclient::Message& m) {
    const bool in_group = imclient::is_group_conversation(m.conversation_id);
    const auto when = "[" + clock_of(m.created_ms) + "] ";
    if (in_group) {
        std::lock_guard lock(mu_);
        auto& last = last_received_[m.conversation_id];
        last = std::max(last, m.seq);
        typing_shown_.erase(m.sender_user_id);
    }
    if (m.type == imclient::MessageType::group_event) {
        if (m.group_event.kind == imclient::GroupEventKind::created ||
            m.group_event.kind == imclient::GroupEventKind::renamed) {
            std::lock_guard lock(mu_);
            if (group_names_.size() < 10000 || group_names_.count(m.conversation_id) != 0)
                group_names_[m.conversation_id] = m.group_event.name;
        }
        const auto text = describe_group_event(m.group_event, [this](std::uint64_t id) {
            return id == data_.user_id ? std::string("you") : name_of(id);
        });
        console_.print(when + "[" + group_label(m.conversation_id) + "] #" + std::to_string(m.seq) +
                       " * " + text);
        return;
    }
    if (m.type == imclient::MessageType::file) {
        std::lock_guard lock(mu_);
        if (files_seen_.size() < 10000) files_seen_[m.file.file_id] = m.file;
    }
    std::string body = m.type == imclient::MessageType::file
                           ? "[file " + m.file.name + ", " + std::to_string(m.file.size) +
                                 " bytes, id " + std::to_string(m.file.file_id) + "]"
                           : m.text;
    if (in_group) {
        const auto who =
            m.sender_user_id == data_.user_id ? std::string("you") : name_of(m.sender_user_id);
        console_.print(when + "[" + group_label(m.conversation_id) + "] " + who + " #" +
                       std::to_string(m.seq) + ": " + body);
        return;
    }
    if (m.sender_user_id == data_.user_id) {
        const auto peer = imclient::peer_of(m.conversation_id, data_.user_id);
        console_.print(when + "you -> " + name_of(peer) + " #" + std::to_string(m.seq) + ": " +
                       body);
        return;
    }
    {
        std::lock_guard lock(mu_);
        auto& last = last_received_[m.conversation_id];
        last = std::max(last, m.seq);
        typing_shown_.erase(m.sender_user_id);
    }
    console_.print(when + name_of(m.sender_user_id) + " #" + std::to_string(m.seq) + ": " + body);
}

void ChatSession::on_sent(const imclient::SendAck& a) {
    Unacked u;
    Receipt state = Receipt::sent;
    {
        std::lock_guard lock(mu_);
        if (auto it = unacked_.find(a.client_msg_id); it != unacked_.end()) {
            u = std::move(it->second);
            unacked_.erase(it);
        } else {
            u.peer = a.peer_user_id;
        }
        // A receipt can overtake our SENT (another connector, another link): apply what is known.
        if (auto it = peer_marks_.find(a.conversation_id); it != peer_marks_.end()) {
            if (a.seq <= it->second.second)
                state = Receipt::read;
            else if (a.seq <= it->second.first)
                state = Receipt::delivered;
        }
        if (state != Receipt::read) {
            auto& list = tracked_[a.conversation_id];
            list.push_back({a.seq, state});
            if (list.size() > kMaxTracked) list.pop_front();
        }
    }
    const auto to = a.group_id != 0 ? group_label(a.group_id) : name_of(u.peer);
    console_.print("[" + clock_of(a.created_ms) + "] you -> " + to + " #" + std::to_string(a.seq) +
                   ": " + u.preview + "  [" + receipt_name(state) + "]");
}

void ChatSession::on_send_failed(const imclient::SendFailure& f) {
    std::string preview;
    {
        std::lock_guard lock(mu_);
        if (auto it = unacked_.find(f.client_msg_id); it != unacked_.end()) {
            preview = it->second.preview;
            unacked_.erase(it);
        }
    }
    const auto to = f.group_id != 0 ? group_label(f.group_id) : name_of(f.peer_user_id);
    say("NOT sent to " + to + ": " + preview + "  (" + imclient::to_string(f.code) +
        (f.message.empty() ? "" : ": " + f.message) + ")");
}

void ChatSession::on_receipt(std::uint64_t conv, std::uint64_t user, ReceiptKind kind,
                             std::uint64_t up_to) {
    if (user == data_.user_id) return;  // my own devices' receipts of what the peer sent me
    if (imclient::is_group_conversation(conv)) return;  // on_member_receipt says it per member
    const Receipt to = kind == ReceiptKind::read ? Receipt::read : Receipt::delivered;
    std::vector<std::uint64_t> moved;
    {
        std::lock_guard lock(mu_);
        auto& marks = peer_marks_[conv];
        auto& mark = to == Receipt::read ? marks.second : marks.first;
        mark = std::max(mark, up_to);
        auto it = tracked_.find(conv);
        if (it == tracked_.end()) return;
        auto& list = it->second;
        for (auto& t : list) {
            if (t.seq <= up_to && t.state < to) {
                t.state = to;
                moved.push_back(t.seq);
            }
        }
        std::erase_if(list, [](const Tracked& t) { return t.state == Receipt::read; });
    }
    if (moved.empty()) return;
    const auto peer = name_of(imclient::peer_of(conv, data_.user_id));
    if (moved.size() <= 3) {
        for (auto seq : moved)
            say("#" + std::to_string(seq) + " -> " + peer + ": " + receipt_name(to));
    } else {
        say("#" + std::to_string(moved.front()) + "..#" + std::to_string(moved.back()) + " (" +
            std::to_string(moved.size()) + " messages) -> " + peer + ": " + receipt_name(to));
    }
}

void ChatSession::on_state(State s, const std::string& detail) {
    State before;
    bool first = false;
    {
        std::lock_guard lock(mu_);
        before = state_;
        state_ = s;
        if (s == State::connected) {
            first = !connected_once_;
            connected_once_ = true;
        }
    }
    switch (s) {
        case State::connected:
            say(std::string(first ? "connected" : "reconnected") + " to " + detail + " as " +
                data_.username);
            break;
        case State::reconnecting:
            if (before != State::reconnecting)
                say("connection lost (" + detail + "); reconnecting...");
            break;
        case State::kicked:
            say("kicked: the server closed this session for good (" + detail + ")");
            quit_code_ = 1;
            break;
        case State::auth_failed:
            say("the saved session was refused: run im-cli login --user " + data_.username +
                " --password ...");
            quit_code_ = 3;
            break;
        default:
            break;
    }
}

void ChatSession::on_typing(std::uint64_t conv, std::uint64_t user) {
    {
        std::lock_guard lock(mu_);
        auto& shown = typing_shown_[user];
        if (Clock::now() - shown < std::chrono::seconds(3)) return;
        shown = Clock::now();
    }
    say(name_of(user) + " is typing" +
        (imclient::is_group_conversation(conv) ? " in " + group_label(conv) : std::string()) +
        "...");
}

void ChatSession::on_member_receipt(const imclient::MemberReceiptEvent& e) {
    const auto& s = e.my_seqs;
    const std::string what = s.size() == 1 ? "#" + std::to_string(s.front())
                                           : "#" + std::to_string(s.front()) + "..#" +
                                                 std::to_string(s.back()) + " (" +
                                                 std::to_string(s.size()) + " messages)";
    say(what + " in " + group_label(e.conversation_id) + ": " +
        (e.kind == ReceiptKind::read ? "read" : "delivered") + " by " + name_of(e.user_id));
}

std::uint64_t ChatSession::resolve(const std::string& name) {
    {
        std::lock_guard lock(mu_);
        for (const auto& [id, n] : names_) {
            if (n == name) return id;
        }
    }
    const auto id = rest().user_id_of(name);
    std::lock_guard lock(mu_);
    names_[id] = name;
    return id;
}

void ChatSession::resolve_wanted() {
    std::set<std::uint64_t> want;
    {
        std::lock_guard lock(mu_);
        want.swap(wanted_names_);
    }
    for (const auto id : want) {
        auto name = rest().username_of(id);
        if (name.rfind("user#", 0) == 0) continue;
        std::lock_guard lock(mu_);
        names_[id] = std::move(name);
    }
}

// Prints "<what> 40%" at most once per 10 % (progress runs on the client's internal thread).
std::function<void(std::uint64_t, std::uint64_t)> ChatSession::progress_printer(
    const std::string& what) {
    auto last = std::make_shared<std::uint64_t>(0);
    return [this, what, last](std::uint64_t done, std::uint64_t total) {
        if (total == 0) return;
        const std::uint64_t pct = done * 100 / total;
        if (pct / 10 == *last / 10 && pct != 100) return;
        if (pct == *last && pct == 100) return;
        *last = pct;
        say(what + " " + std::to_string(pct) + "% (" + std::to_string(done) + " of " +
            std::to_string(total) + " bytes)");
    };
}

// /file NAME PATH: upload (POST /v1/files), then the FILE message; waits for the upload (the
// message itself is SENT later like a text line: its receipt states print as usual).
void ChatSession::send_file(const std::string& name, const std::string& path) {
    const auto peer = resolve(name);
    if (peer == data_.user_id) throw UsageError("that is you");
    try {
        auto sent = client_.send_file(peer, path, progress_printer("uploading " + path)).get();
        {
            std::lock_guard lock(mu_);
            unacked_[sent.client_msg_id] = {peer, "[file " + sent.file.name + "]"};
            files_seen_[sent.file.file_id] = sent.file;
        }
        say("uploaded " + sent.file.name + " (" + std::to_string(sent.file.size) + " bytes, id " +
            std::to_string(sent.file.file_id) + ", sha256 " + sent.file.sha256.substr(0, 12) +
            "...); sending to " + name);
    } catch (const imclient::Error& e) {
        throw CommandFailed(std::string("not sent: ") + e.what());
    }
}

// /get FILE_ID [PATH]: download with sha256 verification, to PATH or to the file's own name (its
// last path component) in the current directory; never over an existing file.
void ChatSession::get_file(const std::string& id_text, const std::string& path_arg) {
    if (id_text.empty() || id_text.size() > 19 ||
        !std::all_of(id_text.begin(), id_text.end(),
                     [](char ch) { return ch >= '0' && ch <= '9'; }))
        throw UsageError("usage: /get FILE_ID [PATH]");
    const std::uint64_t id = std::stoull(id_text);
    imclient::FileRef known;
    {
        std::lock_guard lock(mu_);
        if (auto it = files_seen_.find(id); it != files_seen_.end()) known = it->second;
    }
    std::string path = path_arg;
    if (path.empty()) {
        std::string base = known.name.substr(known.name.find_last_of("/\\") == std::string::npos
                                                 ? 0
                                                 : known.name.find_last_of("/\\") + 1);
        if (base.empty() || base == "." || base == ".." || base[0] == '.') base = "file-" + id_text;
        path = base;
    }
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) throw UsageError(path + " exists: /get FILE_ID PATH");
    try {
        auto ref =
            client_.download(id, path, progress_printer("downloading " + path), known.sha256).get();
        say("saved " + path + " (" + std::to_string(ref.size) + " bytes, sha256 verified)");
    } catch (const imclient::Error& e) {
        throw CommandFailed(std::string("download failed: ") + e.what());
    }
}

void ChatSession::send_line(const std::string& text) {
    if (peer_ == 0 && group_ == 0) {
        say("no recipient: /to NAME or /to #GROUP first (or /help)");
        return;
    }
    try {
        std::lock_guard lock(mu_);  // before on_sent can look for it
        const auto id =
            group_ != 0 ? client_.send_group_text(group_, text) : client_.send_text(peer_, text);
        unacked_[id] = {peer_, text.size() > 200 ? text.substr(0, 200) + "..." : text, group_};
    } catch (const imclient::Error& e) {
        say(std::string("not sent: ") + e.what());
    }
}

void ChatSession::handle(const std::string& raw) {
    std::string line = raw;
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t'))
        line.pop_back();
    if (line.empty()) return;
    if (line[0] != '/') {
        send_line(line);
        return;
    }
    const auto w = split_words(line);
    try {
        command(w, line);
    } catch (const RestError& e) {
        say(w[0] + ": " + e.what());
    } catch (const UsageError& e) {
        say(w[0] + ": " + e.what());
    } catch (const CommandFailed& e) {
        say(w[0] + ": " + e.what());
    }
}

void ChatSession::command(const std::vector<std::string>& w, const std::string& line) {
    const std::string& c = w[0];
    auto need = [&](std::size_t min, std::size_t max, const char* usage) {
        if (w.size() < min || w.size() > max) throw UsageError(std::string("usage: ") + usage);
    };
    auto print_all = [&](const std::vector<std::string>& lines) {
        for (const auto& l : lines)
            console_.print("  " + l);
    };
    if (c == "/help") {
        console_.print(kHelp);
    } else if (c == "/quit" || c == "/exit") {
        quit_code_ = 0;
    } else if (c == "/to") {
        need(2, 2, "/to NAME  or  /to #GROUP");
        if (w[1][0] == '#') {
            choose_group(w[1]);
            return;
        }
        const auto name = checked_username(w[1], "/to");
        const auto id = resolve(name);
        if (id == data_.user_id) throw UsageError("that is you");
        peer_ = id;
        peer_name_ = name;
        group_ = 0;
        console_.set_prompt(name + "> ");
        say("talking to " + name + " (plain lines are messages to " + name + ")");
    } else if (c == "/friends") {
        need(1, 1, "/friends");
        auto r = rest();
        print_all(friends_lines(r));
    } else if (c == "/add") {
        need(2, 100000, "/add NAME [MESSAGE]");
        const auto name = checked_username(w[1], "/add");
        // The message is the rest of the line after the name, as typed (spaces kept).
        const auto pos = line.find(w[1], line.find(c) + c.size()) + w[1].size();
        std::string msg = pos < line.size() ? line.substr(pos) : "";
        msg.erase(0, std::min(msg.find_first_not_of(" \t"), msg.size()));
        auto r = rest();
        say(add_friend(r, name, msg));
    } else if (c == "/accept") {
        need(1, 2, "/accept [NAME]");
        auto r = rest();
        if (w.size() == 2) {
            say(answer_request(r, checked_username(w[1], "/accept"), "accept"));
        } else {
            for (const auto& l : accept_all(r))
                say(l);
        }
    } else if (c == "/decline") {
        need(2, 2, "/decline NAME");
        auto r = rest();
        say(answer_request(r, checked_username(w[1], "/decline"), "decline"));
    } else if (c == "/requests") {
        need(1, 1, "/requests");
        auto r = rest();
        print_all(requests_lines(r));
    } else if (c == "/chats") {
        need(1, 1, "/chats");
        auto r = rest();
        print_all(chats_lines(r));
    } else if (c == "/history") {
        need(1, 3, "/history [NAME] [N]");
        std::string name = peer_name_;
        std::size_t keep = 20;
        for (std::size_t i = 1; i < w.size(); ++i) {
            if (std::all_of(w[i].begin(), w[i].end(),
                            [](char ch) { return ch >= '0' && ch <= '9'; })) {
                keep = std::clamp<std::size_t>(std::stoul(w[i].substr(0, 6)), 1, 10000);
            } else {
                name = checked_username(w[i], "/history");
            }
        }
        if (name.empty()) throw UsageError("/history NAME (or /to NAME first)");
        const auto id = resolve(name);
        auto r = rest();
        const auto lines = history_lines(r, data_.user_id, data_.username, id, name, keep);
        print_all(lines.empty() ? std::vector<std::string>{"no messages with " + name + " yet"}
                                : lines);
    } else if (c == "/group") {
        group_command(w);
    } else if (c == "/groups") {
        need(1, 1, "/groups");
        auto r = rest();
        const auto groups = list_groups(r);
        {
            std::lock_guard lock(mu_);
            for (const auto& g : groups)
                group_names_[g.id] = g.name;
        }
        print_all(groups_lines(groups));
    } else if (c == "/members") {
        need(1, 2, "/members [#GROUP]");
        const std::uint64_t g = w.size() == 2 ? parse_group_id(w[1]) : group_;
        if (g == 0) throw UsageError("/to #GROUP first, or /members #ID");
        auto r = rest();
        print_all(members_lines(r, g));
    } else if (c == "/readby") {
        need(2, 2, "/readby N");
        read_by(w[1]);
    } else if (c == "/read") {
        need(1, 1, "/read");
        if (peer_ == 0 && group_ == 0) throw UsageError("/to NAME (or #GROUP) first");
        const auto conv = group_ != 0 ? group_ : imclient::conversation_id(data_.user_id, peer_);
        std::uint64_t last = 0;
        {
            std::lock_guard lock(mu_);
            last = last_received_[conv];
        }
        if (last == 0) {
            say("nothing from " + target_name() + " to mark read");
        } else {
            client_.mark_read(conv, last);
            say("marked read up to #" + std::to_string(last) + " from " + target_name());
        }
    } else if (c == "/typing") {
        need(1, 1, "/typing");
        if (peer_ == 0 && group_ == 0) throw UsageError("/to NAME (or #GROUP) first");
        if (group_ != 0) {
            client_.group_typing(group_);
        } else {
            client_.typing(peer_);
        }
    } else if (c == "/file") {
        need(3, 3, "/file NAME PATH");
        send_file(checked_username(w[1], "/file"), w[2]);
    } else if (c == "/get") {
        need(2, 3, "/get FILE_ID [PATH]");
        get_file(w[1], w.size() == 3 ? w[2] : "");
    } else {
        throw UsageError("unknown command " + c + " (/help lists them)");
    }
}

// /group create NAME USER...: the users by name (looked up) or id; the creator is the owner.
void ChatSession::group_command(const std::vector<std::string>& w) {
    if (w.size() < 3 || w[1] != "create") throw UsageError("usage: /group create NAME USER...");
    const std::string& name = w[2];
    if (name.size() > 100) throw UsageError("a group name has at most 100 characters");
    std::vector<std::uint64_t> members;
    for (std::size_t i = 3; i < w.size() && members.size() < 1000; ++i) {
        const bool digits =
            std::all_of(w[i].begin(), w[i].end(), [](char ch) { return ch >= '0' && ch <= '9'; });
        const std::uint64_t id = digits && w[i].size() <= 10
                                     ? std::stoull(w[i])
                                     : resolve(checked_username(w[i], "/group create"));
        if (id != data_.user_id && std::find(members.begin(), members.end(), id) == members.end())
            members.push_back(id);
    }
    auto r = rest();
    const auto id = create_group(r, name, members);
    if (id == 0) throw CommandFailed("im-rest: malformed answer (no group_id)");
    {
        std::lock_guard lock(mu_);
        group_names_[id] = name;
    }
    say("created group " + group_label(id) + " with " + std::to_string(members.size()) +
        " member(s) besides you: /to #" + std::to_string(id) + " to talk in it");
}

void ChatSession::choose_group(const std::string& ref) {
    std::uint64_t id = parse_group_id(ref);
    auto r = rest();
    const auto groups = list_groups(r);
    {
        std::lock_guard lock(mu_);
        for (const auto& g : groups)
            group_names_[g.id] = g.name;
    }
    if (id == 0) {  // #NAME
        const std::string name = ref.substr(1);
        for (const auto& g : groups) {
            if (g.name == name) {
                if (id != 0) throw UsageError("several groups are named " + name + ": /to #ID");
                id = g.id;
            }
        }
        if (id == 0) throw UsageError("you have no group named " + name + " (/groups)");
    } else if (std::none_of(groups.begin(), groups.end(),
                            [&](const GroupSummary& g) { return g.id == id; })) {
        throw UsageError("you are not in group #" + std::to_string(id) + " (/groups)");
    }
    group_ = id;
    group_label_ = group_label(id);
    peer_ = 0;
    peer_name_.clear();
    console_.set_prompt(group_label_ + "> ");
    say("talking in " + group_label_ + " (plain lines go to its members)");
}

// /readby N: ReadBy for message N of the current group.
void ChatSession::read_by(const std::string& seq_text) {
    if (group_ == 0) throw UsageError("/to #GROUP first");
    const std::string digits =
        !seq_text.empty() && seq_text[0] == '#' ? seq_text.substr(1) : seq_text;
    if (digits.empty() || digits.size() > 19 ||
        !std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
        throw UsageError("usage: /readby N");
    const std::uint64_t seq = std::stoull(digits);
    imclient::ReadByResult r;
    try {
        auto fut = client_.read_by(group_, seq);
        if (fut.wait_for(std::chrono::seconds(15)) != std::future_status::ready)
            throw CommandFailed("no answer within 15 s");
        r = fut.get();
    } catch (const imclient::Error& e) {
        throw CommandFailed(e.what());
    }
    std::string read, delivered, pending;
    for (const auto& m : r.members) {
        auto& list = m.read_seq >= seq ? read : m.delivered_seq >= seq ? delivered : pending;
        list += (list.empty() ? "" : ", ") + name_of(m.user_id);
    }
    say("#" + std::to_string(seq) + " in " + group_label_ + ": read by " +
        std::to_string(r.read_count()) + " of " + std::to_string(r.members.size()) +
        (read.empty() ? "" : " (" + read + ")") +
        (delivered.empty() ? "" : "; delivered to " + delivered) +
        (pending.empty() ? "" : "; not yet delivered to " + pending));
}

// Waits until every message typed so far is SENT (or refused), at most `max`.
bool ChatSession::drain(std::chrono::seconds max) {
    const auto deadline = Clock::now() + max;
    while (client_.pending_sends() > 0 && Clock::now() < deadline && !g_interrupted) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return client_.pending_sends() == 0;
}

int ChatSession::run() {
    say("connecting as " + data_.username + "...");
    try {
        // Friends' names before connecting: the login sync may hand out messages at once.
        auto r = rest();
        const auto answer = r.get("/v1/friends");
        if (const JsonValue* list = answer.find("friends")) {
            std::lock_guard lock(mu_);
            for (const auto& f : list->items)
                names_[json_u64(f, "id")] = json_str(f, "username");
        }
    } catch (const RestError&) {  // names then come one by one
    }
    // What an earlier im-cli left unsent (also when it was killed): it goes after the login, and
    // its receipt states print like those of lines typed now.
    if (const auto& restored = client_.restored_sends(); !restored.empty()) {
        say(std::to_string(restored.size()) + " message(s) not SENT by an earlier im-cli of " +
            data_.username + ": they go once connected");
        std::size_t shown = 0;
        for (const auto& r : restored) {
            std::string preview =
                r.type == imclient::MessageType::file
                    ? "[file " + r.file.name + "]"
                    : (r.text.size() > 200 ? r.text.substr(0, 200) + "..." : r.text);
            if (++shown <= 5) {
                say("  to " +
                    (r.group_id != 0 ? group_label(r.group_id) : name_of(r.peer_user_id)) + ": " +
                    preview);
            }
            std::lock_guard lock(mu_);
            unacked_[r.client_msg_id] = {r.peer_user_id, std::move(preview), r.group_id};
        }
    }
    connect(client_, data_, "chat", std::chrono::seconds(30));
    console_.set_prompt("> ");
    say("type /help for the commands, /to NAME to choose whom to talk to");

    struct sigaction sa {};
    sa.sa_handler = on_interrupt;  // no SA_RESTART: poll() returns EINTR
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);

    auto on_edit = [this](const std::string& typed) {
        if ((peer_ == 0 && group_ == 0) || typed.empty() || typed[0] == '/') return;
        if (Clock::now() - last_typing_sent_ < std::chrono::seconds(3)) return;
        last_typing_sent_ = Clock::now();
        if (group_ != 0) {
            client_.group_typing(group_);
        } else {
            client_.typing(peer_);
        }
    };
    std::string line;
    while (quit_code_ < 0 && !g_interrupted) {
        const auto in = console_.read_line(line, std::chrono::milliseconds(200), on_edit);
        if (in == Console::Input::line) handle(line);
        if (in == Console::Input::eof) {
            // End of the input (Ctrl-D, or a script's pipe closed): what was typed still goes.
            if (!drain(std::chrono::seconds(30))) {
                say(std::to_string(client_.pending_sends()) +
                    " message(s) not SENT yet; leaving them");
                quit_code_ = 1;
            } else {
                quit_code_ = 0;
            }
        }
        resolve_wanted();
    }
    if (client_.pending_sends() > 0) {
        say(std::to_string(client_.pending_sends()) + " message(s) not SENT: " +
            (persist_ ? "they stay queued in " + file_.state_dir("chat") +
                            " and go with the next im-cli --user " + data_.username
                      : std::string("they are abandoned (--no-persist)")));
    }
    say("bye");
    console_.seal();  // a callback still on its way prints nothing after "bye"
    client_.close();
    return g_interrupted ? 130 : quit_code_.load();
}

}  // namespace

int run_chat(const Args& args) {
    SessionFile file(cli_home(args.home), args.user);
    SessionData data = file.load();
    std::unique_ptr<ChatSession> session;
    try {
        session = std::make_unique<ChatSession>(args, std::move(file), std::move(data));
    } catch (const imclient::Error& e) {
        if (e.code() != imclient::ErrorCode::state_locked) throw;
        // Two chats of one user would share (and corrupt) one state directory, and the second
        // login of the device would replace the first session anyway.
        throw CommandFailed("a chat of " + args.user + " is running already (" + e.what() +
                            "): use that one, or quit it first");
    }
    return session->run();
}

}  // namespace imcli
