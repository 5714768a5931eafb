#include "im/user_status/user_status.hpp"

#include <algorithm>
#include <charconv>
#include <map>

#include "lua_script.hpp"

namespace im::user_status {
namespace {

// Every script gets the keys it is about in KEYS and the prefix of the keys it derives (the
// connector hashes) in ARGV, so one script serves every prefix (one SHA, cached once).

// KEYS[1] = us:<user>; ARGV[1] = expiry (s); ARGV[2..] = device, entry, device, entry, ...
const LuaScript& online_script() {
    static const LuaScript s(R"lua(
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
)lua");
    return s;
}

// KEYS[1] = us:<user>; ARGV[1] = device; ARGV[2] = login epoch. Deletes only that login's entry.
const LuaScript& offline_script() {
    static const LuaScript s(R"lua(
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local _, _, login = string.match(v, '^(.*)|(%d+)|(%d+)|%d+$')
if login ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
)lua");
    return s;
}

// The liveness rule, shared by the read scripts: an entry is live iff <p>conn:<id> holds its
// epoch (looked up once per connector per call).
constexpr std::string_view kLiveFunction = R"lua(
local epochs = {}
local function live(entry)
  local id, epoch = string.match(entry, '^(.*)|(%d+)|%d+|%d+$')
  if not id then return false end
  local current = epochs[id]
  if current == nil then
    current = redis.call('HGET', ARGV[1] .. id, 'epoch')
    epochs[id] = current
  end
  return current == epoch
end
)lua";

// KEYS[1] = us:<user>; ARGV[1] = <p>conn:; ARGV[2] = expiry (s); ARGV[3] = device; ARGV[4] =
// entry; ARGV[5] = its login epoch. The newest login of a device wins, whichever connector's
// update arrives first: a live entry with a newer login epoch is kept and the caller is told it
// was superseded; otherwise the entry is written and the one it replaced is returned.
// Login epochs are decimal strings of up to 19 digits: compared as strings (Lua numbers are doubles).
const LuaScript& claim_script() {
    static const LuaScript s(std::string(kLiveFunction) + R"lua(
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local cur = redis.call('HGET', KEYS[1], ARGV[3])
if cur and live(cur) then
  local _, _, login = string.match(cur, '^(.*)|(%d+)|(%d+)|%d+$')
  if login and login ~= ARGV[5] and newer(login, ARGV[5]) then return {1, cur} end
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {0, cur or ''}
)lua");
    return s;
}

// KEYS[1] = us:<user>; ARGV[1] = <p>conn: -> {device, entry, ...} of the live entries.
const LuaScript& sessions_script() {
    static const LuaScript s(std::string(kLiveFunction) + R"lua(
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  if live(all[i + 1]) then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
return out
)lua");
    return s;
}

// KEYS = us:<user> ...; ARGV[1] = <p>conn: -> {0|1, ...} per key.
const LuaScript& presence_script() {
    static const LuaScript s(std::string(kLiveFunction) + R"lua(
local out = {}
for k = 1, #KEYS do
  local online = 0
  for _, entry in ipairs(redis.call('HVALS', KEYS[k])) do
    if live(entry) then
      online = 1
      break
    end
  end
  out[k] = online
end
return out
)lua");
    return s;
}

// KEYS[1] = <p>conn:<id> (or xfer:), KEYS[2] = the id set; ARGV[1] = id, ARGV[2] = epoch,
// ARGV[3] = ttl (ms), ARGV[4..] = field, value, ... -> 1 if the key held this epoch before.
const LuaScript& heartbeat_script() {
    static const LuaScript s(R"lua(
local before = redis.call('HGET', KEYS[1], 'epoch')
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
if before == ARGV[2] then return 1 end
return 0
)lua");
    return s;
}

// KEYS[1] = hash, KEYS[2] = id set; ARGV[1] = id.
const LuaScript& gone_script() {
    static const LuaScript s(R"lua(
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
)lua");
    return s;
}

// KEYS[1] = id set; ARGV[1] = hash prefix; ARGV[2..] = fields (the first one must always be set:
// 'epoch'). -> {id, field values..., id, ...} of the live ones; dead ids leave the set.
const LuaScript& live_script() {
    static const LuaScript s(R"lua(
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local vals = redis.call('HMGET', ARGV[1] .. id, unpack(ARGV, 2))
  if vals[1] then
    out[#out + 1] = id
    for j = 1, #ARGV - 1 do out[#out + 1] = vals[j] or '' end
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return out
)lua");
    return s;
}

std::string str(const redisReply* r) {
    if (r == nullptr || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)) return {};
    return std::string(r->str, r->len);
}

template <class T>
T num(const redisReply* r) {
    const auto s = str(r);
    T v{};
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return (ec == std::errc() && end == s.data() + s.size()) ? v : T{};
}

void expect_array(const redisReply* r, std::size_t multiple) {
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements % multiple != 0) {
        throw redis::RedisError("redis: unexpected reply from a user-status script");
    }
}

}  // namespace

