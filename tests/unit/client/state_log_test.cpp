// The persistent state of Options::state_dir alone (client-lib/src/state_log.hpp, state_record.hpp,
// state_cursor_store.hpp): what a reopened log restores, a torn tail cut at every byte, a corrupt
// record, a foreign file, the directory lock, compaction bounding the size, batched fdatasyncs,
// the cursor store, and kill -9 of a process appending at full speed, at a random moment.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "imclient/types.hpp"
#include "state_cursor_store.hpp"
#include "state_log.hpp"
#include "state_record.hpp"

namespace imclient::detail {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct TempDir {
    std::string path;
    // in_memory: on tmpfs when there is one (fsyncs cost nothing there), for tests that open a
    // log a thousand times.
    explicit TempDir(bool in_memory = false) {
        const char* base = std::getenv("TMPDIR");
        std::string root = base && *base ? base : "/tmp";
        if (in_memory && ::access("/dev/shm", W_OK) == 0) root = "/dev/shm";
        std::string tmpl = root + "/imclient-state-XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string log() const { return path + "/state.log"; }
};

std::string id_of(int i) {
    std::string id(16, '\0');
    for (int k = 0; k < 4; ++k)
        id[static_cast<std::size_t>(k)] = static_cast<char>((i >> (8 * k)) & 0xff);
    id[15] = '\x7e';
    return id;
}

OutMessage msg(int i, std::uint64_t owner = 0) {
    OutMessage m;
    m.client_msg_id = id_of(i);
    m.peer = 7 + static_cast<std::uint64_t>(i % 3);
    m.owner = owner;
    if (i % 5 == 4) {
        m.type = MessageType::file;
        m.file = FileRef{1000u + static_cast<std::uint64_t>(i), "f" + std::to_string(i) + ".bin",
                         42, std::string(64, 'a'), "application/octet-stream"};
    } else {
        m.text = "text " + std::to_string(i);
    }
    return m;
}

std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_bytes(const std::string& path, const std::string& data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << data;
}

int index_of(const std::string& id) {
    int i = 0;
    for (int k = 3; k >= 0; --k)
        i = (i << 8) | static_cast<unsigned char>(id[static_cast<std::size_t>(k)]);
    return i;
}

std::vector<std::string> ids(const std::vector<OutMessage>& ms) {
    std::vector<std::string> out;
    for (const auto& m : ms)
        out.push_back(m.client_msg_id);
    return out;
}

TEST(StateLog, ReopenRestoresTheQueuedMessagesInOrderWithoutTheDoneOnes) {
    TempDir dir;
    {
        StateLog log(dir.path);
        EXPECT_TRUE(log.take_restored().empty());
        for (int i = 0; i < 10; ++i)
            log.add(msg(i, 5));
        log.done({id_of(2), id_of(5), id_of(77)});  // 77 was never queued: ignored
    }
    StateLog log(dir.path);
    const auto restored = log.take_restored();
    std::vector<std::string> want;
    for (int i : {0, 1, 3, 4, 6, 7, 8, 9})
        want.push_back(id_of(i));
    ASSERT_EQ(ids(restored), want);
    for (const auto& r : restored) {
        const OutMessage m = msg(index_of(r.client_msg_id), 5);
        EXPECT_EQ(r.peer, m.peer);
        EXPECT_EQ(r.owner, 5u);
        EXPECT_EQ(r.type, m.type);
        EXPECT_EQ(r.text, m.text);
        EXPECT_EQ(r.file.file_id, m.file.file_id);
        EXPECT_EQ(r.file.name, m.file.name);
        EXPECT_EQ(r.file.sha256, m.file.sha256);
        EXPECT_EQ(r.file.mime, m.file.mime);
        EXPECT_EQ(r.stream_seq, 0u);
        EXPECT_EQ(r.request_id, 0u);
    }
    EXPECT_TRUE(log.take_restored().empty()) << "taken once";
    EXPECT_EQ(log.stats().dropped_bytes, 0u);
}

TEST(StateLog, ALoginAdoptsTheMessagesQueuedWithoutAnOwner) {
    TempDir dir;
    {
        StateLog log(dir.path);
        log.add(msg(0, 0));
        log.add(msg(1, 5));
        log.login(9);
        log.add(msg(2, 0));
    }
    StateLog log(dir.path);
    const auto r = log.take_restored();
    ASSERT_EQ(r.size(), 3u);
    EXPECT_EQ(r[0].owner, 9u);
    EXPECT_EQ(r[1].owner, 5u);
    EXPECT_EQ(r[2].owner, 0u) << "queued after the login: not adopted by it";
}

// A crash of the machine mid-write leaves any prefix of the last writes: cut at every byte, the
// log opens, restores exactly what the complete records say, cuts the tail off, and what is
// appended next survives the next reopen.
TEST(StateLog, ATornTailAtEveryLengthLosesOnlyTheTornRecord) {
    std::string file = state::header();
    struct Step {
        std::size_t end;  // where the record ends
        int add = -1;
        int done = -1;
    };
    std::vector<Step> steps;
    for (int i = 0; i < 8; ++i) {
        state::append_add(file, msg(i, 3));
        steps.push_back({file.size(), i, -1});
        if (i % 3 == 2) {
            state::append_done(file, id_of(i - 1));
            steps.push_back({file.size(), -1, i - 1});
        }
        if (i % 4 == 0) {
            state::append_marks(file, 100, static_cast<std::uint64_t>(i), 1);
            steps.push_back({file.size(), -1, -1});
        }
    }
    TempDir dir(/*in_memory=*/true);
    for (std::size_t len = 0; len <= file.size(); ++len) {
        fs::remove_all(dir.path);
        fs::create_directories(dir.path);
        write_bytes(dir.log(), file.substr(0, len));
        std::vector<std::string> want;
        std::size_t valid = std::min(len, state::kHeaderBytes);
        if (len >= state::kHeaderBytes) {
            std::set<int> done;
            std::vector<int> order;
            for (const auto& s : steps) {
                if (s.end > len) break;
                valid = s.end;
                if (s.add >= 0) order.push_back(s.add);
                if (s.done >= 0) done.insert(s.done);
            }
            for (int i : order) {
                if (!done.contains(i)) want.push_back(id_of(i));
            }
        }
        try {
            StateLog log(dir.path);
            ASSERT_EQ(ids(log.take_restored()), want) << "cut at " << len;
            if (len >= state::kHeaderBytes) {
                EXPECT_EQ(log.stats().dropped_bytes, len - valid) << "cut at " << len;
            }
            log.add(msg(500, 3));
        } catch (const Error& e) {
            FAIL() << "cut at " << len << ": " << e.what();
        }
        StateLog again(dir.path);
        want.push_back(id_of(500));
        ASSERT_EQ(ids(again.take_restored()), want) << "appended after the cut, at " << len;
    }
}

TEST(StateLog, ACorruptRecordDropsItAndWhatFollowsOnly) {
    TempDir dir;
    {
        StateLog log(dir.path);
        for (int i = 0; i < 6; ++i)
            log.add(msg(i));
    }
    std::string data = read_bytes(dir.log());
    // Find the fourth record and flip a byte of its payload.
    std::size_t pos = state::kHeaderBytes;
    for (int i = 0; i < 3; ++i)
        pos += state::parse(data, pos)->bytes;
    const std::size_t fourth = pos;
    data[fourth + state::kFrameBytes + 5] ^= 0x20;
    write_bytes(dir.log(), data);
    StateLog log(dir.path);
    EXPECT_EQ(ids(log.take_restored()), (std::vector<std::string>{id_of(0), id_of(1), id_of(2)}));
    EXPECT_EQ(log.stats().dropped_bytes, data.size() - fourth);
    EXPECT_EQ(fs::file_size(dir.log()), fourth);
}

TEST(StateLog, RefusesAFileThatIsNoStateLog) {
    TempDir dir;
    write_bytes(dir.log(), "these are somebody's notes, not a state log\n");
    try {
        StateLog log(dir.path);
        FAIL() << "opened a foreign file";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::io_error);
        EXPECT_NE(std::string(e.what()).find("not a state log"), std::string::npos) << e.what();
    }
    EXPECT_EQ(read_bytes(dir.log()), "these are somebody's notes, not a state log\n")
        << "left as it was";
}

TEST(StateLog, AnEmptyFileIsANewLog) {
    TempDir dir;
    write_bytes(dir.log(), "");
    {
        StateLog log(dir.path);
        log.add(msg(1));
    }
    StateLog log(dir.path);
    EXPECT_EQ(ids(log.take_restored()), std::vector<std::string>{id_of(1)});
}

// A kill during a rewrite leaves state.log whole and a state.log.tmp behind: it goes at the next
// open instead of lying there until the next rewrite.
TEST(StateLog, AnInterruptedRewriteLeavesNothingBehind) {
    TempDir dir;
    {
        StateLog log(dir.path);
        log.add(msg(1));
    }
    write_bytes(dir.log() + ".tmp", std::string(100000, 'z'));
    StateLog log(dir.path);
    EXPECT_EQ(ids(log.take_restored()), std::vector<std::string>{id_of(1)});
    EXPECT_FALSE(fs::exists(dir.log() + ".tmp"));
}

TEST(StateLog, TheDirectoryIsLockedWhileALogUsesIt) {
    TempDir dir;
    const std::string nested = dir.path + "/a/b";
    {
        StateLog first(nested);
        try {
            StateLog second(nested);
            FAIL() << "two logs on one directory";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::state_locked);
            EXPECT_NE(std::string(e.what()).find("pid " + std::to_string(::getpid())),
                      std::string::npos)
                << e.what();
        }
    }
    StateLog again(nested);  // released with the first one
    EXPECT_EQ(fs::status(nested).permissions() & fs::perms::all, fs::perms::owner_all);
}

