// File messages end to end against the real binaries (im-rest, im-transfer, im-connector) and the
// real MariaDB/Redis: streamed upload and download of 0 B, 1 B and 50 MiB with sha256 checked,
// FILE messages (ownership checked by the transfer, the stored FileRef is the server's), access by
// conversation (a third user gets 404), Range, Content-Disposition, limits (413 without filling the
// disk), a path-traversal name, an interrupted upload, a restart, and the sweep of unsent files.
#include <gtest/gtest.h>

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <openssl/evp.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "cluster.hpp"
#include "im/server/mysql.hpp"
#include "im/wire/ids.hpp"

namespace im::test {
namespace {

namespace fs = std::filesystem;
using client::Envelope;
using namespace std::chrono_literals;

std::string sha256_hex(const std::string& data) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(data.data(), data.size(), d, &n, EVP_sha256(), nullptr);
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < n; ++i) {
        out.push_back(hex[d[i] >> 4]);
        out.push_back(hex[d[i] & 0xF]);
    }
    return out;
}

std::string random_bytes(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; i += 8) {
        const auto v = rng();
        std::memcpy(s.data() + i, &v, std::min<std::size_t>(8, n - i));
    }
    return s;
}

std::string url_encode(const std::string& s) {
    std::string out;
    static const char* hex = "0123456789ABCDEF";
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xF]);
        }
    }
    return out;
}

HttpResult upload(HttpClient& http, const std::string& token, const std::string& name,
                  const std::string& data, const std::string& type = "application/octet-stream") {
    return http.request("POST", "/v1/files?name=" + url_encode(name), data,
                        {{"Authorization", "Bearer " + token}, {"Content-Type", type}});
}

HttpResult download(HttpClient& http, const std::string& token, std::uint64_t id,
                    const std::map<std::string, std::string>& extra = {}) {
    auto h = extra;
    h["Authorization"] = "Bearer " + token;
    return http.request("GET", "/v1/files/" + std::to_string(id), {}, h);
}

std::size_t entries(const fs::path& dir) {
    std::size_t n = 0;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_regular_file()) ++n;
    }
    return n;
}

template <class Pred>
bool eventually(Pred p, std::chrono::milliseconds timeout = 10s) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
        if (p()) return true;
        std::this_thread::sleep_for(50ms);
    }
    return p();
}

// A raw HTTP connection: writes exactly what a test gives, so a body can stop half way.
class RawHttp {
  public:
    explicit RawHttp(std::uint16_t port) : socket_(io_) {
        socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port});
    }
    void write(const std::string& bytes) {
        boost::asio::write(socket_, boost::asio::buffer(bytes));
    }
    // Reads until the peer closes (or 10 s): the whole response.
    std::string read_all() {
        std::string out;
        char buf[4096];
        boost::system::error_code ec;
        socket_.non_blocking(false);
        timeval tv{10, 0};
        ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        for (;;) {
            const auto n = socket_.read_some(boost::asio::buffer(buf), ec);
            if (ec) break;
            out.append(buf, n);
        }
        return out;
    }
    void close() {
        boost::system::error_code ec;
        socket_.close(ec);
    }

  private:
    boost::asio::io_context io_;
    boost::asio::ip::tcp::socket socket_;
};

std::uint64_t count_files(Cluster& cl, std::uint64_t owner) {
    auto& st = cl.db().db().prepare("SELECT COUNT(*) FROM files WHERE owner_id = ?");
    st.setUInt64(1, owner);
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    return rs->next() ? rs->getUInt64(1) : 0;
}

client::Envelope file_send(RawClient& c, std::uint64_t peer, std::uint64_t stream_seq,
                           client::FileRef ref) {
    Envelope env;
    env.set_request_id(c.next_request_id());
    auto* s = env.mutable_send();
    s->set_peer_user_id(peer);
    s->set_client_msg_id(random_cmid());
    s->set_stream_seq(stream_seq);
    s->set_type(client::FILE);
    *s->mutable_file() = std::move(ref);
    return env;
}

