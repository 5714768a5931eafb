#include "outbox.hpp"

#include <algorithm>

namespace imclient::detail {

void Outbox::add(OutMessage m) {
    m.stream_seq = 0;
    m.request_id = 0;
    const std::uint64_t key = m.stream_key();
    index_[m.client_msg_id] = key;
    streams_[key].queue.push_back(std::move(m));
}

void Outbox::restart_streams() {
    for (auto it = streams_.begin(); it != streams_.end();) {
        Stream& s = it->second;
        if (s.queue.empty()) {
            it = streams_.erase(it);
            continue;
        }
        s.next = 1;
        s.acked = 0;
        s.retry_at = {};
        s.failures = 0;
        s.window = 0;
        for (auto& m : s.queue) {
            m.stream_seq = 0;
            m.request_id = 0;
        }
        ++it;
    }
}

std::vector<OutMessage> Outbox::adopt(std::uint64_t user) {
    std::vector<OutMessage> others;
    for (auto& [peer, s] : streams_) {
        for (auto it = s.queue.begin(); it != s.queue.end();) {
            if (it->owner == 0) it->owner = user;
            if (it->owner == user) {
                ++it;
                continue;
            }
            index_.erase(it->client_msg_id);
            others.push_back(std::move(*it));
            it = s.queue.erase(it);
        }
    }
    return others;
}

std::vector<OutMessage> Outbox::pump(Clock::time_point now, const Transmit& transmit,
                                     std::size_t budget) {
    std::vector<OutMessage> refused;
    // What each stream could send now: its unsent messages, within its in-flight window.
    struct Ready {
        Stream* stream;
        std::size_t want = 0;
        std::size_t quota = 0;
    };
    std::vector<Ready> ready;
    std::size_t wanted = 0;
    for (auto& [peer, s] : streams_) {
        if (s.queue.empty() || now < s.retry_at) continue;
        std::size_t in_flight = 0;
        for (const auto& m : s.queue)
            in_flight += m.request_id != 0 ? 1 : 0;
        const std::size_t unsent = s.queue.size() - in_flight;
        const std::size_t cap = s.window != 0 ? std::min(s.window, config_.max_in_flight) : config_.max_in_flight;
        const std::size_t room = in_flight < cap ? cap - in_flight : 0;
        const std::size_t want = std::min(unsent, room);
        if (want == 0) continue;
        ready.push_back({&s, want, want});
        wanted += want;
    }
    if (ready.empty() || budget == 0) return refused;
    if (wanted > budget) {
        // Share the budget one message at a time, from a rotating start.
        for (auto& r : ready)
            r.quota = 0;
        const std::size_t start = rotation_++ % ready.size();
        for (std::size_t left = budget; left > 0;) {
            for (std::size_t k = 0; k < ready.size() && left > 0; ++k) {
                Ready& r = ready[(start + k) % ready.size()];
                if (r.quota < r.want) {
                    ++r.quota;
                    --left;
                }
            }
        }
    }
    for (auto& r : ready) {
        Stream& s = *r.stream;
        std::size_t sent = 0;
        for (std::size_t i = 0; i < s.queue.size() && sent < r.quota;) {
            OutMessage& m = s.queue[i];
            if (m.request_id != 0) {
                ++i;
                continue;
            }
            const bool fresh = m.stream_seq == 0;
            if (fresh) m.stream_seq = s.next;
            const std::uint64_t rid = transmit(m, s.acked);
            if (rid == 0) {
                if (fresh) m.stream_seq = 0;
                index_.erase(m.client_msg_id);
                refused.push_back(std::move(m));
                s.queue.erase(s.queue.begin() + static_cast<std::ptrdiff_t>(i));
                continue;
            }
            if (fresh) ++s.next;
            m.request_id = rid;
            m.deadline = now + config_.request_timeout;
            ++sent;
            ++i;
        }
    }
    return refused;
}

std::optional<OutMessage> Outbox::finish(std::string_view client_msg_id) {
    const auto idx = index_.find(std::string(client_msg_id));
    if (idx == index_.end()) return std::nullopt;
    Stream& s = streams_[idx->second];
    index_.erase(idx);
    const auto it = std::find_if(s.queue.begin(), s.queue.end(), [&](const OutMessage& m) {
        return m.client_msg_id == client_msg_id;
    });
    if (it == s.queue.end()) return std::nullopt;  // impossible: index and queues agree
    OutMessage m = std::move(*it);
    s.queue.erase(it);
    if (m.stream_seq != 0) s.acked = std::max(s.acked, m.stream_seq);
    s.failures = 0;
    if (s.window != 0) s.window = s.window * 2 >= config_.max_in_flight ? 0 : s.window * 2;
    return m;
}

bool Outbox::retry(std::string_view client_msg_id, std::uint64_t request_id, bool out_of_order,
                   std::uint64_t expected_stream_seq, Clock::time_point now,
                   std::optional<std::chrono::milliseconds> rate_limited) {
    const auto idx = index_.find(std::string(client_msg_id));
    if (idx == index_.end()) return false;
    Stream& s = streams_[idx->second];
    const auto it = std::find_if(s.queue.begin(), s.queue.end(), [&](const OutMessage& m) {
        return m.client_msg_id == client_msg_id;
    });
    if (it == s.queue.end() || it->request_id == 0 || it->request_id != request_id) return false;

    // Every attempt in flight on this stream is now stale: the stream goes again, in order.
    for (auto& m : s.queue)
        m.request_id = 0;
    ++s.failures;
    if (out_of_order && expected_stream_seq > s.acked && !s.queue.empty() &&
        s.queue.front().stream_seq != 0 && s.queue.front().stream_seq != expected_stream_seq) {
        // The server consumed (or never saw) other numbers than we think: continue from the one it
        // expects, keeping the order. Dedupe on client_msg_id makes a renumbered resend harmless.
        std::uint64_t n = expected_stream_seq;
        for (auto& m : s.queue) {
            if (m.stream_seq != 0) m.stream_seq = n++;
        }
        s.next = n;
    }
    // OUT_OF_ORDER goes again at once, unless it keeps coming back (then it backs off too).
    const bool immediate = out_of_order && s.failures <= 3;
    s.retry_at = immediate ? now : now + backoff(s.failures);
    if (rate_limited) {
        s.retry_at = std::max(s.retry_at, now + *rate_limited);
        s.window = 1;
    }
    return true;
}

void Outbox::expire(Clock::time_point now) {
    for (auto& [peer, s] : streams_) {
        for (const auto& m : s.queue) {
            if (m.request_id != 0 && m.deadline <= now) {
                const std::string id = m.client_msg_id;
                retry(id, m.request_id, false, 0, now);
                break;  // the whole stream was reset
            }
        }
    }
}

bool Outbox::contains(std::string_view client_msg_id) const {
    return index_.find(std::string(client_msg_id)) != index_.end();
}

std::optional<std::string> Outbox::message_of_request(std::uint64_t request_id) const {
    if (request_id == 0) return std::nullopt;
    for (const auto& [peer, s] : streams_) {
        for (const auto& m : s.queue) {
            if (m.request_id == request_id) return m.client_msg_id;
        }
    }
    return std::nullopt;
}

std::uint64_t Outbox::stream_acked(std::uint64_t stream_key) const {
    const auto it = streams_.find(stream_key);
    return it == streams_.end() ? 0 : it->second.acked;
}

std::chrono::milliseconds Outbox::backoff(unsigned failures) const {
    auto d = config_.retry_min;
    for (unsigned i = 1; i < failures && d < config_.retry_max; ++i)
        d *= 2;
    return std::min(d, config_.retry_max);
}

}  // namespace imclient::detail
