#pragma once
// Runs a real binary (im-rest, im-connector, ...) as a child process for integration tests, with
// its own environment and its stdout+stderr in a log file; stops it with a signal and reports how
// it exited.

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace im::test {

class ChildProcess {
public:
    ChildProcess() = default;
    ~ChildProcess();
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    // env: added to (and overriding) the test process's own environment; a value of "\x01unset"
    // removes the variable.
    void start(const std::string& path, const std::vector<std::string>& args,
               const std::map<std::string, std::string>& env, const std::string& log_file);

    bool running();
    pid_t pid() const { return pid_; }
    // Sends `sig` and waits up to `timeout` for the exit; then SIGKILL. Returns the wait status.
    std::optional<int> stop(int sig, std::chrono::milliseconds timeout = std::chrono::seconds(10));
    void kill9();
    const std::string& log_file() const { return log_file_; }
    std::string log_contents() const;

private:
    pid_t pid_ = -1;
    std::string log_file_;
    std::optional<int> status_;
};

// A TCP port that was free a moment ago (bind to port 0, read it, close).
std::uint16_t pick_free_port();
// Waits until host:port accepts a TCP connection; false on timeout.
bool wait_for_port(std::uint16_t port, std::chrono::milliseconds timeout);
bool wait_for_port(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout);

}  // namespace im::test
