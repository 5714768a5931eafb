// TransferGateway::call against fake transfers on loopback threads: the answer is the
// ClientResponse with the request's request_id (pushes and other responses before it skipped), a
// Bounce moves on to the next transfer, and a silent owner ends within the gateway timeout.
#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <functional>
#include <thread>

#include "im/proto/internal.pb.h"
#include "im/server/link_auth.hpp"
#include "im/wire/frame_codec.hpp"
#include "transfer_gateway.hpp"

namespace im::rest {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

const std::string kSecret = "0123456789abcdef0123456789abcdef";

// One fake transfer: accepts one link, answers the Hello (owning every shard), reads the
// ClientRequest and hands it to `script`, which writes what the test wants.
class FakeTransfer {
  public:
    using Script = std::function<void(FakeTransfer&, const internal::ClientRequest&)>;
    explicit FakeTransfer(std::string id, Script script)
        : id_(std::move(id)),
          acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
          socket_(io_) {
        thread_ = std::thread([this, s = std::move(script)] {
            try {
                acceptor_.accept(socket_);
                const auto hello = read();
                internal::LinkEnvelope ack;
                auto* a = ack.mutable_hello_ack();
                a->set_transfer_id(id_);
                a->set_transfer_epoch(1);
                a->set_shard_count(1024);
                auto* r = a->add_owned();
                r->set_first(0);
                r->set_last(1023);
                a->set_auth_mac(link_auth::ack_mac(kSecret, id_, 1, hello.hello().auth_nonce()));
                write(ack);
                const auto req = read();
                if (req.has_client_request()) s(*this, req.client_request());
                // Hold the link until the gateway closes it.
                char c;
                boost::system::error_code ec;
                asio::read(socket_, asio::buffer(&c, 1), ec);
            } catch (const std::exception&) {
            }
        });
    }
    ~FakeTransfer() {
        boost::system::error_code ec;
        socket_.shutdown(tcp::socket::shutdown_both, ec);
        acceptor_.close(ec);
        thread_.join();
    }
    TransferAddress address() const {
        return {id_, "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port())};
    }
    void write(const internal::LinkEnvelope& env) {
        asio::write(socket_, asio::buffer(wire::encode_frame(env)));
    }
    void respond(std::uint64_t request_id, std::uint64_t seq) {
        internal::LinkEnvelope f;
        f.mutable_client_response()->mutable_response()->set_request_id(request_id);
        f.mutable_client_response()->mutable_response()->mutable_group_change_result()->set_seq(
            seq);
        write(f);
    }

  private:
    internal::LinkEnvelope read() {
        char header[wire::kHeaderBytes];
        asio::read(socket_, asio::buffer(header));
        std::string body(wire::read_header(header), '\0');
        asio::read(socket_, asio::buffer(body));
        internal::LinkEnvelope env;
        env.ParseFromString(body);
        return env;
    }
    std::string id_;
    asio::io_context io_;
    tcp::acceptor acceptor_;
    tcp::socket socket_;
    std::thread thread_;
};

client::Envelope group_change(std::uint64_t request_id) {
    client::Envelope e;
    e.set_request_id(request_id);
    e.mutable_group_change()->set_group_id(17);
    e.mutable_group_change()->set_kind(client::GROUP_RENAMED);
    return e;
}

TEST(TransferGatewayCall, AnswersTheResponseWithTheRequestsIdSkippingOtherFrames) {
    std::uint64_t seen_user = 0;
    FakeTransfer t("t1", [&](FakeTransfer& self, const internal::ClientRequest& req) {
        seen_user = req.session().user_id();
        internal::LinkEnvelope push;
        push.mutable_push()->add_user_ids(9);
        push.mutable_push()->set_frame("x");
        self.write(push);
        self.respond(req.request().request_id() + 1, 111);  // another request's answer
        internal::LinkEnvelope pong;
        pong.mutable_pong()->set_time_ms(1);
        self.write(pong);
        self.respond(req.request().request_id(), 42);
    });
    TransferGateway gw(2000ms, kSecret);
    std::string detail;
    const auto answer = gw.call({t.address()}, 7, 17, group_change(555), detail);
    ASSERT_TRUE(answer.has_value()) << detail;
    EXPECT_EQ(answer->request_id(), 555u);
    EXPECT_EQ(answer->group_change_result().seq(), 42u);
    EXPECT_EQ(seen_user, 7u);
}

TEST(TransferGatewayCall, ABounceTriesTheNextTransfer) {
    FakeTransfer moved("t1", [](FakeTransfer& self, const internal::ClientRequest& req) {
        internal::LinkEnvelope b;
        *b.mutable_bounce()->mutable_request() = req;
        self.write(b);
    });
    FakeTransfer owner("t2", [](FakeTransfer& self, const internal::ClientRequest& req) {
        self.respond(req.request().request_id(), 5);
    });
    TransferGateway gw(2000ms, kSecret);
    std::string detail;
    const auto answer = gw.call({moved.address(), owner.address()}, 7, 17, group_change(9), detail);
    ASSERT_TRUE(answer.has_value()) << detail;
    EXPECT_EQ(answer->group_change_result().seq(), 5u);
}

TEST(TransferGatewayCall, ASilentOwnerEndsWithinTheTimeout) {
    FakeTransfer silent("t1", [](FakeTransfer& self, const internal::ClientRequest&) {
        // Frames that are not the answer keep coming, slower than the timeout allows in total.
        for (int i = 0; i < 8; ++i) {
            internal::LinkEnvelope pong;
            pong.mutable_pong()->set_time_ms(i);
            self.write(pong);
            std::this_thread::sleep_for(100ms);
        }
    });
    TransferGateway gw(300ms, kSecret);
    std::string detail;
    const auto t0 = std::chrono::steady_clock::now();
    // One transfer, two passes: at most two exchanges of 300 ms each.
    const auto answer = gw.call({silent.address()}, 7, 17, group_change(9), detail);
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_FALSE(answer.has_value());
    EXPECT_FALSE(detail.empty());
    EXPECT_LT(took, 1500ms) << "the gateway timeout bounds the whole exchange";
}

}  // namespace
}  // namespace im::rest
