// KickSubscriber: SUBSCRIBE <prefix>kick on a dedicated hiredis connection and thread. The loop
// polls the socket together with a wake-up pipe, so stop() interrupts it at once (also during a
// backoff wait), and it PINGs the server after `kPingEvery` of silence: a peer that does not
// answer within the command timeout (at least kMinPongWait) is treated as gone.

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "im/user_status/user_status.hpp"

namespace im::user_status {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kPingEvery{5000};
constexpr milliseconds kMinPongWait{1000};
constexpr milliseconds kFirstBackoff{100};
constexpr milliseconds kMaxBackoff{5000};

struct ContextDeleter {
    void operator()(redisContext* c) const noexcept { redisFree(c); }
};
using Context = std::unique_ptr<redisContext, ContextDeleter>;

timeval to_timeval(milliseconds d) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(d.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((d.count() % 1000) * 1000);
    return tv;
}

std::string error_of(const redisContext* c) {
    return c != nullptr && c->errstr[0] != '\0' ? c->errstr : "error";
}

std::string_view element(const redisReply* r, std::size_t i) {
    if (r->type != REDIS_REPLY_ARRAY || i >= r->elements) return {};
    const auto* e = r->element[i];
    if (e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_STATUS) return {};
    return {e->str, e->len};
}

int poll_ms(Clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, 60'000));
}

}  // namespace

struct ChannelSubscriber::Impl {
    redis::RedisConfig config;
    std::vector<std::string> channels;
    std::function<void(std::string_view, std::string_view)> on_message;
    std::thread thread;
    std::mutex lifecycle;  // start/stop
    std::atomic<bool> stopping{false};
    std::atomic<bool> connected{false};
    int wake[2] = {-1, -1};

    void run();
    // One connection's life: returns when it broke or on stop; true if it got subscribed.
    bool session();
    void handle(const redisReply* r);
    // Sleeps up to `d`; false when woken by stop().
    bool sleep(milliseconds d);
    bool stop_requested() const { return stopping.load(std::memory_order_acquire); }
};

ChannelSubscriber::ChannelSubscriber(redis::RedisConfig config, std::vector<std::string> channels,
                                     std::function<void(std::string_view, std::string_view)> on_message)
    : impl_(std::make_unique<Impl>()) {
    impl_->channels = std::move(channels);
    impl_->config = std::move(config);
    impl_->on_message = std::move(on_message);
    if (::pipe2(impl_->wake, O_CLOEXEC | O_NONBLOCK) != 0)
        throw std::runtime_error("subscriber: pipe2 failed");
}

ChannelSubscriber::~ChannelSubscriber() {
    stop();
    ::close(impl_->wake[0]);
    ::close(impl_->wake[1]);
}

void ChannelSubscriber::start() {
    std::lock_guard lock(impl_->lifecycle);
    if (impl_->thread.joinable()) return;
    char buf[64];
    while (::read(impl_->wake[0], buf, sizeof buf) > 0) {
    }
    impl_->stopping.store(false, std::memory_order_release);
    impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
}

void ChannelSubscriber::stop() {
    std::lock_guard lock(impl_->lifecycle);
    if (!impl_->thread.joinable()) return;
    impl_->stopping.store(true, std::memory_order_release);
    const char byte = 1;
    [[maybe_unused]] const auto n = ::write(impl_->wake[1], &byte, 1);
    impl_->thread.join();
    impl_->connected.store(false);
}

bool ChannelSubscriber::connected() const {
    return impl_->connected.load();
}

bool ChannelSubscriber::Impl::sleep(milliseconds d) {
    pollfd p{wake[0], POLLIN, 0};
    const auto deadline = Clock::now() + d;
    while (!stop_requested()) {
        const int n = ::poll(&p, 1, poll_ms(deadline));
        if (n == 0 && Clock::now() >= deadline) return true;
        if (n < 0 && errno != EINTR) return !stop_requested();
    }
    return false;
}

void ChannelSubscriber::Impl::run() {
    std::minstd_rand rng(static_cast<std::uint32_t>(Clock::now().time_since_epoch().count()));
    auto backoff = kFirstBackoff;
    while (!stop_requested()) {
        if (session()) backoff = kFirstBackoff;
        connected.store(false);
        if (stop_requested()) break;
        // Jitter (50-100%) so that many subscribers do not reconnect in lockstep.
        const auto wait = milliseconds(
            backoff.count() / 2 +
            static_cast<long long>(rng() % static_cast<std::uint32_t>(backoff.count() / 2 + 1)));
        if (!sleep(wait)) break;
        backoff = std::min(backoff * 2, kMaxBackoff);
    }
}

