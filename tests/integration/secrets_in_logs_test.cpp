// Issue 14, secrets: no password, token or message body reaches any log, at any level (the whole
// cluster runs at trace here), through the REST API, a chat session and a file upload.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "cluster.hpp"
#include "im/wire/ids.hpp"

namespace im::test {
namespace {

std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

TEST(SecretsInLogs, NoPasswordTokenOrMessageBodyAtAnyLevel) {
    const std::vector<std::string> trace = {"log.level=trace"};
    Cluster cl(ClusterOptions{2, trace, trace, trace, "secrets-logs"});
    const std::string password = "Pw-" + unique_suffix() + "-never-logged";
    const std::string name = "sec" + unique_suffix().substr(0, 6);
    auto reg = cl.http().post("/v1/users", {{"username", name}, {"password", password}, {"display_name", name}});
    ASSERT_EQ(reg.status, 201) << reg.body;
    const auto me = reg.json()["id"].get<std::uint64_t>();
    auto login = cl.http().post("/v1/sessions", {{"username", name}, {"password", password}, {"device_id", "dev1"}});
    ASSERT_EQ(login.status, 201) << login.body;
    const auto token = login.json()["token"].get<std::string>();
    auto wrong = cl.http().post("/v1/sessions", {{"username", name}, {"password", password + "x"}, {"device_id", "d"}});
    EXPECT_EQ(wrong.status, 401);
    auto peer = cl.user("peer");
    cl.befriend(TestUser{me, name, password, token}, peer);

    const std::string body = "body-" + unique_suffix() + "-private-words";
    auto c = cl.connect(0, token, "dev1");
    auto send = c->make_send(peer.id, body, 1);
    c->send(send);
    auto r = c->wait_for([&](const client::Envelope& e) { return e.request_id() == send.request_id(); });
    ASSERT_TRUE(r && r->send_result().code() == client::ERROR_NONE);
    auto pc = cl.connect(1, peer.token, "dev1");
    auto sync = client::Envelope();
    sync.set_request_id(9);
    sync.mutable_sync_messages()->set_conversation_id(conversation_id(me, peer.id));
    pc->send(sync);
    auto page = pc->wait_for([](const client::Envelope& e) { return e.request_id() == 9; });
    ASSERT_TRUE(page && page->message_page().messages_size() == 1) << "the peer synced the message";
    const std::string file_body = "file-" + unique_suffix() + "-contents";
    auto up = cl.http().request("POST", "/v1/files?name=notes.txt", file_body,
                                {{"authorization", "Bearer " + token}, {"content-type", "text/plain"}});
    EXPECT_EQ(up.status, 201) << up.body;
    EXPECT_EQ(cl.http().del("/v1/sessions/current", token).status, 204);

    std::vector<std::string> logs = {cl.rest().process().log_file(), cl.transfer().log_file(), cl.connector(0).log_file(),
                                     cl.connector(1).log_file()};
    std::size_t bytes = 0;
    for (const auto& f : logs) {
        const auto text = slurp(f);
        bytes += text.size();
        EXPECT_EQ(text.find(password), std::string::npos) << "the password is in " << f;
        EXPECT_EQ(text.find(token), std::string::npos) << "the token is in " << f;
        EXPECT_EQ(text.find(body), std::string::npos) << "a message body is in " << f;
        EXPECT_EQ(text.find(file_body), std::string::npos) << "a file's contents are in " << f;
        EXPECT_EQ(text.find(std::getenv("IM_CLUSTER_SECRET")), std::string::npos) << "the cluster secret is in " << f;
    }
    EXPECT_GT(bytes, 10000u) << "trace logs were written (the check means something)";
}

}  // namespace
}  // namespace im::test
