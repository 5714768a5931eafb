#include "child_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace im::test {

ChildProcess::~ChildProcess() {
    if (pid_ > 0 && !status_) stop(SIGKILL, std::chrono::seconds(5));
}

void ChildProcess::start(const std::string& path, const std::vector<std::string>& args,
                         const std::map<std::string, std::string>& env,
                         const std::string& log_file) {
    std::map<std::string, std::string> merged;
    for (char** e = environ; *e != nullptr; ++e) {
        std::string kv(*e);
        const auto eq = kv.find('=');
        if (eq != std::string::npos) merged[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    for (const auto& [k, v] : env) {
        if (v == "\x01unset")
            merged.erase(k);
        else
            merged[k] = v;
    }
    std::vector<std::string> env_strings;
    for (const auto& [k, v] : merged)
        env_strings.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& s : env_strings)
        envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> argv_strings{path};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : argv_strings)
        argv.push_back(s.data());
    argv.push_back(nullptr);

    log_file_ = log_file;
    const int fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("cannot open log file " + log_file);
    status_.reset();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::setpgid(0, 0);
        ::execve(path.c_str(), argv.data(), envp.data());
        std::fprintf(stderr, "exec %s failed: %s\n", path.c_str(), std::strerror(errno));
        ::_exit(127);
    }
    ::close(fd);
}

bool ChildProcess::running() {
    if (pid_ <= 0 || status_) return false;
    int st = 0;
    const pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
        status_ = st;
        return false;
    }
    return true;
}

std::optional<int> ChildProcess::stop(int sig, std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return std::nullopt;
    if (status_) return status_;
    ::kill(pid_, sig);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (!running()) return status_;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    status_ = st;
    return status_;
}

void ChildProcess::kill9() {
    stop(SIGKILL, std::chrono::seconds(5));
}

std::string ChildProcess::log_contents() const {
    std::ifstream in(log_file_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// A port outside the kernel's ephemeral range (32768-60999 here): a port taken from that range and
// released could be handed meanwhile to another process's outgoing connection or port-0 listener
// (a test's mock server) before our child binds it, and the test would talk to the wrong server.
// Random in [20000, 32000), checked free by binding it; the scripts pick server ports the same way.
// A port is handed out once per test process: two picks before either child binds (a connector's
// port and its admin port) could otherwise return the same free port (a CI failure, 1 in ~12000).
std::uint16_t pick_free_port() {
    static std::mutex mu;
    static std::set<std::uint16_t> handed_out;
    static std::mt19937 rng(
        static_cast<std::uint32_t>(::getpid()) ^
        static_cast<std::uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
    std::lock_guard lock(mu);
    for (int attempt = 0; attempt < 1000; ++attempt) {
        const auto port = static_cast<std::uint16_t>(20000 + rng() % 12000);
        if (handed_out.contains(port)) continue;
        const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(port);
        const bool free = ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        ::close(s);
        if (free) {
            handed_out.insert(port);
            return port;
        }
    }
    throw std::runtime_error("no free port in 20000-31999");
}

bool wait_for_port(std::uint16_t port, std::chrono::milliseconds timeout) {
    return wait_for_port("127.0.0.1", port, timeout);
}

bool wait_for_port(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout) {
    in_addr addr{};
    if (::inet_pton(AF_INET, host.c_str(), &addr) != 1) throw std::invalid_argument("not an IPv4 address: " + host);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr = addr;
        a.sin_port = htons(port);
        const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        ::close(s);
        if (ok) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
}

}  // namespace im::test