client::SendResult send_and_wait(RawClient& c, const Envelope& env) {
    const auto rid = env.request_id();
    c.send(env);
    auto res = c.wait_for(
        [rid](const Envelope& e) { return e.request_id() == rid && e.has_send_result(); });
    if (!res) throw std::runtime_error("no SendResult");
    return res->send_result();
}

class Files : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        ClusterOptions o;
        o.connectors = 1;
        o.rest_sets = {"files.max_bytes=64MiB"};
        o.name = "files";
        cluster_ = new Cluster(o);
        cluster_->http().set_response_limit(128ull << 20);
    }
    static void TearDownTestSuite() {
        delete cluster_;
        cluster_ = nullptr;
    }
    static Cluster* cluster_;
    fs::path files_dir() const { return cluster_->rest().files_dir(); }
};
Cluster* Files::cluster_ = nullptr;

TEST_F(Files, RoundTripOfZeroOneAndFiftyMebibytesWithSha256) {
    auto& cl = *cluster_;
    auto a = cl.user("rt_alice");
    for (const std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{50} << 20}) {
        SCOPED_TRACE("size " + std::to_string(size));
        const auto data = random_bytes(size, size + 7);
        const auto sha = sha256_hex(data);
        auto up = upload(cl.http(), a.token, "blob.bin", data);
        ASSERT_EQ(up.status, 201) << up.body;
        const auto j = up.json();
        EXPECT_EQ(j["size"].get<std::uint64_t>(), size);
        EXPECT_EQ(j["sha256"].get<std::string>(), sha);
        EXPECT_EQ(j["name"].get<std::string>(), "blob.bin");
        EXPECT_EQ(j["mime"].get<std::string>(), "application/octet-stream");
        const auto id = j["id"].get<std::uint64_t>();
        ASSERT_GT(id, 0u);
        // Content-addressed on disk, nothing left in tmp/.
        EXPECT_TRUE(fs::exists(files_dir() / "objects" / sha.substr(0, 2) / sha));
        EXPECT_EQ(entries(files_dir() / "tmp"), 0u);

        auto down = download(cl.http(), a.token, id);
        ASSERT_EQ(down.status, 200);
        EXPECT_EQ(down.body.size(), size);
        EXPECT_EQ(sha256_hex(down.body), sha);
        EXPECT_EQ(down.header("content-type"), "application/octet-stream");
        EXPECT_EQ(down.header("etag"), "\"" + sha + "\"");
        EXPECT_EQ(down.header("accept-ranges"), "bytes");
    }
    // Metrics count the bytes both ways.
    auto m = HttpClient("127.0.0.1", cl.rest().admin_port()).get("/metrics");
    EXPECT_NE(m.body.find("im_rest_file_upload_bytes_total"), std::string::npos);
    EXPECT_NE(m.body.find("im_rest_file_download_bytes_total"), std::string::npos);
}