TEST(StateLog, CompactionBoundsTheFileAndKeepsTheLiveState) {
    TempDir dir;
    constexpr std::size_t kMin = 64 * 1024;
    std::vector<std::string> kept;
    std::uint64_t largest = 0;
    {
        StateLog log(dir.path, StateLog::Config{kMin});
        for (int i = 0; i < 20000; ++i) {
            OutMessage m = msg(i, 4);
            m.text.append(200, 'x');
            log.add(m);
            if (i % 1000 == 7) {
                kept.push_back(m.client_msg_id);
            } else {
                log.done({m.client_msg_id});
            }
            if (i % 100 == 0) {
                StateLog::CursorChanges c;
                c.owner = 4;
                c.sync_cursor = static_cast<std::uint64_t>(i);
                c.marks.push_back({static_cast<std::uint64_t>(i % 7) + 1,
                                   static_cast<std::uint64_t>(i),
                                   static_cast<std::uint64_t>(i / 2)});
                ASSERT_TRUE(log.save_cursors(c));
            }
            largest = std::max<std::uint64_t>(largest, log.stats().file_bytes);
        }
        log.login(4);
        const auto s = log.stats();
        EXPECT_GT(s.compactions, 0u);
        // Appended meanwhile counts too: the file stays within a few times the bound, although
        // ~5 MB went through it.
        EXPECT_LT(largest, 8 * kMin) << "compactions: " << s.compactions;
        std::cout << "20000 messages of ~230 bytes: largest file " << largest << " bytes, "
                  << s.compactions << " compactions\n";
    }
    StateLog log(dir.path);
    const auto restored = log.take_restored();
    EXPECT_EQ(ids(restored), kept);
    for (const auto& m : restored)
        EXPECT_EQ(m.text, msg(index_of(m.client_msg_id)).text + std::string(200, 'x'));
    const auto& c = log.restored_cursors();
    EXPECT_EQ(c.owner, 4u);
    EXPECT_EQ(c.sync_cursor, 19900u);
    ASSERT_EQ(c.marks.size(), 7u);
    EXPECT_EQ(c.marks.at(19900 % 7 + 1).delivered, 19900u);
}

