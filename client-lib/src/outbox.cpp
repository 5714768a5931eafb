#include "outbox.hpp"

#include <algorithm>

namespace imclient::detail {

void Outbox::add(OutMessage m) {
    m.stream_seq = 0;
    m.request_id = 0;
    index_[m.client_msg_id] = m.peer;
    streams_[m.peer].queue.push_back(std::move(m));
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
        for (auto& m : s.queue) {
            m.stream_seq = 0;
            m.request_id = 0;
        }
        ++it;
    }
}

std::vector<OutMessage> Outbox::pump(Clock::time_point now, const Transmit& transmit) {
    std::vector<OutMessage> refused;
    for (auto& [peer, s] : streams_) {
        if (s.queue.empty() || now < s.retry_at) continue;
        std::size_t in_flight = 0;
        for (auto it = s.queue.begin(); it != s.queue.end();) {
            if (it->request_id != 0) {
                ++in_flight;
                ++it;
                continue;
            }
            if (in_flight >= config_.max_in_flight) break;
            const bool fresh = it->stream_seq == 0;
            if (fresh) it->stream_seq = s.next;
            const std::uint64_t rid = transmit(*it, s.acked);
            if (rid == 0) {
                if (fresh) it->stream_seq = 0;
                index_.erase(it->client_msg_id);
                refused.push_back(std::move(*it));
                it = s.queue.erase(it);
                continue;
            }
            if (fresh) ++s.next;
            it->request_id = rid;
            it->deadline = now + config_.request_timeout;
            ++in_flight;
            ++it;
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
    return m;
}

bool Outbox::retry(std::string_view client_msg_id, std::uint64_t request_id, bool out_of_order,
                   std::uint64_t expected_stream_seq, Clock::time_point now) {
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

std::uint64_t Outbox::stream_acked(std::uint64_t peer) const {
    const auto it = streams_.find(peer);
    return it == streams_.end() ? 0 : it->second.acked;
}

std::chrono::milliseconds Outbox::backoff(unsigned failures) const {
    auto d = config_.retry_min;
    for (unsigned i = 1; i < failures && d < config_.retry_max; ++i)
        d *= 2;
    return std::min(d, config_.retry_max);
}

}  // namespace imclient::detail