TEST_F(Files, SentFileIsReadableByParticipantsOnlyWithRanges) {
    auto& cl = *cluster_;
    auto a = cl.user("acl_alice");
    auto b = cl.user("acl_bob");
    auto c = cl.user("acl_carol");
    cl.befriend(a, b);
    const std::string data = "0123456789abcdefghij";
    auto up = upload(cl.http(), a.token, "notes.txt", data, "Text/Plain; charset=utf-8");
    ASSERT_EQ(up.status, 201) << up.body;
    const auto id = up.json()["id"].get<std::uint64_t>();
    EXPECT_EQ(up.json()["mime"].get<std::string>(), "text/plain");

    // Before it is sent, only the owner may read it.
    EXPECT_EQ(download(cl.http(), b.token, id).status, 404);

    auto ca = cl.connect(0, a.token, "dev1");
    auto cb = cl.connect(0, b.token, "dev1");
    client::FileRef ref;
    ref.set_file_id(id);
    ref.set_name("a lie.exe");  // the server stores its own metadata, not the client's claims
    ref.set_size(1);
    auto res = send_and_wait(*ca, file_send(*ca, b.id, 1, ref));
    ASSERT_EQ(res.code(), client::ERROR_NONE) << res.message();
    auto d = cb->wait_body(Envelope::kDeliver);
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->deliver().type(), client::FILE);
    EXPECT_EQ(d->deliver().file().file_id(), id);
    EXPECT_EQ(d->deliver().file().name(), "notes.txt");
    EXPECT_EQ(d->deliver().file().size(), data.size());
    EXPECT_EQ(d->deliver().file().sha256(), sha256_hex(data));
    EXPECT_EQ(d->deliver().file().mime(), "text/plain");

    // The recipient reads it; a third user gets the same 404 as for a file that does not exist.
    auto got = download(cl.http(), b.token, id);
    ASSERT_EQ(got.status, 200);
    EXPECT_EQ(got.body, data);
    EXPECT_EQ(got.header("content-type"), "text/plain");
    EXPECT_EQ(got.header("content-disposition"),
              "attachment; filename=\"notes.txt\"; filename*=UTF-8''notes.txt");
    EXPECT_EQ(got.header("x-content-type-options"), "nosniff");
    auto denied = download(cl.http(), c.token, id);
    EXPECT_EQ(denied.status, 404);
    EXPECT_EQ(denied.json()["error"]["code"], "file_not_found");
    EXPECT_EQ(download(cl.http(), c.token, id + 1000000).status, 404);
    EXPECT_EQ(cl.http()
                  .request("GET", "/v1/files/abc", {}, {{"Authorization", "Bearer " + b.token}})
                  .status,
              404);
    EXPECT_EQ(cl.http().get("/v1/files/" + std::to_string(id)).status, 401);

    // Ranges.
    auto r1 = download(cl.http(), b.token, id, {{"Range", "bytes=2-5"}});
    EXPECT_EQ(r1.status, 206);
    EXPECT_EQ(r1.body, "2345");
    EXPECT_EQ(r1.header("content-range"), "bytes 2-5/20");
    auto r2 = download(cl.http(), b.token, id, {{"Range", "bytes=-3"}});
    EXPECT_EQ(r2.status, 206);
    EXPECT_EQ(r2.body, "hij");
    auto r3 = download(cl.http(), b.token, id, {{"Range", "bytes=15-"}});
    EXPECT_EQ(r3.body, "fghij");
    auto r4 = download(cl.http(), b.token, id, {{"Range", "bytes=20-"}});
    EXPECT_EQ(r4.status, 416);
    EXPECT_EQ(r4.header("content-range"), "bytes */20");
    auto r5 =
        download(cl.http(), b.token, id, {{"Range", "bytes=0-1,4-5"}});  // several: the whole file
    EXPECT_EQ(r5.status, 200);
    EXPECT_EQ(r5.body, data);

    // Carol cannot send Alice's file (not the owner), even knowing its id.
    cl.befriend(c, b);
    auto cc = cl.connect(0, c.token, "dev1");
    auto forged = send_and_wait(*cc, file_send(*cc, b.id, 1, ref));
    EXPECT_EQ(forged.code(), client::NOT_FOUND);
    EXPECT_EQ(download(cl.http(), c.token, id).status, 404);
}

