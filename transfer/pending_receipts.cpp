#include "pending_receipts.hpp"

#include <algorithm>

namespace im::transfer {

void PendingReceipts::merge(ReceiptJob& into, ReceiptJob&& from) {
    if (from.receipt.up_to_seq() > into.receipt.up_to_seq()) into = std::move(from);
}

bool PendingReceipts::add(ReceiptJob job, bool room) {
    const Key k = key_of(job);
    if (auto it = by_key_.find(k); it != by_key_.end()) {
        merge(it->second, std::move(job));
        return true;
    }
    if (!room) return false;
    by_key_.emplace(k, std::move(job));
    order_.push_back(k);
    return true;
}

std::vector<ReceiptJob> PendingReceipts::take(std::size_t max) {
    std::vector<ReceiptJob> out;
    out.reserve(std::min(max, order_.size()));
    while (out.size() < max && !order_.empty()) {
        auto node = by_key_.extract(order_.front());
        order_.pop_front();
        out.push_back(std::move(node.mapped()));
    }
    return out;
}

void PendingReceipts::put_back(std::vector<ReceiptJob> jobs) {
    for (auto it = jobs.rbegin(); it != jobs.rend(); ++it) {  // the oldest ends up first
        const Key k = key_of(*it);
        if (auto found = by_key_.find(k); found != by_key_.end()) {
            merge(found->second, std::move(*it));
            continue;
        }
        by_key_.emplace(k, std::move(*it));
        order_.push_front(k);
    }
}

}  // namespace im::transfer