UserStatus::UserStatus(redis::RedisConnection& redis, std::string key_prefix)
    : redis_(redis), prefix_(std::move(key_prefix)) {}

std::string UserStatus::user_key(std::uint64_t user) const {
    return prefix_ + "us:" + std::to_string(user);
}

std::string UserStatus::kick_channel() const {
    return prefix_ + "kick";
}

ClaimResult UserStatus::claim_device(std::uint64_t user, const SessionEntry& s) {
    auto r = claim_script().run(redis_, {user_key(user)},
                                {prefix_ + "conn:", std::to_string(kEntryTtl.count()), s.device_id, encode_entry(s),
                                 std::to_string(s.login_epoch)});
    ClaimResult out;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        out.superseded = r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == 1;
        const auto* v = r->element[1];
        if (v->type == REDIS_REPLY_STRING && v->len > 0) {
            out.other = parse_entry(s.device_id, std::string_view(v->str, v->len));
        }
    }
    return out;
}

void UserStatus::online(std::uint64_t user, const SessionEntry& s) {
    online_script().run(redis_, {user_key(user)},
                        {std::to_string(kEntryTtl.count()), s.device_id, encode_entry(s)});
}

bool UserStatus::offline(std::uint64_t user, const std::string& device_id,
                         std::uint64_t login_epoch) {
    auto r =
        offline_script().run(redis_, {user_key(user)}, {device_id, std::to_string(login_epoch)});
    return redis::as_integer(r.get()) == 1;
}

void UserStatus::online_many(const std::vector<std::pair<std::uint64_t, SessionEntry>>& sessions) {
    // One script call per user with all of its devices (later entries of a device win).
    std::map<std::uint64_t, std::vector<std::string>> per_user;
    for (const auto& [user, s] : sessions) {
        auto& args = per_user[user];
        if (args.empty()) args.push_back(std::to_string(kEntryTtl.count()));
        args.push_back(s.device_id);
        args.push_back(encode_entry(s));
    }
    std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>> calls;
    calls.reserve(per_user.size());
    for (auto& [user, args] : per_user)
        calls.emplace_back(std::vector<std::string>{user_key(user)}, std::move(args));
    online_script().run_many(redis_, calls);
}

std::vector<SessionEntry> UserStatus::sessions_of(std::uint64_t user) {
    auto r = sessions_script().run(redis_, {user_key(user)}, {prefix_ + "conn:"});
    expect_array(r.get(), 2);
    std::vector<SessionEntry> out;
    for (std::size_t i = 0; i < r->elements; i += 2) {
        if (auto e = parse_entry(str(r->element[i]), str(r->element[i + 1])))
            out.push_back(std::move(*e));
    }
    std::sort(out.begin(), out.end(),
              [](const auto& a, const auto& b) { return a.device_id < b.device_id; });
    return out;
}

bool UserStatus::presence(std::uint64_t user) {
    return presence_many({user}).at(0);
}

std::vector<bool> UserStatus::presence_many(const std::vector<std::uint64_t>& users) {
    if (users.empty()) return {};
    std::vector<std::string> keys;
    keys.reserve(users.size());
    for (auto u : users)
        keys.push_back(user_key(u));
    auto r = presence_script().run(redis_, keys, {prefix_ + "conn:"});
    expect_array(r.get(), 1);
    if (r->elements != users.size())
        throw redis::RedisError("redis: presence script answered the wrong count");
    std::vector<bool> out;
    out.reserve(users.size());
    for (std::size_t i = 0; i < r->elements; ++i)
        out.push_back(redis::as_integer(r->element[i]) == 1);
    return out;
}