// Issue 17, item 2 ("compose loses uploaded files"): a blob gone from files.dir while its row
// stays (a container re-created without a volume on files.dir, a restored database without its
// files) is a clear 410 Gone, counted by a metric, never a 500; a truncated blob too. Uploading the
// same content again brings the file back (content-addressed blobs).
TEST_F(Files, LostBlobIsGone410WithAMetricNeverA500) {
    auto& cl = *cluster_;
    auto a = cl.user("lost_alice");
    const auto gone_count = [&](const std::string& reason) {
        // /metrics is served on the admin listener only (issue 17, item 10).
        const auto text = HttpClient("127.0.0.1", cl.rest().admin_port()).get("/metrics").body;
        const std::string series = "im_rest_file_blobs_lost_total{reason=\"" + reason + "\"} ";
        const auto at = text.find(series);
        return at == std::string::npos ? -1.0 : std::stod(text.substr(at + series.size()));
    };
    for (const std::string reason : {"missing", "size_mismatch"}) {
        SCOPED_TRACE(reason);
        const auto data = "the content of a file whose blob gets " + reason;
        auto up = upload(cl.http(), a.token, "lost.txt", data);
        ASSERT_EQ(up.status, 201) << up.body;
        const auto id = up.json()["id"].get<std::uint64_t>();
        const auto sha = sha256_hex(data);
        const auto blob = files_dir() / "objects" / sha.substr(0, 2) / sha;
        ASSERT_TRUE(fs::exists(blob));
        if (reason == "missing") {
            fs::remove(blob);
        } else {
            fs::resize_file(blob, 3);
        }
        const auto before = gone_count(reason);
        auto down = download(cl.http(), a.token, id);
        EXPECT_EQ(down.status, 410) << down.body;
        EXPECT_NE(down.body.find("\"file_gone\""), std::string::npos) << down.body;
        EXPECT_EQ(gone_count(reason), std::max(before, 0.0) + 1) << "im_rest_file_blobs_lost_total";
        // The same content uploaded again restores the blob (also over a damaged one): the old id
        // downloads again.
        ASSERT_EQ(upload(cl.http(), a.token, "again.txt", data).status, 201);
        auto back = download(cl.http(), a.token, id);
        EXPECT_EQ(back.status, 200);
        EXPECT_EQ(back.body, data);
    }
}

