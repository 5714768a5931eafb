#include "im/server/sql_batch.hpp"

namespace im::sql_batch {

std::string placeholders(std::size_t n) {
    std::string s;
    s.reserve(n * 2);
    for (std::size_t i = 0; i < n; ++i) s += i == 0 ? "?" : ",?";
    return s;
}

std::string values_statement(const std::string& head, std::size_t columns, std::size_t rows, const std::string& tail) {
    const std::string row = "(" + placeholders(columns) + ")";
    std::string s = head;
    s.reserve(head.size() + rows * (row.size() + 1) + tail.size());
    for (std::size_t i = 0; i < rows; ++i) {
        if (i > 0) s += ',';
        s += row;
    }
    return s + tail;
}

std::string or_terms(const std::string& cond, std::size_t terms) {
    std::string s;
    for (std::size_t i = 0; i < terms; ++i) s += (i == 0 ? "(" : " OR (") + cond + ")";
    return s;
}

std::vector<std::size_t> insert_chunks(std::size_t n) {
    std::vector<std::size_t> out;
    for (; n >= kInsertMax; n -= kInsertMax) out.push_back(kInsertMax);
    if (n >= kInsertStep) {
        out.push_back(n / kInsertStep * kInsertStep);
        n %= kInsertStep;
    }
    if (n > 0) out.push_back(n);
    return out;
}

std::size_t lookup_size(std::size_t n) {
    for (std::size_t size : kLookupSizes) {
        if (n <= size) return size;
    }
    return kLookupSizes[std::size(kLookupSizes) - 1];
}

}  // namespace im::sql_batch