bool UserStatus::connector_heartbeat(const ConnectorInfo& info, std::chrono::milliseconds ttl) {
    auto r = heartbeat_script().run(
        redis_, {prefix_ + "conn:" + info.id, prefix_ + "connectors"},
        {info.id, std::to_string(info.epoch), std::to_string(ttl.count()), "epoch",
         std::to_string(info.epoch), "address", info.address, "sessions",
         std::to_string(info.sessions), "updated_ms", std::to_string(info.updated_ms)});
    return redis::as_integer(r.get()) == 1;
}

void UserStatus::connector_gone(const std::string& connector_id) {
    gone_script().run(redis_, {prefix_ + "conn:" + connector_id, prefix_ + "connectors"},
                      {connector_id});
}

std::vector<ConnectorInfo> UserStatus::live_connectors() {
    auto r = live_script().run(redis_, {prefix_ + "connectors"},
                               {prefix_ + "conn:", "epoch", "address", "sessions", "updated_ms"});
    expect_array(r.get(), 5);
    std::vector<ConnectorInfo> out;
    for (std::size_t i = 0; i < r->elements; i += 5) {
        const auto* const* e = r->element + i;
        out.push_back(ConnectorInfo{str(e[0]), num<std::uint64_t>(e[1]), str(e[2]),
                                    num<std::uint32_t>(e[3]), num<std::int64_t>(e[4])});
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
        return a.sessions != b.sessions ? a.sessions < b.sessions : a.id < b.id;
    });
    return out;
}

bool UserStatus::transfer_heartbeat(const TransferInfo& info, std::chrono::milliseconds ttl) {
    auto r =
        heartbeat_script().run(redis_, {prefix_ + "xfer:" + info.id, prefix_ + "transfers"},
                               {info.id, std::to_string(info.epoch), std::to_string(ttl.count()),
                                "epoch", std::to_string(info.epoch), "address", info.address,
                                "updated_ms", std::to_string(info.updated_ms)});
    return redis::as_integer(r.get()) == 1;
}

void UserStatus::transfer_gone(const std::string& transfer_id) {
    gone_script().run(redis_, {prefix_ + "xfer:" + transfer_id, prefix_ + "transfers"},
                      {transfer_id});
}

std::vector<TransferInfo> UserStatus::live_transfers() {
    auto r = live_script().run(redis_, {prefix_ + "transfers"},
                               {prefix_ + "xfer:", "epoch", "address", "updated_ms"});
    expect_array(r.get(), 4);
    std::vector<TransferInfo> out;
    for (std::size_t i = 0; i < r->elements; i += 4) {
        const auto* const* e = r->element + i;
        out.push_back(
            TransferInfo{str(e[0]), num<std::uint64_t>(e[1]), str(e[2]), num<std::int64_t>(e[3])});
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    return out;
}

void UserStatus::publish_kick(const KickRequest& k) {
    redis_.command({"PUBLISH", kick_channel(), encode_kick(k)});
}

}  // namespace im::user_status

namespace im::user_status {

std::string UserStatus::social_channel() const { return prefix_ + "social"; }

void UserStatus::publish_social_change(std::uint64_t a, std::uint64_t b) {
    redis_.command({"PUBLISH", social_channel(), std::to_string(a) + "|" + std::to_string(b)});
}

std::optional<std::pair<std::uint64_t, std::uint64_t>> UserStatus::parse_social_change(std::string_view payload) {
    const auto bar = payload.find('|');
    if (bar == std::string_view::npos) return std::nullopt;
    std::uint64_t a = 0, b = 0;
    const auto left = payload.substr(0, bar), right = payload.substr(bar + 1);
    auto [pa, ea] = std::from_chars(left.data(), left.data() + left.size(), a);
    auto [pb, eb] = std::from_chars(right.data(), right.data() + right.size(), b);
    if (ea != std::errc() || eb != std::errc() || pa != left.data() + left.size() || pb != right.data() + right.size() ||
        a == 0 || b == 0) {
        return std::nullopt;
    }
    return std::make_pair(a, b);
}

}  // namespace im::user_status
