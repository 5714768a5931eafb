#pragma once
// Multi-row statements of a bounded set of sizes: Connector/C++ 1.1 has no batch API, and
// preparing a new statement for every batch size would defeat the statement cache. A batch of n
// rows is split into at most ceil(n / 128) + 1 statements: chunks of 128 rows, then one of a
// multiple of 16, then one of the rest (1..15): 23 sizes per statement. Every statement is a round
// trip, which costs far more than its rows on a busy server (issue 16: the greedy {128, 32, 8, 1}
// split made up to 13 statements of one batch's 127 rows). Lookups with IN/OR lists are padded by
// repeating the last key (a repeated key changes nothing in a SELECT).

#include <cstddef>
#include <string>
#include <vector>

namespace im::sql_batch {

inline constexpr std::size_t kInsertMax = 128;
inline constexpr std::size_t kInsertStep = 16;
inline constexpr std::size_t kLookupSizes[] = {1, 8, 64, 512};

// head + "(?,..,?),(?,..,?)" (rows x columns) + tail
std::string values_statement(const std::string& head, std::size_t columns, std::size_t rows, const std::string& tail);
// "(" + cond + ") OR (" + cond + ")" repeated `terms` times, e.g. cond "sender_id = ? AND client_msg_id = ?".
std::string or_terms(const std::string& cond, std::size_t terms);
// "?,?,...,?" (n placeholders).
std::string placeholders(std::size_t n);
// Chunk sizes for n rows: 128s, then a multiple of 16, then 1..15.
std::vector<std::size_t> insert_chunks(std::size_t n);
// The smallest lookup size >= n (n <= 512), for padding.
std::size_t lookup_size(std::size_t n);

}  // namespace im::sql_batch
