#pragma once
// The users table: lookups, local registration, and accounts created on first LDAP or external
// login. Synchronous (pool threads); prepared statements only.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "auth.hpp"

namespace im::mysql {
class MysqlConnection;
}

namespace im::rest {

struct User {
    std::uint64_t id = 0;
    std::string username;
    std::string display_name;
    std::string origin;  // local | ldap | external
    std::string password_hash;  // empty unless local
    std::string external_ref;
    std::int64_t created_ms = 0;
};

// Public profile: {id, username, display_name}; `full` adds origin and created_at (for /users/me).
nlohmann::json user_json(const User& u, bool full = false);

namespace accounts {

std::optional<User> by_id(mysql::MysqlConnection& db, std::uint64_t id);
std::optional<User> by_username(mysql::MysqlConnection& db, const std::string& username);
// Throws ApiError 409 when the username is taken.
User create_local(mysql::MysqlConnection& db, const std::string& username, const std::string& display_name,
                  const std::string& password_hash);
// The local account of a directory or external identity: created on first login, display name
// kept up to date, confirmed now (mark_verified). Throws ApiError 409 when the username belongs to
// an account of another origin.
User upsert_external(mysql::MysqlConnection& db, const std::string& origin, const std::string& username,
                     const ExternalIdentity& identity);
// The directory or service confirmed the account now (a login or a re-check): users.verified_at.
void mark_verified(mysql::MysqlConnection& db, std::uint64_t user_id);
void set_password_hash(mysql::MysqlConnection& db, std::uint64_t user_id, const std::string& hash);

}  // namespace accounts
}  // namespace im::rest