bool ChannelSubscriber::Impl::session() {
    const auto where = config.host + ":" + std::to_string(config.port);
    Context c(redisConnectWithTimeout(config.host.c_str(), config.port,
                                      to_timeval(config.connect_timeout)));
    if (!c || c->err != 0) {
        spdlog::debug("subscriber: connect to {} failed: {}", where, error_of(c.get()));
        return false;
    }
    redisSetTimeout(c.get(), to_timeval(config.command_timeout));
    redisEnableKeepAlive(c.get());
    const auto call = [&](std::vector<std::string_view> args) -> bool {
        std::vector<const char*> argv;
        std::vector<std::size_t> lens;
        for (auto a : args) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }
        redis::Reply r(static_cast<redisReply*>(
            redisCommandArgv(c.get(), static_cast<int>(argv.size()), argv.data(), lens.data())));
        if (!r || r->type == REDIS_REPLY_ERROR) {
            spdlog::warn("subscriber: {} on {} failed: {}", args[0], where,
                         r ? std::string(r->str, r->len) : error_of(c.get()));
            return false;
        }
        return true;
    };
    if (!config.password.empty() && !call({"AUTH", config.password})) return false;
    std::vector<std::string_view> sub{"SUBSCRIBE"};
    for (const auto& ch : channels) sub.push_back(ch);
    if (!call(sub)) return false;
    connected.store(true);
    spdlog::info("subscriber: subscribed to {} channel(s) on {}", channels.size(), where);

    const auto pong_wait = std::max(config.command_timeout, kMinPongWait);
    auto last_heard = Clock::now();
    bool ping_sent = false;
    while (!stop_requested()) {
        // Every reply already buffered first (one read may hold many messages).
        for (;;) {
            void* raw = nullptr;
            if (redisGetReplyFromReader(c.get(), &raw) != REDIS_OK) {
                spdlog::warn("subscriber: protocol error from {}: {}", where,
                             error_of(c.get()));
                return true;
            }
            if (raw == nullptr) break;
            redis::Reply r(static_cast<redisReply*>(raw));
            last_heard = Clock::now();
            ping_sent = false;
            handle(r.get());
        }
        const auto deadline =
            ping_sent ? last_heard + kPingEvery + pong_wait : last_heard + kPingEvery;
        pollfd fds[2] = {{c->fd, POLLIN, 0}, {wake[0], POLLIN, 0}};
        const int n = ::poll(fds, 2, poll_ms(deadline));
        if (stop_requested()) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            spdlog::warn("subscriber: poll failed: {}", std::strerror(errno));
            return true;
        }
        if (n == 0) {
            if (Clock::now() < deadline) continue;
            if (ping_sent) {
                spdlog::warn("subscriber: {} did not answer a ping; reconnecting", where);
                return true;
            }
            int done = 0;
            redisAppendCommand(c.get(), "PING");
            while (done == 0) {
                if (redisBufferWrite(c.get(), &done) != REDIS_OK) {
                    spdlog::warn("subscriber: ping to {} failed: {}", where,
                                 error_of(c.get()));
                    return true;
                }
            }
            ping_sent = true;
            continue;
        }
        if (fds[0].revents != 0 && redisBufferRead(c.get()) != REDIS_OK) {
            spdlog::warn("subscriber: lost {}: {}; reconnecting", where, error_of(c.get()));
            return true;
        }
    }
    return true;
}

void ChannelSubscriber::Impl::handle(const redisReply* r) {
    if (element(r, 0) != "message") return;  // subscribe confirmations, pongs
    try {
        on_message(element(r, 1), element(r, 2));
    } catch (const std::exception& e) {
        spdlog::error("subscriber: message handler failed: {}", e.what());
    }
}

KickSubscriber::KickSubscriber(redis::RedisConfig config, std::function<void(const KickRequest&)> on_kick)
    : channel_(config.key_prefix + "kick"),
      subscriber_(std::move(config), {channel_}, [on_kick = std::move(on_kick)](std::string_view, std::string_view payload) {
          auto kick = UserStatus::parse_kick(payload);
          if (!kick) {
              spdlog::warn("kick subscriber: ignoring a malformed message ({} bytes)", payload.size());
              return;
          }
          on_kick(*kick);
      }) {}

KickSubscriber::~KickSubscriber() = default;
void KickSubscriber::start() { subscriber_.start(); }
void KickSubscriber::stop() { subscriber_.stop(); }
bool KickSubscriber::connected() const { return subscriber_.connected(); }

}  // namespace im::user_status
