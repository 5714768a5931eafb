#include "accounts.hpp"

#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>

#include <memory>

#include "http_types.hpp"
#include "im/server/mysql.hpp"
#include "validation.hpp"

namespace im::rest {

nlohmann::json user_json(const User& u, bool full) {
    nlohmann::json j = {{"id", u.id}, {"username", u.username}, {"display_name", u.display_name}};
    if (full) {
        j["origin"] = u.origin;
        j["created_at"] = iso8601(u.created_ms);
    }
    return j;
}

namespace accounts {
namespace {

constexpr const char* kColumns =
    "SELECT id, username, display_name, origin, COALESCE(password_hash, ''), COALESCE(external_ref, ''), "
    "created_at FROM users ";

User read_user(sql::ResultSet& rs) {
    return User{rs.getUInt64(1), rs.getString(2).asStdString(), rs.getString(3).asStdString(),
                rs.getString(4).asStdString(), rs.getString(5).asStdString(), rs.getString(6).asStdString(),
                mysql::datetime_to_ms(rs.getString(7).asStdString())};
}

std::optional<User> one(sql::PreparedStatement& st) {
    std::unique_ptr<sql::ResultSet> rs(st.executeQuery());
    if (!rs->next()) return std::nullopt;
    return read_user(*rs);
}

std::uint64_t insert_user(mysql::MysqlConnection& db, const std::string& username, const std::string& display_name,
                          const std::string& origin, const std::string* password_hash,
                          const std::string* external_ref) {
    auto& st = db.prepare(
        "INSERT INTO users (username, display_name, origin, password_hash, external_ref) VALUES (?, ?, ?, ?, ?)");
    st.setString(1, username);
    st.setString(2, display_name);
    st.setString(3, origin);
    if (password_hash) st.setString(4, *password_hash);
    else st.setNull(4, 0);
    if (external_ref) st.setString(5, *external_ref);
    else st.setNull(5, 0);
    try {
        st.executeUpdate();
    } catch (const sql::SQLException& e) {
        if (mysql::is_duplicate_key(e)) throw ApiError(409, "username_taken", "this username is already taken");
        throw;
    }
    std::unique_ptr<sql::ResultSet> rs(db.prepare("SELECT LAST_INSERT_ID()").executeQuery());
    rs->next();
    const auto id = rs->getUInt64(1);
    if (!valid_user_id(id)) {
        // Ids must fit the conversation id scheme; refuse instead of corrupting it.
        auto& del = db.prepare("DELETE FROM users WHERE id = ?");
        del.setUInt64(1, id);
        del.executeUpdate();
        throw ApiError(503, "user_space_exhausted", "no more user ids available");
    }
    return id;
}

}  // namespace

std::optional<User> by_id(mysql::MysqlConnection& db, std::uint64_t id) {
    auto& st = db.prepare(std::string(kColumns) + "WHERE id = ?");
    st.setUInt64(1, id);
    return one(st);
}

std::optional<User> by_username(mysql::MysqlConnection& db, const std::string& username) {
    auto& st = db.prepare(std::string(kColumns) + "WHERE username = ?");
    st.setString(1, username);
    return one(st);
}

User create_local(mysql::MysqlConnection& db, const std::string& username, const std::string& display_name,
                  const std::string& password_hash) {
    const auto id = insert_user(db, username, display_name, "local", &password_hash, nullptr);
    auto u = by_id(db, id);
    if (!u) throw std::runtime_error("user vanished after insert");
    return *u;
}

User upsert_external(mysql::MysqlConnection& db, const std::string& origin, const std::string& username,
                     const ExternalIdentity& identity) {
    const std::string display = identity.display_name.empty() ? username : identity.display_name;
    if (auto existing = by_username(db, username)) {
        if (existing->origin != origin) {
            throw ApiError(409, "username_taken", "this username belongs to another kind of account");
        }
        if (existing->display_name != display || existing->external_ref != identity.external_ref) {
            auto& st = db.prepare(
                "UPDATE users SET display_name = ?, external_ref = ?, updated_at = CURRENT_TIMESTAMP(3) WHERE id = ?");
            st.setString(1, display);
            st.setString(2, identity.external_ref);
            st.setUInt64(3, existing->id);
            st.executeUpdate();
            existing->display_name = display;
            existing->external_ref = identity.external_ref;
        }
        mark_verified(db, existing->id);
        return *existing;
    }
    std::optional<User> user;
    try {
        const auto id = insert_user(db, username, display, origin, nullptr, &identity.external_ref);
        user = by_id(db, id);
    } catch (const ApiError& e) {
        // Two first logins at once: the other one created it.
        if (e.status() != 409) throw;
        user = by_username(db, username);
        if (!user || user->origin != origin) throw;
    }
    if (!user) throw std::runtime_error("user vanished after insert");
    mark_verified(db, user->id);
    return *user;
}

void mark_verified(mysql::MysqlConnection& db, std::uint64_t user_id) {
    auto& st = db.prepare("UPDATE users SET verified_at = CURRENT_TIMESTAMP(3) WHERE id = ?");
    st.setUInt64(1, user_id);
    st.executeUpdate();
}

void set_password_hash(mysql::MysqlConnection& db, std::uint64_t user_id, const std::string& hash) {
    auto& st = db.prepare("UPDATE users SET password_hash = ?, updated_at = CURRENT_TIMESTAMP(3) WHERE id = ?");
    st.setString(1, hash);
    st.setUInt64(2, user_id);
    st.executeUpdate();
}

}  // namespace accounts
}  // namespace im::rest
