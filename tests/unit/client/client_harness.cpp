#include "client_harness.hpp"

#include <gtest/gtest.h>

namespace im::test {

void Recorder::attach(imclient::Client& c) {
    c.on_message([this](const imclient::Message& m) {
        if (before_message) before_message(m);
        {
            std::lock_guard lock(mu_);
            messages.push_back(m);
        }
        notify();
    });
    c.on_sent([this](const imclient::SendAck& a) {
        {
            std::lock_guard lock(mu_);
            acks.push_back(a);
        }
        notify();
    });
    c.on_send_failed([this](const imclient::SendFailure& f) {
        {
            std::lock_guard lock(mu_);
            failures.push_back(f);
        }
        notify();
    });
    c.on_state([this](imclient::State s, const std::string& detail) {
        {
            std::lock_guard lock(mu_);
            states.emplace_back(s, detail);
        }
        notify();
    });
    c.on_receipt([this](std::uint64_t conv, std::uint64_t user, imclient::ReceiptKind kind,
                        std::uint64_t seq) {
        {
            std::lock_guard lock(mu_);
            receipts.push_back({conv, user, kind, seq});
        }
        notify();
    });
    c.on_typing([this](std::uint64_t conv, std::uint64_t user) {
        {
            std::lock_guard lock(mu_);
            typing.emplace_back(conv, user);
        }
        notify();
    });
    c.on_presence([this](std::uint64_t user, bool online) {
        {
            std::lock_guard lock(mu_);
            presence.emplace_back(user, online);
        }
        notify();
    });
    c.on_member_receipt([this](const imclient::MemberReceiptEvent& e) {
        {
            std::lock_guard lock(mu_);
            member_receipts.push_back(e);
        }
        notify();
    });
}

void Recorder::notify() {
    cv_.notify_all();
}

bool Recorder::wait(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, pred);
}

std::size_t Recorder::message_count() {
    std::lock_guard lock(mu_);
    return messages.size();
}

std::size_t Recorder::ack_count() {
    std::lock_guard lock(mu_);
    return acks.size();
}

bool Recorder::saw_state(imclient::State s) {
    std::lock_guard lock(mu_);
    for (const auto& [st, d] : states) {
        if (st == s) return true;
    }
    return false;
}

imclient::Options test_options(const FakeConnector& fc) {
    imclient::Options o;
    o.connectors = {fc.address()};
    o.device_id = "test-device";
    o.connect_timeout = std::chrono::milliseconds(1000);
    o.request_timeout = std::chrono::milliseconds(3000);
    o.reconnect_min = std::chrono::milliseconds(50);
    o.reconnect_max = std::chrono::milliseconds(200);
    return o;
}

bool login(imclient::Client& client, const FakeConnector& fc, imclient::LoginInfo* info) {
    auto f = client.login_with_token("tok", 0, {fc.address()});
    if (f.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
        ADD_FAILURE() << "login timed out";
        return false;
    }
    try {
        auto i = f.get();
        if (info) *info = i;
    } catch (const std::exception& e) {
        ADD_FAILURE() << "login failed: " << e.what();
        return false;
    }
    return true;
}

std::string hex(const std::string& bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (const char c : bytes) {
        out.push_back(kDigits[static_cast<unsigned char>(c) >> 4]);
        out.push_back(kDigits[static_cast<unsigned char>(c) & 0xf]);
    }
    return out;
}

}  // namespace im::test