// A send_*() pays one pwrite; the fdatasyncs happen on the log's thread, one for many records.
TEST(StateLog, AppendsAreCheapAndTheirFsyncsBatched) {
    TempDir dir;
    StateLog log(dir.path);
    constexpr int kN = 2000;
    std::vector<double> us;
    us.reserve(kN);
    for (int i = 0; i < kN; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        log.add(msg(i));
        us.push_back(
            std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                .count());
    }
    log.sync();
    std::sort(us.begin(), us.end());
    const auto s = log.stats();
    std::cout << "add(): median " << us[kN / 2] << " us, p99 " << us[kN * 99 / 100]
              << " us; fdatasyncs for " << kN << " adds: " << s.syncs << "\n";
    EXPECT_GT(s.syncs, 0u);
    // Batched: far fewer fdatasyncs than adds. How many adds share one depends on the relative
    // speed of add() and fdatasync (under TSan add() is ~10x slower: ~30 % of the adds).
    EXPECT_LT(s.syncs, static_cast<std::uint64_t>(kN / 2)) << "one fdatasync per message";
}

TEST(StateCursorStore, KeepsTheCursorsAcrossReopens) {
    TempDir dir;
    {
        auto log = std::make_shared<StateLog>(dir.path);
        StateCursorStore store(log);
        EXPECT_EQ(store.owner(), 0u);
        store.set_owner(3);
        store.set_sync_cursor(10);
        store.set_delivered(100, 5);
        store.set_read(100, 4);
        store.set_delivered(200, 9);
        ASSERT_TRUE(store.flush());
        store.set_delivered(100, 3);  // backwards: ignored
        store.set_delivered(200, 11);
        ASSERT_TRUE(store.flush());
        store.set_delivered(200, 12);  // never flushed: lost with the "crash"
    }
    {
        auto log = std::make_shared<StateLog>(dir.path);
        StateCursorStore store(log);
        EXPECT_EQ(store.owner(), 3u);
        EXPECT_EQ(store.sync_cursor(), 10u);
        EXPECT_EQ(store.delivered(100), 5u);
        EXPECT_EQ(store.read(100), 4u);
        EXPECT_EQ(store.delivered(200), 11u);
        // Another user: cleared, then his own.
        store.clear();
        store.set_owner(8);
        store.set_delivered(300, 1);
        ASSERT_TRUE(store.flush());
    }
    auto log = std::make_shared<StateLog>(dir.path);
    StateCursorStore store(log);
    EXPECT_EQ(store.owner(), 8u);
    EXPECT_EQ(store.sync_cursor(), 0u);
    EXPECT_EQ(store.delivered(100), 0u);
    EXPECT_EQ(store.delivered(300), 1u);
    EXPECT_EQ(store.conversations().size(), 1u);
}