TEST_F(Files, OversizedUploadIsRefusedWithoutFillingTheDisk) {
    ClusterOptions o;
    o.connectors = 1;
    o.rest_sets = {"files.max_bytes=1MiB"};
    o.name = "files-small";
    Cluster cl(o);
    auto a = cl.user("big_alice");
    const fs::path dir = cl.rest().files_dir();

    // A declared length over the limit: 413 before a byte of the body is read.
    {
        RawHttp raw(cl.rest().port());
        raw.write("POST /v1/files?name=big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                  a.token + "\r\nContent-Length: 1073741824\r\n\r\n");
        const auto answer = raw.read_all();
        EXPECT_EQ(answer.rfind("HTTP/1.1 413", 0), 0u) << answer;
    }
    // Chunked with no length: the upload stops at the limit, 413, nothing kept.
    {
        RawHttp raw(cl.rest().port());
        raw.write("POST /v1/files?name=big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                  a.token + "\r\nTransfer-Encoding: chunked\r\n\r\n");
        const std::string chunk(64 * 1024, 'x');
        std::string answer;
        try {
            for (int i = 0; i < 40; ++i)
                raw.write("10000\r\n" + chunk + "\r\n");  // 2.5 MiB
            raw.write("0\r\n\r\n");
        } catch (const std::exception&) {
            // The server may close while we are still writing: that is the refusal.
        }
        answer = raw.read_all();
        if (!answer.empty()) {
            EXPECT_EQ(answer.rfind("HTTP/1.1 413", 0), 0u) << answer.substr(0, 200);
        }
    }
    // A full-size body through the normal client: 413 too (or the connection closed on it).
    try {
        auto res = upload(cl.http(), a.token, "big.bin", std::string((1 << 20) + 1, 'y'));
        EXPECT_EQ(res.status, 413);
    } catch (const std::exception&) {
    }
    EXPECT_TRUE(eventually([&] { return entries(dir / "tmp") == 0; }));
    EXPECT_EQ(entries(dir / "objects"), 0u);
    EXPECT_EQ(count_files(cl, a.id), 0u);
    // Exactly at the limit is fine.
    auto ok = upload(cl.http(), a.token, "max.bin", std::string(1 << 20, 'z'));
    EXPECT_EQ(ok.status, 201) << ok.body;
}

TEST_F(Files, HostileNamesAreStoredHarmlessly) {
    auto& cl = *cluster_;
    auto a = cl.user("name_alice");
    const fs::path parent = files_dir().parent_path();
    auto up = upload(cl.http(), a.token, "../../evil\\..\\passwd", "root:x:0:0");
    ASSERT_EQ(up.status, 201) << up.body;
    EXPECT_EQ(up.json()["name"].get<std::string>(), "passwd");
    EXPECT_FALSE(fs::exists(parent / "passwd"));
    EXPECT_FALSE(fs::exists(parent.parent_path() / "passwd"));
    const auto sha = sha256_hex("root:x:0:0");
    EXPECT_TRUE(fs::exists(files_dir() / "objects" / sha.substr(0, 2) / sha));

    for (const auto& dots : {"..", ".", "/"}) {
        auto r = upload(cl.http(), a.token, dots, "x");
        ASSERT_EQ(r.status, 201) << r.body;
        EXPECT_EQ(r.json()["name"].get<std::string>(), "file");
    }

    // Quotes, a CR/LF header injection attempt and unicode: the header stays one safe line.
    const std::string tricky = "r\xC3\xA9sum\xC3\xA9 \"final\"\r\nX-Evil: 1.pdf";
    auto t = upload(cl.http(), a.token, tricky, "%PDF", "application/pdf");
    ASSERT_EQ(t.status, 201) << t.body;
    const auto id = t.json()["id"].get<std::uint64_t>();
    EXPECT_EQ(t.json()["name"].get<std::string>(), "r\xC3\xA9sum\xC3\xA9 \"final\"X-Evil: 1.pdf");
    auto got = download(cl.http(), a.token, id);
    ASSERT_EQ(got.status, 200);
    EXPECT_EQ(got.header("x-evil"), "");
    EXPECT_EQ(got.header("content-disposition"),
              "attachment; filename=\"r__sum__ _final_X-Evil: 1.pdf\"; "
              "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22X-Evil%3A%201.pdf");
    EXPECT_EQ(got.header("content-type"), "application/pdf");

    // Not UTF-8, or no name at all: 400.
    EXPECT_EQ(upload(cl.http(), a.token, "\xFF\xFE.bin", "x").status, 400);
    EXPECT_EQ(cl.http()
                  .request("POST", "/v1/files", "x", {{"Authorization", "Bearer " + a.token}})
                  .status,
              400);
    // No token: 401 before anything is stored.
    EXPECT_EQ(cl.http().request("POST", "/v1/files?name=a", "x").status, 401);
}

TEST_F(Files, InterruptedUploadLeavesNoVisibleFile) {
    auto& cl = *cluster_;
    auto a = cl.user("cut_alice");
    const auto before = entries(files_dir() / "objects");
    {
        RawHttp raw(cl.rest().port());
        raw.write("POST /v1/files?name=cut.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                  a.token + "\r\nContent-Length: 10485760\r\n\r\n");
        raw.write(random_bytes(1 << 20, 3));
        // The upload streams into tmp/ while the connection lives ...
        EXPECT_TRUE(eventually([&] { return entries(files_dir() / "tmp") == 1; }));
        raw.close();
    }
    // ... and is gone once it drops.
    EXPECT_TRUE(eventually([&] { return entries(files_dir() / "tmp") == 0; }));
    EXPECT_EQ(entries(files_dir() / "objects"), before);
    EXPECT_EQ(count_files(cl, a.id), 0u);
}

TEST_F(Files, FilesSurviveRestartsAndUnsentOnesAreSwept) {
    ClusterOptions o;
    o.connectors = 1;
    o.rest_sets = {"files.orphan_ttl=4s", "files.sweep_interval=200ms"};
    o.name = "files-sweep";
    Cluster cl(o);
    auto a = cl.user("gc_alice");
    auto b = cl.user("gc_bob");
    cl.befriend(a, b);
    auto sent = upload(cl.http(), a.token, "kept.txt", "kept content");
    auto unsent = upload(cl.http(), a.token, "dropped.txt", "dropped content");
    ASSERT_EQ(sent.status, 201);
    ASSERT_EQ(unsent.status, 201);
    const auto sent_id = sent.json()["id"].get<std::uint64_t>();
    const auto unsent_id = unsent.json()["id"].get<std::uint64_t>();
    auto ca = cl.connect(0, a.token, "dev1");
    client::FileRef ref;
    ref.set_file_id(sent_id);
    ASSERT_EQ(send_and_wait(*ca, file_send(*ca, b.id, 1, ref)).code(), client::ERROR_NONE);

    cl.rest().restart();
    EXPECT_EQ(download(cl.http(), b.token, sent_id).body, "kept content");
    EXPECT_EQ(download(cl.http(), a.token, unsent_id).status, 200);  // kept until files.orphan_ttl

    const auto dropped_sha = sha256_hex("dropped content");
    const fs::path blob =
        fs::path(cl.rest().files_dir()) / "objects" / dropped_sha.substr(0, 2) / dropped_sha;
    EXPECT_TRUE(
        eventually([&] { return download(cl.http(), a.token, unsent_id).status == 404; }, 15s));
    EXPECT_TRUE(eventually([&] { return !fs::exists(blob); }));
    EXPECT_EQ(download(cl.http(), b.token, sent_id).body, "kept content");
    EXPECT_EQ(download(cl.http(), a.token, sent_id).status, 200);
    // A swept file can no longer be sent.
    ref.set_file_id(unsent_id);
    EXPECT_EQ(send_and_wait(*ca, file_send(*ca, b.id, 2, ref)).code(), client::NOT_FOUND);
}

// Uploads stop before the disk is full (files.min_free_bytes) and at files.max_uploads at once.
TEST(FilesLimits, DiskReserveAndUploadsInFlight) {
    TestDatabase db;
    {
        RestServer rest(db, "im:t" + unique_suffix() + ":",
                        RestOptions{{"files.min_free_bytes=4611686018427387904"}, "files-reserve"});
        auto http = rest.client();
        auto a = register_and_login(*http, "disk_alice");
        auto r = upload(*http, a.token, "a.bin", std::string(1000, 'a'));
        EXPECT_EQ(r.status, 507) << r.body;
        EXPECT_EQ(r.json()["error"]["code"], "insufficient_storage");
        EXPECT_EQ(entries(fs::path(rest.files_dir()) / "tmp"), 0u);
        EXPECT_EQ(entries(fs::path(rest.files_dir()) / "objects"), 0u);
    }
    RestServer rest(db, "im:t" + unique_suffix() + ":",
                    RestOptions{{"files.max_uploads=1"}, "files-inflight"});
    auto http = rest.client();
    auto b = register_and_login(*http, "busy_bob");
    const fs::path tmp = fs::path(rest.files_dir()) / "tmp";
    {
        RawHttp slow(rest.port());
        slow.write("POST /v1/files?name=slow.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                   b.token + "\r\nContent-Length: 1000000\r\n\r\n" + std::string(1000, 's'));
        ASSERT_TRUE(eventually([&] { return entries(tmp) == 1; }));
        auto busy = upload(*http, b.token, "b.bin", "b");
        EXPECT_EQ(busy.status, 503) << busy.body;
        EXPECT_EQ(busy.header("retry-after"), "1");
        slow.close();
    }
    EXPECT_TRUE(eventually([&] { return upload(*http, b.token, "b.bin", "b").status == 201; }));
}

}  // namespace
}  // namespace im::test
