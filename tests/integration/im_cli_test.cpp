// im-cli (client-lib/cli/) end to end, as a user or a script drives it: the real binary, through
// pipes, against a real private cluster (im-rest, im-transfer, two im-connectors, MariaDB, Redis).
// Register, log in, befriend with the one-shot commands; two interactive sessions chat both ways
// and see typing and every receipt state (sent, delivered, read); the connector of one of them is
// killed (-9) and restarted while they keep chatting; a scripted send and history; the exit codes
// of bad input.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cluster.hpp"

extern char** environ;

namespace im::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// fork + exec of im-cli with extra environment variables; stdin and stdout+stderr are pipes.
struct Spawned {
    pid_t pid = -1;
    int in = -1;   // the child's stdin (write end)
    int out = -1;  // the child's stdout+stderr (read end)
};

// tty: stdin, stdout and stderr are a pseudo-terminal (as in a terminal window), else pipes.
// cwd: the child's working directory (empty: the test's).
Spawned spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
              bool tty = false, const std::string& cwd = {}) {
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
        const std::string kv(*e);
        if (!env.contains(kv.substr(0, kv.find('=')))) env_strings.push_back(kv);
    }
    for (const auto& [k, v] : env)
        env_strings.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& s : env_strings)
        envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> argv_strings{bin_dir() + "/im-cli"};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& s : argv_strings)
        argv.push_back(s.data());
    argv.push_back(nullptr);

    Spawned s;
    if (tty) {
        const int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0)
            throw std::runtime_error("no pseudo-terminal");
        const std::string slave = ::ptsname(master);
        s.pid = ::fork();
        if (s.pid < 0) throw std::runtime_error("fork failed");
        if (s.pid == 0) {
            ::setsid();  // a new session: the terminal opened next becomes its controlling one
            const int fd = ::open(slave.c_str(), O_RDWR);
            if (fd < 0) ::_exit(126);
            ::dup2(fd, 0);
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) ::_exit(125);
            ::execve(argv[0], argv.data(), envp.data());
            ::_exit(127);
        }
        s.in = master;
        s.out = ::fcntl(master, F_DUPFD_CLOEXEC, 0);
        return s;
    }
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0)
        throw std::runtime_error("pipe failed");
    s.pid = ::fork();
    if (s.pid < 0) throw std::runtime_error("fork failed");
    if (s.pid == 0) {
        ::dup2(in[0], 0);
        ::dup2(out[1], 1);
        ::dup2(out[1], 2);
        if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) ::_exit(125);
        ::execve(argv[0], argv.data(), envp.data());
        std::fprintf(stderr, "exec %s failed: %s\n", argv[0], std::strerror(errno));
        ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    s.in = in[1];
    s.out = out[0];
    return s;
}

// waitpid with a deadline; SIGKILL after it. The exit code, or 128 + signal.
int wait_exit(pid_t pid, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        int st = 0;
        if (::waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (Clock::now() > deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &st, 0);
            return -1;
        }
        std::this_thread::sleep_for(10ms);
    }
}

struct Result {
    int code = -1;
    std::string output;
};

