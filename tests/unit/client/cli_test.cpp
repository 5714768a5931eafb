// im-cli's pure pieces: the command line and the session file (format, permissions, the state
// directories next to it).
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "args.hpp"
#include "groups.hpp"
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

TEST(CliGroups, SystemMessagesReadAsSentences) {
    auto name = [](std::uint64_t id) {
        return id == 1 ? std::string("alice") : "user" + std::to_string(id);
    };
    imclient::GroupEvent e;
    e.kind = imclient::GroupEventKind::created;
    e.actor_user_id = 1;
    e.user_ids = {2, 3};
    e.name = "team";
    EXPECT_EQ(describe_group_event(e, name), "alice created the group \"team\" with user2, user3");
    e.kind = imclient::GroupEventKind::members_added;
    e.user_ids = {4};
    EXPECT_EQ(describe_group_event(e, name), "alice added user4");
    e.kind = imclient::GroupEventKind::member_removed;
    EXPECT_EQ(describe_group_event(e, name), "alice removed user4");
    e.kind = imclient::GroupEventKind::member_left;
    EXPECT_EQ(describe_group_event(e, name), "alice left");
    e.kind = imclient::GroupEventKind::renamed;
    e.name = "crew";
    EXPECT_EQ(describe_group_event(e, name), "alice renamed the group to \"crew\"");
    e.kind = imclient::GroupEventKind::role_changed;
    e.role = imclient::GroupRole::admin;
    EXPECT_EQ(describe_group_event(e, name), "alice made user4 admin");
    e.kind = imclient::GroupEventKind::owner_changed;
    EXPECT_EQ(describe_group_event(e, name), "alice handed the ownership to user4");
    e.user_ids.assign(25, 9);  // a long list is cut
    e.kind = imclient::GroupEventKind::members_added;
    EXPECT_NE(describe_group_event(e, name).find("and 5 more"), std::string::npos);
}

TEST(CliGroups, GroupReferencesAreIdsInTheGroupRange) {
    EXPECT_EQ(parse_group_id("#7"), 7u);
    EXPECT_EQ(parse_group_id("7"), 7u);
    EXPECT_EQ(parse_group_id("#2147483647"), 2147483647u);
    EXPECT_EQ(parse_group_id("#2147483648"), 0u);  // a one-to-one range id is no group
    EXPECT_EQ(parse_group_id("#0"), 0u);
    EXPECT_EQ(parse_group_id("#team"), 0u);  // a name: looked up in /v1/groups
    EXPECT_EQ(parse_group_id("#"), 0u);
    EXPECT_EQ(parse_group_id("#99999999999999999999"), 0u);
}

}  // namespace
}  // namespace imcli
