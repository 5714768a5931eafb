#pragma once
// Test helpers around imclient::Client: every event a client reported, recorded under a lock so
// a test can wait on predicates over them; an App that keeps the events alive as long as its
// Client; and await() for futures that must not hang a test.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "imclient/imclient.hpp"

namespace im::test {

using namespace std::chrono_literals;
using imclient::ReceiptKind;
using imclient::State;

struct ReceiptSeen {
    std::uint64_t conversation_id = 0;
    std::uint64_t user_id = 0;
    ReceiptKind kind = ReceiptKind::delivered;
    std::uint64_t up_to_seq = 0;
};

// Everything a Client reported, recorded under a lock; tests wait on predicates over it.
class Events {
public:
    void attach(imclient::Client& c) {
        c.on_message([this](const imclient::Message& m) {
            record([&] { messages.push_back(m); });
            if (after_message) after_message(m);  // on the client thread, after recording
        });
        c.on_sent([this](const imclient::SendAck& a) { record([&] { acks.push_back(a); }); });
        c.on_send_failed([this](const imclient::SendFailure& f) { record([&] { failures.push_back(f); }); });
        c.on_receipt([this](std::uint64_t conv, std::uint64_t user, ReceiptKind kind, std::uint64_t up_to) {
            record([&] { receipts.push_back({conv, user, kind, up_to}); });
        });
        c.on_state([this](State s, const std::string& detail) { record([&] { states.emplace_back(s, detail); }); });
        c.on_typing([this](std::uint64_t conv, std::uint64_t user) { record([&] { typing.emplace_back(conv, user); }); });
        c.on_presence([this](std::uint64_t user, bool online) { record([&] { presence.emplace_back(user, online); }); });
    }

    // Waits until pred() holds (evaluated under the lock).
    bool wait(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 30s) {
        std::unique_lock lock(mu_);
        return cv_.wait_for(lock, timeout, pred);
    }
    template <class F>
    auto locked(F&& f) {
        std::lock_guard lock(mu_);
        return f();
    }

    std::size_t message_count() {
        return locked([&] { return messages.size(); });
    }
    std::size_t ack_count() {
        return locked([&] { return acks.size(); });
    }
    std::vector<std::uint64_t> message_seqs() {
        return locked([&] {
            std::vector<std::uint64_t> out;
            for (const auto& m : messages) out.push_back(m.seq);
            return out;
        });
    }
    // The highest watermark of `kind` reported for `user` in `conv`. Without the lock: for wait()
    // predicates (which run under it) and locked() blocks.
    std::uint64_t receipt_unlocked(std::uint64_t conv, std::uint64_t user, ReceiptKind kind) const {
        std::uint64_t best = 0;
        for (const auto& r : receipts) {
            if (r.conversation_id == conv && r.user_id == user && r.kind == kind) best = std::max(best, r.up_to_seq);
        }
        return best;
    }

    // Written only by the client thread (under the lock); read by the test under the lock.
    std::vector<imclient::Message> messages;
    std::vector<imclient::SendAck> acks;
    std::vector<imclient::SendFailure> failures;
    std::vector<ReceiptSeen> receipts;
    std::vector<std::pair<State, std::string>> states;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> typing;  // (conversation, user)
    std::vector<std::pair<std::uint64_t, bool>> presence;        // (user, online)
    std::function<void(const imclient::Message&)> after_message;  // set before login

private:
    template <class F>
    void record(F&& f) {
        {
            std::lock_guard lock(mu_);
            f();
        }
        cv_.notify_all();
    }
    std::mutex mu_;
    std::condition_variable cv_;
};

// One app: the events outlive the Client (its callbacks use them until its destructor returns).
struct App {
    Events ev;
    std::unique_ptr<imclient::Client> client;
    imclient::LoginInfo info;
    ~App() { client.reset(); }
    imclient::Client& operator*() { return *client; }
    imclient::Client* operator->() { return client.get(); }
};

// A future's value, or an exception when it is not ready in time (a hang must fail, not block).
template <class T>
T await(std::future<T> f, std::chrono::milliseconds timeout = 30s) {
    if (f.wait_for(timeout) != std::future_status::ready) throw std::runtime_error("imclient future timed out");
    return f.get();
}

}  // namespace im::test
