#include "abuse_limits.hpp"

#include <cstring>
#include <random>
#include <string>

namespace im::connector {

Metered metered_kind(client::Envelope::BodyCase body) noexcept {
    switch (body) {
        case client::Envelope::kSend: return Metered::messages;
        case client::Envelope::kReceipt: return Metered::receipts;
        case client::Envelope::kTyping: return Metered::typing;
        default: return Metered::none;
    }
}

TokenBucket& FrameBuckets::of(Metered kind) noexcept {
    switch (kind) {
        case Metered::receipts: return receipts;
        case Metered::typing: return typing;
        default: return messages;
    }
}

const char* Refusal::name() const noexcept {
    static constexpr const char* kNames[2][3] = {
        {"session_messages", "session_receipts", "session_typing"},
        {"user_messages", "user_receipts", "user_typing"},
    };
    if (scope == Scope::none || kind == Metered::none) return "none";
    return kNames[scope == Scope::user ? 1 : 0][static_cast<int>(kind)];
}

namespace {
const RateLimit& limit_of(const AbuseLimits& l, bool user, Metered kind) {
    switch (kind) {
        case Metered::receipts: return user ? l.user_receipts : l.session_receipts;
        case Metered::typing: return user ? l.user_typing : l.session_typing;
        default: return user ? l.user_messages : l.session_messages;
    }
}
}  // namespace

Refusal admit_frame(const AbuseLimits& limits, FrameBuckets& session, FrameBuckets* user, Metered kind,
              std::int64_t now_ms) {
    Refusal r;
    if (kind == Metered::none) return r;
    r.kind = kind;
    if (!session.of(kind).take(limit_of(limits, false, kind), now_ms, &r.retry_after_ms)) {
        r.scope = Refusal::Scope::session;
        return r;
    }
    if (user != nullptr && !user->of(kind).take(limit_of(limits, true, kind), now_ms, &r.retry_after_ms)) {
        r.scope = Refusal::Scope::user;
    }
    return r;
}

client::Envelope refusal_answer(const client::Envelope& request, const Refusal& r) {
    client::Envelope out;
    out.set_request_id(request.request_id());
    const std::string why = std::string("rate limit (") + r.name() + "): retry in " +
                            std::to_string(r.retry_after_ms) + " ms";
    if (request.has_send()) {
        auto* s = out.mutable_send_result();
        s->set_code(client::RATE_LIMITED);
        s->set_retryable(true);
        s->set_client_msg_id(request.send().client_msg_id());
        s->set_retry_after_ms(r.retry_after_ms);
        s->set_message(why);
        return out;
    }
    auto* e = out.mutable_error();
    e->set_code(client::RATE_LIMITED);
    e->set_retry_after_ms(r.retry_after_ms);
    // A receipt is a watermark the client resends; a typing indicator is not worth resending.
    e->set_retryable(!request.has_typing());
    e->set_message(request.has_typing() ? why + " (typing indicator dropped)" : why);
    return out;
}

AddressCounter::Key AddressCounter::key_of(const boost::asio::ip::address& a) {
    const auto v6 = a.is_v4() ? boost::asio::ip::make_address_v6(boost::asio::ip::v4_mapped, a.to_v4()) : a.to_v6();
    return v6.to_bytes();
}

bool AddressCounter::try_add(const Key& key, std::uint32_t max) {
    auto& n = counts_[key];
    if (max != 0 && n >= max) return false;  // n >= 1: the entry existed
    ++n;
    return true;
}

void AddressCounter::remove(const Key& key) {
    auto it = counts_.find(key);
    if (it == counts_.end()) return;
    if (--it->second == 0) counts_.erase(it);
}

std::uint32_t AddressCounter::count(const Key& key) const {
    auto it = counts_.find(key);
    return it == counts_.end() ? 0 : it->second;
}

std::size_t AddressCounter::Hash::operator()(const Key& k) const noexcept {
    std::uint64_t a = 0, b = 0;
    std::memcpy(&a, k.data(), 8);
    std::memcpy(&b, k.data() + 8, 8);
    auto mix = [](std::uint64_t x) {  // splitmix64 finalizer
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9ull;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebull;
        return x ^ (x >> 31);
    };
    return static_cast<std::size_t>(mix(a ^ seed) ^ mix(b + seed * 0x9e3779b97f4a7c15ull));
}

std::uint64_t AddressCounter::seed() {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) | rd();
}

}  // namespace im::connector
