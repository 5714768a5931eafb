#include "console.hpp"

#include <poll.h>
#include <unistd.h>

#include <cerrno>

namespace imcli {

Console::Console() : tty_(::isatty(STDIN_FILENO) == 1 && ::isatty(STDOUT_FILENO) == 1) {
    if (tty_ && ::tcgetattr(STDIN_FILENO, &saved_) == 0) {
        termios raw = saved_;
        raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));  // ISIG stays: Ctrl-C is SIGINT
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        raw_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    }
    thread_ = std::thread([this] { printer(); });
}

Console::~Console() {
    {
        std::unique_lock lock(mu_);
        drained_.wait_for(lock, std::chrono::seconds(2), [this] { return queue_.empty(); });
        stop_ = true;
        if (raw_) write_all("\r\033[K");
    }
    cv_.notify_all();
    thread_.join();
    if (raw_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
}

void Console::write_all(const std::string& s) {
    std::size_t done = 0;
    while (done < s.size()) {
        const auto n = ::write(STDOUT_FILENO, s.data() + done, s.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // stdout closed: nothing to do about it
        done += static_cast<std::size_t>(n);
    }
}

void Console::print(std::string line) {
    {
        std::lock_guard lock(mu_);
        if (sealed_) return;
        if (queue_.size() >= kMaxQueuedLines) {
            ++dropped_;
            return;
        }
        queue_.push_back(std::move(line));
    }
    cv_.notify_one();
}

void Console::seal() {
    std::lock_guard lock(mu_);
    sealed_ = true;
}

void Console::set_prompt(std::string prompt) {
    std::lock_guard lock(mu_);
    prompt_ = std::move(prompt);
    if (raw_) redraw_locked();
}

void Console::redraw_locked() {
    write_all("\r\033[K" + prompt_ + typed_);
}

void Console::printer() {
    std::unique_lock lock(mu_);
    for (;;) {
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty() && stop_) return;
        std::string out;
        if (raw_) out = "\r\033[K";
        while (!queue_.empty()) {
            out += queue_.front();
            out += raw_ ? "\r\n" : "\n";
            queue_.pop_front();
        }
        if (dropped_ > 0) {
            out += "[" + std::to_string(dropped_) + " lines dropped: the output was too slow]\n";
            dropped_ = 0;
        }
        if (raw_) out += prompt_ + typed_;
        // Written under the lock: the line editor writes under it too, so nothing interleaves.
        // Only this thread and the reading thread wait here, never an imclient thread.
        write_all(out);
        drained_.notify_all();
    }
}

bool Console::edit(char c, std::string& out, bool& done) {
    const auto u = static_cast<unsigned char>(c);
    if (escape_ == 1) {  // ESC seen: '[' starts a CSI sequence, anything else ends it
        escape_ = c == '[' ? 2 : 0;
        return false;
    }
    if (escape_ == 2) {  // CSI: parameters until a final byte 0x40-0x7e
        if (u >= 0x40 && u <= 0x7e) escape_ = 0;
        return false;
    }
    switch (c) {
        case '\r':
        case '\n':
            out = typed_;
            typed_.clear();
            write_all("\r\033[K" + prompt_ + out + "\r\n");
            done = true;
            return true;
        case 0x7f:
        case '\b':
            while (!typed_.empty() && (static_cast<unsigned char>(typed_.back()) & 0xc0) == 0x80) {
                typed_.pop_back();  // UTF-8 continuation bytes of the last character
            }
            if (!typed_.empty()) typed_.pop_back();
            redraw_locked();
            return true;
        case 0x15:  // Ctrl-U
            typed_.clear();
            redraw_locked();
            return true;
        case 0x04:  // Ctrl-D on an empty line: end of input
            if (typed_.empty()) eof_ = true;
            return false;
        case 0x1b:
            escape_ = 1;
            return false;
        default:
            if (u < 0x20) return false;
            if (typed_.size() >= 64 * 1024) return false;
            typed_.push_back(c);
            write_all(std::string(1, c));
            return true;
    }
}

Console::Input Console::read_line(std::string& out, std::chrono::milliseconds wait,
                                  const std::function<void(const std::string&)>& on_edit) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    for (;;) {
        if (!raw_) {
            if (const auto nl = pending_.find('\n'); nl != std::string::npos) {
                out = pending_.substr(0, nl);
                if (!out.empty() && out.back() == '\r') out.pop_back();
                pending_.erase(0, nl + 1);
                return Input::line;
            }
            if (eof_) {
                if (pending_.empty()) return Input::eof;
                out.swap(pending_);
                pending_.clear();
                return Input::line;
            }
        } else {
            if (const auto r = consume_typed(out, on_edit); r) return *r;
            if (eof_) return Input::eof;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return Input::idle;
        pollfd p{STDIN_FILENO, POLLIN, 0};
        const int r = ::poll(&p, 1, static_cast<int>(left.count()));
        if (r < 0 && errno == EINTR) return Input::idle;  // a signal: let the caller look
        if (r <= 0) continue;
        char buf[4096];
        const auto n = ::read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) {
            eof_ = true;
            continue;
        }
        if (pending_.size() + static_cast<std::size_t>(n) > 1024 * 1024) {
            pending_.clear();  // a line longer than 1 MiB: not a chat line
        }
        pending_.append(buf, static_cast<std::size_t>(n));
    }
}

std::optional<Console::Input> Console::consume_typed(
    std::string& out, const std::function<void(const std::string&)>& on_edit) {
    if (pending_.empty()) return std::nullopt;
    bool done = false;
    bool changed = false;
    std::string typed_now;
    {
        std::lock_guard lock(mu_);
        std::size_t used = 0;
        while (used < pending_.size() && !done && !eof_) {
            changed = edit(pending_[used++], out, done) || changed;
        }
        pending_.erase(0, used);
        typed_now = typed_;
    }
    if (changed && !done && on_edit) on_edit(typed_now);
    if (done) return Input::line;
    return std::nullopt;
}

}  // namespace imcli
