#pragma once
// Chat traffic for integration tests: pairs of imclient users on a real Cluster sending to each
// other in the background, and the delivery-contract checks at the end (every message SENT once,
// delivered once, in order, stored once). Uses only the Cluster's basic API.

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cluster.hpp"
#include "im/wire/ids.hpp"
#include "imclient_app.hpp"

namespace im::test {

// Pairs of imclient users sending to each other on every connector, with the checks the delivery
// contract asks for at the end.
class Traffic {
public:
    // `connectors`: how many of the cluster's connectors the clients use (in turn).
    Traffic(Cluster& cl, int pairs, int connectors = 2) : cl_(cl), connectors_(connectors) {
        for (int p = 0; p < pairs; ++p) {
            auto a = cl.user("s" + std::to_string(p));
            auto b = cl.user("r" + std::to_string(p));
            cl.befriend(a, b);
            users_.push_back({a, b});
        }
        for (std::size_t p = 0; p < users_.size(); ++p) {
            senders_.push_back(open(users_[p].first, static_cast<int>(p)));
            receivers_.push_back(open(users_[p].second, static_cast<int>(p + 1)));
        }
    }

    // Every pair sends `n` messages, one every `gap`, in a thread per pair (returns at once).
    void start(int n, std::chrono::milliseconds gap) {
        per_pair_ = n;
        for (std::size_t p = 0; p < users_.size(); ++p) {
            threads_.emplace_back([this, p, n, gap] {
                for (int i = 0; i < n && !abort_; ++i) {
                    (*senders_[p])->send_text(users_[p].second.id, "m" + std::to_string(i));
                    std::this_thread::sleep_for(gap);
                }
            });
        }
    }
    void join() {
        for (auto& t : threads_) t.join();
        threads_.clear();
    }
    ~Traffic() {
        abort_ = true;
        join();
    }

    // Waits for every message to be SENT and delivered; then checks the contract. Returns a summary.
    void expect_all_delivered(std::chrono::seconds timeout) {
        join();
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (std::size_t p = 0; p < users_.size(); ++p) {
            auto& s = *senders_[p];
            auto& r = *receivers_[p];
            const auto left = [&] { return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()); };
            EXPECT_TRUE(s.ev.wait([&] { return s.ev.acks.size() + s.ev.failures.size() >= static_cast<std::size_t>(per_pair_); }, left()))
                << "pair " << p << ": " << s.ev.ack_count() << " of " << per_pair_ << " SENT";
            EXPECT_TRUE(r.ev.wait([&] { return r.ev.messages.size() >= static_cast<std::size_t>(per_pair_); }, left()))
                << "pair " << p << ": " << r.ev.message_count() << " of " << per_pair_ << " delivered";
        }
        std::this_thread::sleep_for(300ms);  // a late duplicate would show now
        for (std::size_t p = 0; p < users_.size(); ++p) {
            auto& s = *senders_[p];
            auto& r = *receivers_[p];
            const auto conv = conversation_id(users_[p].first.id, users_[p].second.id);
            s.ev.locked([&] { EXPECT_TRUE(s.ev.failures.empty()) << "pair " << p << ": a send failed for good"; });
            r.ev.locked([&] {
                ASSERT_EQ(r.ev.messages.size(), static_cast<std::size_t>(per_pair_)) << "pair " << p;
                for (std::size_t i = 0; i < r.ev.messages.size(); ++i) {
                    EXPECT_EQ(r.ev.messages[i].seq, i + 1) << "pair " << p;
                    EXPECT_EQ(r.ev.messages[i].text, "m" + std::to_string(i)) << "pair " << p << " (order)";
                }
            });
            EXPECT_EQ(cl_.stored_messages(conv), static_cast<std::uint64_t>(per_pair_)) << "pair " << p << " (stored once)";
        }
    }

private:
    std::unique_ptr<App> open(const TestUser& u, int first_connector) {
        imclient::Options o;
        o.rest_url = "http://127.0.0.1:" + std::to_string(cl_.rest().port());
        const int n = connectors_;
        for (int k = 0; k < n; ++k) o.connectors.push_back("127.0.0.1:" + std::to_string(cl_.connector_port((first_connector + k) % n)));
        o.device_id = "dev";
        auto app = std::make_unique<App>();
        app->client = std::make_unique<imclient::Client>(o);
        app->ev.attach(*app->client);
        app->info = await(app->client->login(u.username, u.password));
        return app;
    }

    Cluster& cl_;
    int connectors_ = 2;
    std::vector<std::pair<TestUser, TestUser>> users_;
    std::vector<std::unique_ptr<App>> senders_, receivers_;
    std::vector<std::thread> threads_;
    std::atomic<bool> abort_{false};
    int per_pair_ = 0;
};

}  // namespace im::test