// A one-shot command: runs to the end (at most 60 s), stdin closed.
Result run(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
    auto s = spawn(args, env);
    ::close(s.in);
    Result r;
    char buf[4096];
    for (;;) {
        const auto n = ::read(s.out, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        r.output.append(buf, static_cast<std::size_t>(n));
    }
    ::close(s.out);
    r.code = wait_exit(s.pid, 60s);
    std::cout << "$ im-cli";
    for (const auto& a : args)
        std::cout << " " << a;
    std::cout << "   -> exit " << r.code << "\n" << r.output;
    return r;
}

// An interactive im-cli on pipes: write lines, wait for output lines.
class Session {
  public:
    Session(std::string name, const std::vector<std::string>& args,
            const std::map<std::string, std::string>& env, bool tty = false,
            const std::string& cwd = {})
        : name_(std::move(name)), s_(spawn(args, env, tty, cwd)) {
        reader_ = std::thread([this] { read_loop(); });
    }
    ~Session() {
        if (s_.in >= 0) ::close(s_.in);
        if (!exited_) {
            ::kill(s_.pid, SIGKILL);
            wait_exit(s_.pid, 5s);
        }
        reader_.join();
        ::close(s_.out);
    }

    void type(const std::string& line) {
        transcript_line("<< " + line);
        const std::string data = line + "\n";
        ASSERT_EQ(::write(s_.in, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    }
    // Raw keystrokes (a terminal session): no newline added.
    void keys(const std::string& bytes) {
        transcript_line("<< keys " + std::to_string(bytes.size()) + " bytes");
        ASSERT_EQ(::write(s_.in, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    }
    // The first output line from `from` on that contains `needle`; its index + 1 is the new `from`.
    std::optional<std::string> expect(const std::string& needle,
                                      std::chrono::milliseconds timeout = 20s) {
        std::unique_lock lock(mu_);
        const auto deadline = Clock::now() + timeout;
        for (;;) {
            for (; seen_ < lines_.size(); ++seen_) {
                if (lines_[seen_].find(needle) != std::string::npos) return lines_[seen_++];
            }
            if (closed_ || cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
                for (; seen_ < lines_.size(); ++seen_) {
                    if (lines_[seen_].find(needle) != std::string::npos) return lines_[seen_++];
                }
                return std::nullopt;
            }
        }
    }
    // Waits until the output after the last newline (a prompt and what is being typed on a
    // terminal) contains needle.
    bool expect_unfinished(const std::string& needle, std::chrono::milliseconds timeout = 20s) {
        std::unique_lock lock(mu_);
        return cv_.wait_for(lock, timeout, [&] {
            return partial_.find(needle) != std::string::npos || closed_;
        }) && partial_.find(needle) != std::string::npos;
    }
    // Whether any line (seen or not) contains needle.
    bool saw(const std::string& needle) {
        std::lock_guard lock(mu_);
        for (const auto& l : lines_) {
            if (l.find(needle) != std::string::npos) return true;
        }
        return false;
    }
    int close_and_wait(std::chrono::milliseconds timeout) {
        ::close(s_.in);
        s_.in = -1;
        const int code = wait_exit(s_.pid, timeout);
        exited_ = true;
        return code;
    }
    int wait(std::chrono::milliseconds timeout) {
        const int code = wait_exit(s_.pid, timeout);
        exited_ = true;
        return code;
    }
    // A crash: SIGKILL, no chance to clean up.
    int kill9() {
        ::kill(s_.pid, SIGKILL);
        const int code = wait_exit(s_.pid, 5s);
        exited_ = true;
        return code;
    }
    int quit(std::chrono::milliseconds timeout) {
        type("/quit");
        const int code = wait_exit(s_.pid, timeout);
        exited_ = true;
        return code;
    }
    std::string transcript() {
        std::lock_guard lock(mu_);
        return transcript_;
    }

  private:
    void transcript_line(const std::string& l) {
        std::lock_guard lock(mu_);
        transcript_ += l + "\n";
    }
    void read_loop() {
        char buf[4096];
        for (;;) {
            const auto n = ::read(s_.out, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            std::lock_guard lock(mu_);
            partial_.append(buf, static_cast<std::size_t>(n));
            for (auto nl = partial_.find('\n'); nl != std::string::npos; nl = partial_.find('\n')) {
                lines_.push_back(partial_.substr(0, nl));
                transcript_ += ">> " + lines_.back() + "\n";
                partial_.erase(0, nl + 1);
            }
            cv_.notify_all();
        }
        std::lock_guard lock(mu_);
        closed_ = true;
        cv_.notify_all();
    }

    std::string name_;
    Spawned s_;
    std::thread reader_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<std::string> lines_;
    std::string partial_;  // output after the last newline
    std::size_t seen_ = 0;
    std::string transcript_;
    bool closed_ = false;
    bool exited_ = false;
};

class ImCli : public ::testing::Test {
  protected:
    void SetUp() override {
        home_ = TestEnv::get().run_dir + "/im-cli-" + unique_suffix();
        std::filesystem::create_directories(home_);
        cluster_ = std::make_unique<Cluster>(ClusterOptions{2, {}, {}, {}, "im-cli"});
        env_ = {{"IM_CLI_HOME", home_},
                {"IM_REST_URL", "http://127.0.0.1:" + std::to_string(cluster_->rest().port())}};
    }
    void TearDown() override {
        cluster_.reset();
        std::error_code ec;
        std::filesystem::remove_all(home_, ec);
    }
    Result cli(const std::vector<std::string>& args) { return run(args, env_); }

    // The connector index whose client port is in a "connected to 127.0.0.1:PORT" line.
    int connector_of(const std::string& line) {
        for (int i = 0; i < 2; ++i) {
            if (line.find(":" + std::to_string(cluster_->connector_port(i)) + " ") !=
                std::string::npos)
                return i;
        }
        return -1;
    }

    std::string home_;
    std::unique_ptr<Cluster> cluster_;
    std::map<std::string, std::string> env_;
};

TEST_F(ImCli, BadInputGivesClearErrorsAndExitCodes) {
    auto r = cli({"send", "--to", "bob", "hi"});
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.output.find("--user NAME is required"), std::string::npos) << r.output;
    r = cli({"--user", "alice", "frobnicate"});
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.output.find("unknown command 'frobnicate'"), std::string::npos) << r.output;
    r = cli({"--user", "../etc", "friends"});
    EXPECT_EQ(r.code, 2) << "a username is also a file name: it must be checked";
    r = cli({"--user", "alice", "send", "--to", "bob"});
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.output.find("needs the text"), std::string::npos) << r.output;
    r = cli({"--user", "nobody", "friends"});
    EXPECT_EQ(r.code, 3);
    EXPECT_NE(r.output.find("not logged in as nobody"), std::string::npos) << r.output;

    ASSERT_EQ(cli({"register", "--user", "alice", "--password", "alice-secret"}).code, 0);
    r = cli({"register", "--user", "alice", "--password", "alice-secret"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.output.find("username_taken"), std::string::npos) << r.output;
    r = cli({"login", "--user", "alice", "--password", "wrong-password"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.output.find("401"), std::string::npos) << r.output;
    ASSERT_EQ(cli({"login", "--user", "alice", "--password", "alice-secret"}).code, 0);
    r = cli({"--user", "alice", "send", "--to", "nosuchuser", "hi"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.output.find("no user named nosuchuser"), std::string::npos) << r.output;
    r = cli({"--user", "alice", "friends", "accept", "bob"});
    EXPECT_EQ(r.code, 1);

    // A revoked session: the next command says so and exits 3.
    const std::string saved = home_ + "/alice.session.bak";
    std::filesystem::copy_file(home_ + "/alice.session", saved);
    ASSERT_EQ(cli({"--user", "alice", "logout"}).code, 0);
    EXPECT_FALSE(std::filesystem::exists(home_ + "/alice.session"));
    std::filesystem::rename(saved, home_ + "/alice.session");
    r = cli({"--user", "alice", "send", "--to", "alice", "hi"});
    EXPECT_EQ(r.code, 3) << r.output;

    // A session file others can read is refused (it holds tokens).
    ::chmod((home_ + "/alice.session").c_str(), 0644);
    r = cli({"--user", "alice", "friends"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.output.find("readable by others"), std::string::npos) << r.output;
}

TEST_F(ImCli, TwoUsersChatBothWaysWithReceiptsAcrossAConnectorRestart) {
    for (const std::string u : {"alice", "bob"}) {
        auto r = cli({"register", "--user", u, "--password", u + "-secret"});
        ASSERT_EQ(r.code, 0) << r.output;
        EXPECT_NE(r.output.find("registered " + u), std::string::npos);
        r = cli({"login", "--user", u, "--password", u + "-secret"});
        ASSERT_EQ(r.code, 0) << r.output;
        struct stat st {};
        ASSERT_EQ(::stat((home_ + "/" + u + ".session").c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0600u) << "the session file holds tokens";
    }
    auto r = cli({"--user", "alice", "friends", "add", "bob", "--message", "hi, it's alice"});
    ASSERT_EQ(r.code, 0) << r.output;
    r = cli({"--user", "bob", "friends", "requests"});
    EXPECT_NE(r.output.find("from alice: hi, it's alice"), std::string::npos) << r.output;
    r = cli({"--user", "bob", "friends", "accept", "alice"});
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("you and alice are friends now"), std::string::npos);
    r = cli({"--user", "alice", "friends"});
    EXPECT_NE(r.output.find("bob"), std::string::npos) << r.output;

    Session a("alice", {"--user", "alice"}, env_);
    Session b("bob", {"--user", "bob"}, env_);
    const auto a_conn = a.expect("connected to");
    ASSERT_TRUE(a_conn) << a.transcript();
    ASSERT_TRUE(b.expect("connected to")) << b.transcript();

    // alice -> bob: sent, then delivered (bob's client acknowledges), then read (/read).
    a.type("/to bob");
    ASSERT_TRUE(a.expect("talking to bob")) << a.transcript();
    a.type("hello bob");
    EXPECT_TRUE(a.expect("you -> bob #1: hello bob  [sent]")) << a.transcript();
    EXPECT_TRUE(b.expect("alice #1: hello bob")) << b.transcript();
    EXPECT_TRUE(a.expect("#1 -> bob: delivered")) << a.transcript();

    // bob -> alice, with a typing indicator first.
    b.type("/to alice");
    ASSERT_TRUE(b.expect("talking to alice")) << b.transcript();
    b.type("/typing");
    EXPECT_TRUE(a.expect("bob is typing...")) << a.transcript();
    b.type("hi alice");
    EXPECT_TRUE(a.expect("bob #2: hi alice")) << a.transcript();
    EXPECT_TRUE(b.expect("#2 -> alice: delivered")) << b.transcript();
    b.type("/read");
    EXPECT_TRUE(b.expect("marked read up to #1")) << b.transcript();
    EXPECT_TRUE(a.expect("#1 -> bob: read")) << a.transcript();

    b.type("/chats");
    const auto chats = b.expect("unread  last #2");
    ASSERT_TRUE(chats) << b.transcript();
    EXPECT_NE(chats->find("alice  "), std::string::npos) << *chats;
    a.type("/history");
    EXPECT_TRUE(a.expect("#1 alice: hello bob")) << a.transcript();
    EXPECT_TRUE(a.expect("#2 bob: hi alice")) << a.transcript();
    a.type("/friends");
    EXPECT_TRUE(a.expect("bob (online)")) << a.transcript();
    a.type("/nonsense");
    EXPECT_TRUE(a.expect("unknown command /nonsense")) << a.transcript();
    a.type("/file bob");
    EXPECT_TRUE(a.expect("usage: /file NAME PATH")) << a.transcript();

    // kill -9 of alice's connector: she is told, reconnects to the other one by herself, and the
    // chat goes on both ways; then the connector comes back.
    const int dead = connector_of(*a_conn);
    ASSERT_GE(dead, 0) << *a_conn;
    cluster_->stop_connector(dead, SIGKILL);
    EXPECT_TRUE(a.expect("connection lost")) << a.transcript();
    EXPECT_TRUE(a.expect("reconnected to")) << a.transcript();
    a.type("still there?");
    EXPECT_TRUE(a.expect("you -> bob #3: still there?")) << a.transcript();
    EXPECT_TRUE(b.expect("alice #3: still there?")) << b.transcript();
    EXPECT_TRUE(a.expect("#3 -> bob: delivered")) << a.transcript();
    cluster_->start_connector(dead);
    ASSERT_TRUE(cluster_->wait_connector_ready(dead));
    b.type("yes");
    EXPECT_TRUE(a.expect("bob #4: yes")) << a.transcript();
    EXPECT_TRUE(b.expect("#4 -> alice: delivered")) << b.transcript();

    // A script sends as alice while her chat runs (another device: nothing is kicked).
    r = cli({"--user", "alice", "send", "--to", "bob", "from a script"});
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("sent to bob (#5)"), std::string::npos) << r.output;
    EXPECT_TRUE(b.expect("alice #5: from a script")) << b.transcript();
    EXPECT_TRUE(a.expect("you -> bob #5: from a script")) << a.transcript();  // her other device

    r = cli({"--user", "bob", "history", "--with", "alice"});
    EXPECT_EQ(r.code, 0);
    const char* expected[] = {"#1 alice: hello bob", "#2 bob: hi alice", "#3 alice: still there?",
                              "#4 bob: yes", "#5 alice: from a script"};
    std::size_t pos = 0;
    for (const char* e : expected) {
        pos = r.output.find(e, pos);
        EXPECT_NE(pos, std::string::npos) << "missing or out of order: " << e << "\n" << r.output;
        if (pos == std::string::npos) break;
    }
    r = cli({"--user", "bob", "history", "--with", "alice", "--limit", "2"});
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 2) << r.output;

    // Piped input ends: what was typed is still SENT before the exit.
    b.type("bye for now");
    EXPECT_EQ(b.close_and_wait(30s), 0) << b.transcript();
    EXPECT_TRUE(a.expect("bob #6: bye for now")) << a.transcript();
    EXPECT_EQ(a.quit(10s), 0) << a.transcript();
    EXPECT_FALSE(a.saw("kicked")) << a.transcript();  // the script is another device: no kick

    std::cout << "---- alice's terminal ----\n"
              << a.transcript() << "---- bob's terminal ----\n"
              << b.transcript();
}

// On a terminal (a pseudo-terminal here, as in a terminal window) im-cli edits the line itself:
// the first keystroke of a message sends the typing indicator, Backspace edits, Enter sends, an
// incoming message is printed above the line being typed, which is then drawn again, and Ctrl-D
// on an empty line leaves.
TEST_F(ImCli, OnATerminalTypingGoesAsYouTypeAndTheLineIsEditedInPlace) {
    for (const std::string u : {"alice", "bob"}) {
        ASSERT_EQ(cli({"register", "--user", u, "--password", u + "-secret"}).code, 0);
        ASSERT_EQ(cli({"login", "--user", u, "--password", u + "-secret"}).code, 0);
    }
    ASSERT_EQ(cli({"--user", "alice", "friends", "add", "bob"}).code, 0);
    ASSERT_EQ(cli({"--user", "bob", "friends", "accept", "alice"}).code, 0);

    Session a("alice", {"--user", "alice"}, env_, /*tty=*/true);
    Session b("bob", {"--user", "bob"}, env_);
    ASSERT_TRUE(a.expect("connected to")) << a.transcript();
    ASSERT_TRUE(b.expect("connected to")) << b.transcript();
    a.keys("/to bob\r");
    ASSERT_TRUE(a.expect("talking to bob")) << a.transcript();
    b.type("/to alice");
    ASSERT_TRUE(b.expect("talking to alice")) << b.transcript();

    a.keys("hel");  // no Enter yet: bob sees that alice is typing
    EXPECT_TRUE(b.expect("alice is typing...")) << b.transcript();
    b.type("go on");  // arrives while alice's line is half typed
    const auto shown = a.expect("bob #1: go on");
    ASSERT_TRUE(shown) << a.transcript();
    // The half-typed line is drawn again after the incoming one (prompt + what was typed).
    EXPECT_TRUE(a.expect_unfinished("bob> hel")) << a.transcript();
    a.keys("\x7f\x7fi there\r");  // two Backspaces: "h" + "i there"
    EXPECT_TRUE(b.expect("alice #2: hi there")) << b.transcript();
    EXPECT_TRUE(a.expect("you -> bob #2: hi there  [sent]")) << a.transcript();
    a.keys("\x04");  // Ctrl-D on an empty line
    EXPECT_EQ(a.wait(10s), 0) << a.transcript();
    EXPECT_EQ(b.quit(10s), 0) << b.transcript();
}

}  // namespace
}  // namespace im::test

namespace im::test {
namespace {

std::string read_all(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// /file uploads and sends a FILE message, the peer sees it and /get downloads it (sha256 checked by
// imclient) to the file's own name; a second /get refuses to overwrite; a third user cannot get it.
TEST_F(ImCli, FileSentWithSlashFileIsDownloadedWithSlashGet) {
    for (const std::string u : {"alice", "bob", "carol"}) {
        ASSERT_EQ(cli({"register", "--user", u, "--password", u + "-secret"}).code, 0);
        ASSERT_EQ(cli({"login", "--user", u, "--password", u + "-secret"}).code, 0);
    }
    ASSERT_EQ(cli({"--user", "alice", "friends", "add", "bob"}).code, 0);
    ASSERT_EQ(cli({"--user", "bob", "friends", "accept", "alice"}).code, 0);

    const std::string src = home_ + "/report.bin";
    std::string content;
    for (std::uint32_t i = 0; i < 300000; ++i)
        content.push_back(static_cast<char>((i * 7919u) % 251u));
    {
        std::ofstream f(src, std::ios::binary);
        f << content;
    }
    const std::string bob_dir = home_ + "/bob-downloads";
    std::filesystem::create_directories(bob_dir);

    Session a("alice", {"--user", "alice"}, env_);
    ASSERT_TRUE(a.expect("connected to")) << a.transcript();
    a.type("/file bob " + src);
    ASSERT_TRUE(a.expect("uploaded report.bin (300000 bytes, id ")) << a.transcript();
    EXPECT_TRUE(a.expect("[sent]")) << a.transcript();
    a.type("/file bob " + home_ + "/missing.bin");
    EXPECT_TRUE(a.expect("not sent")) << a.transcript();

    // bob starts in his download directory (im-cli /get writes relative paths there).
    Session b("bob", {"--user", "bob"}, env_, false, bob_dir);
    ASSERT_TRUE(b.expect("connected to")) << b.transcript();
    const auto line = b.expect("[file report.bin, 300000 bytes, id ");
    ASSERT_TRUE(line) << b.transcript();
    const auto id_at = line->find(", id ") + 5;
    const std::string id = line->substr(id_at, line->find(']', id_at) - id_at);
    b.type("/get " + id);
    ASSERT_TRUE(b.expect("saved report.bin (300000 bytes, sha256 verified)")) << b.transcript();
    EXPECT_EQ(read_all(bob_dir + "/report.bin"), content);
    b.type("/get " + id);
    EXPECT_TRUE(b.expect("report.bin exists")) << b.transcript();
    b.type("/get x1");
    EXPECT_TRUE(b.expect("usage: /get FILE_ID [PATH]")) << b.transcript();

    Session c("carol", {"--user", "carol"}, env_, false, bob_dir);
    ASSERT_TRUE(c.expect("connected to")) << c.transcript();
    c.type("/get " + id + " " + home_ + "/carol.bin");
    EXPECT_TRUE(c.expect("download failed")) << c.transcript();
    EXPECT_FALSE(std::filesystem::exists(home_ + "/carol.bin"));
    EXPECT_EQ(a.quit(10s), 0);
    EXPECT_EQ(b.quit(10s), 0);
    EXPECT_EQ(c.quit(10s), 0);
}

// Groups (issue 15) in the interactive client: /group create, /to #ID, a message both ways, the
// members list and who has read a message.
TEST_F(ImCli, AGroupIsCreatedChattedInAndItsReadersListed) {
    for (const std::string u : {"alice", "bob", "carol"}) {
        ASSERT_EQ(cli({"register", "--user", u, "--password", u + "-secret"}).code, 0);
        ASSERT_EQ(cli({"login", "--user", u, "--password", u + "-secret"}).code, 0);
    }
    for (const std::string u : {"bob", "carol"}) {
        ASSERT_EQ(cli({"--user", "alice", "friends", "add", u}).code, 0);
        ASSERT_EQ(cli({"--user", u, "friends", "accept", "alice"}).code, 0);
    }
    Session a("alice", {"--user", "alice"}, env_);
    ASSERT_TRUE(a.expect("connected to")) << a.transcript();
    a.type("/group create trip bob carol");
    const auto created = a.expect("created group #");
    ASSERT_TRUE(created) << a.transcript();
    const auto hash = created->find("created group #") + 15;
    const std::string id = created->substr(hash, created->find(' ', hash) - hash);
    Session b("bob", {"--user", "bob"}, env_);
    ASSERT_TRUE(b.expect("connected to")) << b.transcript();
    EXPECT_TRUE(b.expect("[#" + id)) << "bob's client syncs the group's creation; " << b.transcript();
    a.type("/to #" + id);
    ASSERT_TRUE(a.expect("talking in #" + id)) << a.transcript();
    a.type("hello trip");
    EXPECT_TRUE(a.expect("[sent]")) << a.transcript();
    ASSERT_TRUE(b.expect("alice #2: hello trip")) << b.transcript();
    b.type("/to #" + id);
    ASSERT_TRUE(b.expect("talking in #" + id)) << b.transcript();
    b.type("/read");
    b.type("hi all");
    ASSERT_TRUE(a.expect("bob #3: hi all")) << a.transcript();
    a.type("/members");
    EXPECT_TRUE(a.expect("carol")) << a.transcript();
    a.type("/readby 2");
    EXPECT_TRUE(a.expect("#2 in #" + id)) << a.transcript();
    EXPECT_TRUE(a.transcript().find("read by 1 of 2 (bob)") != std::string::npos ||
                a.expect("read by 1 of 2 (bob)"))
        << a.transcript();
    EXPECT_EQ(a.quit(10s), 0);
    EXPECT_EQ(b.quit(10s), 0);
}

}  // namespace
}  // namespace im::test

namespace im::test {
namespace {

std::size_t occurrences(const std::string& text, const std::string& needle) {
    std::size_t n = 0;
    for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1))
        ++n;
    return n;
}

// Issue 17 item 8 (docs/CLIENT.md "Persistent state"): im-cli keeps its outbox and cursors in a
// state directory next to the session file, on by default. A message typed while the cluster
// cannot commit it (im-transfer killed), then a kill -9 of im-cli: the next im-cli of that user
// sends it, and bob gets it exactly once. A restart shows no history again. A second chat of the
// same user refuses to start instead of sharing (and corrupting) the state directory;
// --no-persist keeps nothing.
TEST_F(ImCli, PersistentOutboxAndCursors_UnsentMessageSurvivesKill9) {
    for (const std::string u : {"alice", "bob"}) {
        ASSERT_EQ(cli({"register", "--user", u, "--password", u + "-secret"}).code, 0);
        ASSERT_EQ(cli({"login", "--user", u, "--password", u + "-secret"}).code, 0);
    }
    ASSERT_EQ(cli({"--user", "alice", "friends", "add", "bob"}).code, 0);
    ASSERT_EQ(cli({"--user", "bob", "friends", "accept", "alice"}).code, 0);

    const std::string text = "typed while the cluster was down";
    {
        Session a("alice", {"--user", "alice"}, env_);
        ASSERT_TRUE(a.expect("connected to")) << a.transcript();
        a.type("/to bob");
        ASSERT_TRUE(a.expect("talking to bob")) << a.transcript();
        cluster_->stop_transfer(SIGKILL);  // nothing can be committed (SENT) now
        a.type(text);
        a.type("/help");  // im-cli reads its input in order: once this prints, the line was queued
        ASSERT_TRUE(a.expect("commands:")) << a.transcript();
        std::this_thread::sleep_for(500ms);
        EXPECT_FALSE(a.saw("[sent]")) << a.transcript();
        EXPECT_EQ(a.kill9(), 128 + SIGKILL);
        std::cout << "---- alice's first terminal (killed) ----\n" << a.transcript();
    }
    cluster_->start_transfer();
    ASSERT_TRUE(cluster_->wait_connector_ready(0));
    ASSERT_TRUE(cluster_->wait_connector_ready(1));

    Session b("bob", {"--user", "bob"}, env_);
    ASSERT_TRUE(b.expect("connected to")) << b.transcript();
    {
        Session a("alice", {"--user", "alice"}, env_);
        ASSERT_TRUE(a.expect("connected to")) << a.transcript();
        EXPECT_TRUE(a.saw("1 message(s) not SENT by an earlier im-cli")) << a.transcript();
        EXPECT_TRUE(a.expect("you -> bob #1: " + text + "  [sent]")) << a.transcript();
        EXPECT_TRUE(b.expect("alice #1: " + text)) << b.transcript();

        // The state directory is alice's chat's alone while it runs.
        const auto second = cli({"--user", "alice"});
        EXPECT_EQ(second.code, 1) << second.output;
        EXPECT_NE(second.output.find("is in use"), std::string::npos) << second.output;
        EXPECT_FALSE(a.saw("kicked")) << a.transcript();

        a.type("/to bob");
        a.type("and one more");
        EXPECT_TRUE(a.expect("you -> bob #2: and one more  [sent]")) << a.transcript();
        EXPECT_TRUE(b.expect("alice #2: and one more")) << b.transcript();
        EXPECT_EQ(a.quit(10s), 0) << a.transcript();
        std::cout << "---- alice's second terminal ----\n" << a.transcript();
    }
    EXPECT_EQ(b.quit(10s), 0) << b.transcript();

    auto r = cli({"--user", "bob", "history", "--with", "alice"});
    EXPECT_EQ(occurrences(r.output, text), 1u) << "stored exactly once:\n" << r.output;

    // A restart shows nothing of the history again; with --no-persist everything comes again.
    Session b2("bob", {"--user", "bob"}, env_);
    ASSERT_TRUE(b2.expect("connected to")) << b2.transcript();
    b2.type("/help");
    ASSERT_TRUE(b2.expect("commands:")) << b2.transcript();
    std::this_thread::sleep_for(1s);
    EXPECT_FALSE(b2.saw("alice #")) << "history downloaded again:\n" << b2.transcript();
    EXPECT_EQ(b2.quit(10s), 0) << b2.transcript();
    Session b3("bob", {"--user", "bob", "--no-persist"}, env_);
    EXPECT_TRUE(b3.expect("alice #1: " + text)) << b3.transcript();
    EXPECT_TRUE(b3.expect("alice #2: and one more")) << b3.transcript();
    EXPECT_EQ(b3.quit(10s), 0) << b3.transcript();
}

}  // namespace
}  // namespace im::test
