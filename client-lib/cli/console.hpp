#pragma once
// The terminal side of the interactive session. Output: print() queues a line (bounded) and a
// printer thread writes it, so imclient's callbacks never wait on a slow terminal or pipe.
// Input: read_line() polls stdin; on a terminal it edits the line itself (no echo, no canonical
// mode) so that incoming lines are printed above the line being typed and the first keystroke
// can be reported (typing indicator); on a pipe it splits what arrives into lines.

#include <termios.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace imcli {

class Console {
  public:
    static constexpr std::size_t kMaxQueuedLines = 4096;

    Console();
    ~Console();  // writes what is queued (up to 2 s), restores the terminal
    Console(const Console&) = delete;
    Console& operator=(const Console&) = delete;

    bool interactive() const noexcept { return tty_; }

    // Thread-safe; never blocks on the output. Ignored once seal() was called.
    void print(std::string line);
    // The last line was printed: what still comes (a late callback) is dropped.
    void seal();
    void set_prompt(std::string prompt);

    enum class Input { line, idle, eof };
    // Waits up to `wait` for a whole line. on_edit(buffer) is called on a terminal after every
    // keystroke that changed the line being typed.
    Input read_line(std::string& out, std::chrono::milliseconds wait,
                    const std::function<void(const std::string&)>& on_edit = {});

  private:
    void printer();
    void redraw_locked();  // prompt + the line being typed (terminal only)
    void write_all(const std::string& s);
    bool edit(char c, std::string& out, bool& done);
    std::optional<Input> consume_typed(std::string& out,
                                       const std::function<void(const std::string&)>& on_edit);

    bool tty_ = false;
    bool raw_ = false;
    termios saved_{};
    std::mutex mu_;
    std::condition_variable cv_;
    std::condition_variable drained_;
    std::deque<std::string> queue_;
    std::size_t dropped_ = 0;
    bool stop_ = false;
    bool sealed_ = false;
    std::string prompt_ = "> ";
    std::string typed_;    // terminal: the line being edited
    std::string pending_;  // bytes read but not yet a whole line
    int escape_ = 0;       // terminal: inside an escape sequence (skipped)
    bool eof_ = false;
    std::thread thread_;
};

}  // namespace imcli
