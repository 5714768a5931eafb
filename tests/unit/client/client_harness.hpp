#pragma once
// What the client tests share: callback recorders and a client wired to a FakeConnector.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "fake_connector.hpp"
#include "imclient/client.hpp"

namespace im::test {

struct ReceiptSeen {
    std::uint64_t conversation_id;
    std::uint64_t user_id;
    imclient::ReceiptKind kind;
    std::uint64_t up_to_seq;
};

class Recorder {
  public:
    void attach(imclient::Client& c);

    bool wait(const std::function<bool()>& pred,
              std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
    template <class F>
    auto locked(F&& f) {
        std::lock_guard lock(mu_);
        return f();
    }

    std::vector<imclient::Message> messages;
    std::vector<imclient::SendAck> acks;
    std::vector<imclient::SendFailure> failures;
    std::vector<std::pair<imclient::State, std::string>> states;
    std::vector<ReceiptSeen> receipts;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> typing;
    std::vector<std::pair<std::uint64_t, bool>> presence;
    std::vector<imclient::MemberReceiptEvent> member_receipts;
    std::function<void(const imclient::Message&)> before_message;  // runs outside the lock

    std::size_t message_count();
    std::size_t ack_count();
    bool saw_state(imclient::State s);

  private:
    void notify();
    std::mutex mu_;
    std::condition_variable cv_;
};

imclient::Options test_options(const FakeConnector& fc);

// login_with_token against the fake connector; fails the test (returns false) on a timeout.
bool login(imclient::Client& client, const FakeConnector& fc, imclient::LoginInfo* info = nullptr);

std::string hex(const std::string& bytes);

}  // namespace im::test
