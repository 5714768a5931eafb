// im-cli's pure pieces: the command line and the session file (format, permissions, the state
// directories next to it).
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "args.hpp"
#include "session_file.hpp"

namespace imcli {
namespace {

Args parse(std::vector<std::string> v) {
    return parse_args(v);
}

TEST(CliArgs, OptionsGoAnywhereAndTheDefaultCommandIsTheChat) {
    auto a = parse({"--user", "Alice"});
    EXPECT_EQ(a.command, "chat");
    EXPECT_EQ(a.user, "alice");  // usernames are case-insensitive, stored lowercase

    a = parse({"--user", "alice", "send", "--to", "bob", "hi", "there"});
    EXPECT_EQ(a.command, "send");
    EXPECT_EQ(a.to, "bob");
    EXPECT_EQ(a.words, (std::vector<std::string>{"hi", "there"}));

    a = parse({"--user", "alice", "send", "--to=bob", "--", "--not-an-option", "--user=bob"});
    EXPECT_EQ(a.words, (std::vector<std::string>{"--not-an-option", "--user=bob"}));
    EXPECT_EQ(a.user, "alice");  // after --: words, not options

    EXPECT_TRUE(parse({"--user", "alice"}).persist);  // a state directory by default
    EXPECT_FALSE(parse({"--user", "alice", "--no-persist"}).persist);
}

TEST(CliArgs, BadCommandLinesAreUsageErrors) {
    EXPECT_THROW(parse({"send", "--to", "bob", "hi"}), UsageError);               // no --user
    EXPECT_THROW(parse({"--user", "alice", "send", "hi"}), UsageError);           // no --to
    EXPECT_THROW(parse({"--user", "alice", "send", "--to", "bob"}), UsageError);  // no text
    EXPECT_THROW(parse({"--user", "alice", "history"}), UsageError);              // no --with
    EXPECT_THROW(parse({"--user", "alice", "login"}), UsageError);                // no password
    EXPECT_THROW(parse({"--user", "alice", "dance"}), UsageError);
    EXPECT_THROW(parse({"--user", "alice", "--bogus"}), UsageError);
    EXPECT_THROW(parse({"--user"}), UsageError);
    EXPECT_THROW(parse({"--user", "alice", "chats", "extra"}), UsageError);
    EXPECT_THROW(parse({"--user", "alice", "history", "--with", "bob", "--limit", "0"}),
                 UsageError);
    EXPECT_THROW(parse({"--user", "alice", "send", "--to", "bob", "--timeout", "x1", "hi"}),
                 UsageError);
    EXPECT_NO_THROW(parse({"--help"}));
    EXPECT_EQ(parse({"--user", "bob", "history", "alice"}).with, "alice");
}

TEST(CliArgs, UsernamesAreCheckedBecauseTheyNameFiles) {
    for (const char* bad : {"../x", "a/b", "ab", ".alice", "-alice", "al ice", ""}) {
        EXPECT_THROW(checked_username(bad, "--user"), UsageError) << bad;
    }
    EXPECT_EQ(checked_username("Bob.Smith_2-x", "--user"), "bob.smith_2-x");
}

TEST(CliSessionFile, RoundTripsAndRefusesIncompleteText) {
    SessionData d;
    d.username = "alice";
    d.user_id = 42;
    d.rest_url = "http://127.0.0.1:8080";
    d.connectors = {"127.0.0.1:9000", "127.0.0.1:9001"};
    d.chat_token = "tok1";
    d.chat_device = "cli-h-chat";
    d.cmd_token = "tok2";
    d.cmd_device = "cli-h-cmd";
    const auto back = SessionFile::parse(SessionFile::format(d));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->user_id, 42u);
    EXPECT_EQ(back->connectors, d.connectors);
    EXPECT_EQ(back->cmd_token, "tok2");
    EXPECT_FALSE(SessionFile::parse("username=alice\nuser_id=42\n"));
    EXPECT_FALSE(SessionFile::parse("garbage"));
}

TEST(CliSessionFile, IsWrittenOwnerOnlyAndRefusedWhenOthersCanReadIt) {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("im-cli-test-" + std::to_string(std::random_device{}())) / "nested";
    SessionFile f(dir.string(), "alice");
    EXPECT_THROW(f.load(), NotLoggedIn);
    SessionData d;
    d.username = "alice";
    d.user_id = 7;
    d.rest_url = "http://x:1";
    d.chat_token = d.chat_device = d.cmd_token = d.cmd_device = "t";
    f.save(d);
    struct stat st {};
    ASSERT_EQ(::stat(f.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    ASSERT_EQ(::stat(dir.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    EXPECT_EQ(f.load().user_id, 7u);

    ::chmod(f.path().c_str(), 0640);
    EXPECT_THROW(f.load(), std::runtime_error);
    f.save(d);  // saving again repairs the permissions
    EXPECT_EQ(f.load().user_id, 7u);

    SessionFile other(dir.string(), "bob");  // a file that names another user is not bob's
    std::filesystem::copy_file(f.path(), other.path());
    EXPECT_THROW(other.load(), std::runtime_error);

    // The state directories sit next to the session file; logout (remove) deletes them too.
    EXPECT_EQ(f.state_dir("chat"), dir.string() + "/alice.chat");
    std::filesystem::create_directories(f.state_dir("chat"));
    std::ofstream(f.state_dir("chat") + "/state.log") << "x";
    std::ofstream(dir.string() + "/alice.cmd.cursors") << "imclient-cursors 1\n";  // old versions'
    EXPECT_TRUE(f.remove());
    EXPECT_THROW(f.load(), NotLoggedIn);
    EXPECT_FALSE(std::filesystem::exists(f.state_dir("chat")));
    EXPECT_FALSE(std::filesystem::exists(dir.string() + "/alice.cmd.cursors"));
    std::filesystem::remove_all(dir.parent_path());
}

}  // namespace
}  // namespace imcli