// ---- kill -9 ---------------------------------------------------------------------------------

// The child of SurvivesKill9AtAnyMoment (this binary, started again by it): adds and acknowledges
// messages as fast as it can, reporting on fd 3 each add() once it returned, and each done()
// before it is called ("p": it may be on disk) and once it returned ("d": it is).
[[noreturn]] void append_until_killed(const char* dir) {
    // Nine in ten acknowledged and a small size bound: compactions all the time.
    StateLog log(dir, StateLog::Config{64 * 1024});
    for (int i = 0; i < 10000000; ++i) {
        OutMessage m = msg(i);
        m.text.append(static_cast<std::size_t>(i % 300), 'y');
        log.add(m);
        std::string line = "a " + std::to_string(i) + "\n";
        if (i % 10 != 3) {
            line += "p " + std::to_string(i) + "\n";
            if (::write(3, line.data(), line.size()) < 0) break;
            log.done({id_of(i)});
            line = "d " + std::to_string(i) + "\n";
        }
        if (::write(3, line.data(), line.size()) < 0) break;
    }
    std::_Exit(0);
}

TEST(StateLog, SurvivesKill9AtAnyMoment) {
    if (const char* dir = std::getenv("IMCLIENT_STATE_CHILD_DIR")) append_until_killed(dir);
    std::mt19937 rng(12345);
    for (int round = 0; round < 6; ++round) {
        TempDir dir;
        int out[2];
        ASSERT_EQ(::pipe(out), 0);
        const pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            ::dup2(out[1], 3);  // the reports; gtest's own output goes nowhere
            const int null = ::open("/dev/null", O_WRONLY);
            ::dup2(null, 1);
            ::dup2(null, 2);
            ::setenv("IMCLIENT_STATE_CHILD_DIR", dir.path.c_str(), 1);
            const char* argv[] = {"/proc/self/exe",
                                  "--gtest_filter=StateLog.SurvivesKill9AtAnyMoment", nullptr};
            ::execv(argv[0], const_cast<char* const*>(argv));
            ::_exit(127);
        }
        ::close(out[1]);
        // Read what the child reports until a random moment, then kill it.
        std::string reported;
        const auto stop_at =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(100 + rng() % 400);
        char buf[65536];
        while (std::chrono::steady_clock::now() < stop_at) {
            const auto n = ::read(out[0], buf, sizeof buf);
            if (n <= 0) break;
            reported.append(buf, static_cast<std::size_t>(n));
        }
        ::kill(pid, SIGKILL);
        int st = 0;
        ::waitpid(pid, &st, 0);
        for (;;) {  // what it reported before the kill is still in the pipe
            const auto n = ::read(out[0], buf, sizeof buf);
            if (n <= 0) break;
            reported.append(buf, static_cast<std::size_t>(n));
        }
        ::close(out[0]);
        ASSERT_TRUE(WIFSIGNALED(st)) << "the child ended by itself";

        std::set<std::string> added, acking, acked;
        std::istringstream lines(reported);
        for (std::string kind, n; lines >> kind >> n;) {
            (kind == "a" ? added : kind == "p" ? acking : acked).insert(id_of(std::stoi(n)));
        }
        ASSERT_GT(added.size(), 100u) << "the child did not get going";
        StateLog log(dir.path);
        const auto restored = log.take_restored();
        std::set<std::string> got;
        int last = -1;
        for (const auto& m : restored) {
            const int i = index_of(m.client_msg_id);
            EXPECT_GT(i, last) << "out of order";
            last = i;
            got.insert(m.client_msg_id);
            EXPECT_FALSE(acked.contains(m.client_msg_id)) << "an acknowledged message came back";
        }
        std::size_t missing = 0;
        for (const auto& id : added) {
            if (!acking.contains(id) && !got.contains(id)) ++missing;
        }
        EXPECT_EQ(missing, 0u) << "messages whose add() returned were lost";
        std::cout << "round " << round << ": " << added.size() << " added, " << acked.size()
                  << " acknowledged before the kill; " << restored.size()
                  << " restored; tail dropped: " << log.stats().dropped_bytes << " bytes; file "
                  << log.stats().file_bytes << " bytes\n";
    }
}

}  // namespace
}  // namespace imclient::detail
