#include "im/server/config.hpp"

#include <sys/stat.h>

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <sstream>

extern char** environ;

namespace im::config {
namespace {

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return {};
    const auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

bool valid_key(const std::string& key) {
    if (key.empty() || key.front() == '.' || key.back() == '.') return false;
    return std::all_of(key.begin(), key.end(), [](unsigned char c) {
        return std::islower(c) || std::isdigit(c) || c == '_' || c == '.';
    });
}

void flatten(const YAML::Node& node, const std::string& prefix, const std::string& origin,
             std::map<std::string, RawValue>& out) {
    switch (node.Type()) {
        case YAML::NodeType::Map:
            for (const auto& kv : node) {
                const auto name = kv.first.as<std::string>();
                const auto key = prefix.empty() ? name : prefix + "." + name;
                if (!valid_key(key)) {
                    throw ConfigError(origin + ": invalid key '" + key +
                                      "' (lowercase letters, digits and '_' only)");
                }
                flatten(kv.second, key, origin, out);
            }
            break;
        case YAML::NodeType::Sequence: {
            RawValue v{{}, true, origin};
            for (const auto& item : node) {
                if (!item.IsScalar()) {
                    throw ConfigError(origin + ": " + prefix + ": list items must be plain values");
                }
                v.items.push_back(item.as<std::string>());
            }
            out[prefix] = std::move(v);
            break;
        }
        case YAML::NodeType::Scalar:
            if (prefix.empty()) throw ConfigError(origin + ": the document must be a mapping");
            out[prefix] = RawValue{{node.as<std::string>()}, false, origin};
            break;
        case YAML::NodeType::Null:
        case YAML::NodeType::Undefined:
            if (!prefix.empty()) out[prefix] = RawValue{{""}, false, origin};
            break;
    }
}

std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> items;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ',')) {
        item = trim(item);
        if (!item.empty()) items.push_back(item);
    }
    return items;
}

template <class T>
std::optional<T> parse_int(const std::string& s) {
    T v{};
    const auto t = trim(s);
    const auto* end = t.data() + t.size();
    auto [p, ec] = std::from_chars(t.data(), end, v);
    if (ec != std::errc() || p != end || t.empty()) return std::nullopt;
    return v;
}

}  // namespace

Env ConfigSource::process_env() {
    Env env;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
        std::string_view kv(*e);
        if (kv.rfind("IM_", 0) != 0) continue;
        const auto eq = kv.find('=');
        if (eq == std::string_view::npos) continue;
        env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
    return env;
}

void ConfigSource::load_yaml_file(const std::string& path) {
    YAML::Node root;
    try {
        root = YAML::LoadFile(path);
    } catch (const YAML::BadFile&) {
        throw ConfigError("cannot read config file '" + path + "'");
    } catch (const YAML::Exception& e) {
        throw ConfigError(path + ": " + e.what());
    }
    flatten(root, "", path, file_);
    files_.insert(path);
}

void ConfigSource::load_yaml_string(const std::string& text, const std::string& origin) {
    YAML::Node root;
    try {
        root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
        throw ConfigError(origin + ": " + e.what());
    }
    flatten(root, "", origin, file_);
}

void ConfigSource::add_override(const std::string& assignment) {
    const auto eq = assignment.find('=');
    if (eq == std::string::npos) {
        throw ConfigError("--set '" + assignment + "': expected key=value");
    }
    const auto key = trim(assignment.substr(0, eq));
    if (!valid_key(key)) throw ConfigError("--set: invalid key '" + key + "'");
    overrides_[key] = RawValue{{assignment.substr(eq + 1)}, false, "--set " + key};
}

std::optional<RawValue> ConfigSource::lookup(const std::string& key,
                                             const std::vector<std::string>& env_names) const {
    if (auto it = overrides_.find(key); it != overrides_.end()) return it->second;
    for (const auto& name : env_names) {
        if (auto it = env_.find(name); it != env_.end()) {
            return RawValue{{it->second}, false, name};
        }
    }
    if (auto it = file_.find(key); it != file_.end()) return it->second;
    return std::nullopt;
}

std::optional<std::chrono::milliseconds> parse_duration(const std::string& text) {
    const auto s = lower(trim(text));
    std::size_t i = 0;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) != 0)) ++i;
    if (i == 0) return std::nullopt;
    const auto n = parse_int<std::int64_t>(s.substr(0, i));
    if (!n) return std::nullopt;
    const auto unit = trim(s.substr(i));
    std::int64_t mult = 0;
    if (unit == "ms") mult = 1;
    else if (unit == "s" || unit.empty()) mult = 1000;
    else if (unit == "m" || unit == "min") mult = 60'000;
    else if (unit == "h") mult = 3'600'000;
    else if (unit == "d") mult = 86'400'000;
    else return std::nullopt;
    if (*n > std::numeric_limits<std::int64_t>::max() / mult) return std::nullopt;
    return std::chrono::milliseconds(*n * mult);
}

std::optional<std::uint64_t> parse_size(const std::string& text) {
    const auto s = trim(text);
    std::size_t i = 0;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) != 0)) ++i;
    if (i == 0) return std::nullopt;
    const auto n = parse_int<std::uint64_t>(s.substr(0, i));
    if (!n) return std::nullopt;
    const auto unit = lower(trim(s.substr(i)));
    std::uint64_t mult = 0;
    if (unit.empty() || unit == "b") mult = 1;
    else if (unit == "kib" || unit == "k") mult = 1ull << 10;
    else if (unit == "mib" || unit == "m") mult = 1ull << 20;
    else if (unit == "gib" || unit == "g") mult = 1ull << 30;
    else if (unit == "kb") mult = 1000;
    else if (unit == "mb") mult = 1000 * 1000;
    else if (unit == "gb") mult = 1000 * 1000 * 1000;
    else return std::nullopt;
    if (*n > std::numeric_limits<std::uint64_t>::max() / mult) return std::nullopt;
    return *n * mult;
}

std::optional<bool> parse_bool(const std::string& text) {
    const auto s = lower(trim(text));
    if (s == "true" || s == "yes" || s == "on" || s == "1") return true;
    if (s == "false" || s == "no" || s == "off" || s == "0") return false;
    return std::nullopt;
}

std::string Binder::env_name(const std::string& key) const {
    std::string name = env_prefix_;
    for (char c : key) {
        name += (c == '.') ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return name;
}

std::optional<RawValue> Binder::raw(const std::string& key) {
    bound_keys_.push_back(key);
    std::vector<std::string> names{env_name(key)};
    std::string shared = "IM_";
    for (char c : key) {
        shared += (c == '.') ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    if (shared != names.front()) names.push_back(shared);
    return source_.lookup(key, names);
}

void Binder::error(const std::string& key, const RawValue& v, const std::string& what) {
    errors_.push_back(key + ": " + what + " (from " + v.origin + ")");
}

std::optional<std::string> Binder::scalar(const std::string& key) {
    auto v = raw(key);
    if (!v) return std::nullopt;
    if (v->is_list) {
        error(key, *v, "expected a single value, got a list");
        return std::nullopt;
    }
    return trim(v->items.front());
}

void Binder::record(const std::string& key, const std::string& value, bool secret) {
    described_.emplace_back(key, secret ? (value.empty() ? "" : "********") : value);
}

void Binder::bind(const std::string& key, std::string& field, bool secret) {
    if (auto v = raw(key)) {
        if (v->is_list) error(key, *v, "expected a single value, got a list");
        else field = v->items.front();
        struct stat st {};
        if (secret && !field.empty() && source_.is_file(v->origin) && ::stat(v->origin.c_str(), &st) == 0 &&
            (st.st_mode & S_IROTH) != 0) {
            error(key, *v, "a secret in a file every user can read: chmod o-r " + v->origin +
                               " (or pass it in the environment)");
        }
    }
    record(key, field, secret);
}

void Binder::bind(const std::string& key, bool& field) {
    const auto v = raw(key);
    if (v && !v->is_list) {
        if (auto b = parse_bool(v->items.front())) field = *b;
        else error(key, *v, "'" + v->items.front() + "' is not a boolean (true/false)");
    } else if (v) {
        error(key, *v, "expected a single value, got a list");
    }
    record(key, field ? "true" : "false", false);
}

void Binder::bind(const std::string& key, std::int64_t& field, std::int64_t min, std::int64_t max) {
    const auto v = raw(key);
    if (v) {
        const auto n = v->is_list ? std::nullopt : parse_int<std::int64_t>(v->items.front());
        if (!n) error(key, *v, "'" + (v->items.empty() ? "" : v->items.front()) + "' is not an integer");
        else if (*n < min || *n > max) {
            error(key, *v, std::to_string(*n) + " is out of range [" + std::to_string(min) + ", " +
                               std::to_string(max) + "]");
        } else field = *n;
    }
    record(key, std::to_string(field), false);
}

void Binder::bind(const std::string& key, std::uint32_t& field, std::uint32_t min, std::uint32_t max) {
    std::int64_t wide = field;
    bind(key, wide, min, max);
    field = static_cast<std::uint32_t>(wide);
}

void Binder::bind(const std::string& key, std::uint16_t& field, std::uint16_t min, std::uint16_t max) {
    std::int64_t wide = field;
    bind(key, wide, min, max);
    field = static_cast<std::uint16_t>(wide);
}

void Binder::bind(const std::string& key, double& field, double min, double max) {
    const auto v = raw(key);
    if (v) {
        const std::string text = v->is_list ? "" : trim(v->items.front());
        char* end = nullptr;
        errno = 0;
        const double d = text.empty() ? 0.0 : std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size() || errno != 0 || !std::isfinite(d)) {
            error(key, *v, "'" + text + "' is not a number");
        } else if (d < min || d > max) {
            error(key, *v, text + " is out of range [" + std::to_string(min) + ", " + std::to_string(max) + "]");
        } else {
            field = d;
        }
    }
    record(key, std::to_string(field), false);
}

void Binder::bind_duration(const std::string& key, std::chrono::milliseconds& field,
                           std::chrono::milliseconds min, std::chrono::milliseconds max) {
    const auto v = raw(key);
    if (v) {
        const auto d = v->is_list ? std::nullopt : parse_duration(v->items.front());
        if (!d) {
            error(key, *v, "'" + (v->items.empty() ? "" : v->items.front()) +
                               "' is not a duration (e.g. 250ms, 30s, 5m, 1h)");
        } else if (*d < min || *d > max) {
            error(key, *v, "duration out of range [" + std::to_string(min.count()) + "ms, " +
                               std::to_string(max.count()) + "ms]");
        } else {
            field = *d;
        }
    }
    record(key, std::to_string(field.count()) + "ms", false);
}

void Binder::bind_size(const std::string& key, std::uint64_t& field, std::uint64_t min, std::uint64_t max) {
    const auto v = raw(key);
    if (v) {
        const auto n = v->is_list ? std::nullopt : parse_size(v->items.front());
        if (!n) {
            error(key, *v, "'" + (v->items.empty() ? "" : v->items.front()) +
                               "' is not a size (e.g. 65536, 64KiB, 100MiB)");
        } else if (*n < min || *n > max) {
            error(key, *v, std::to_string(*n) + " bytes is out of range [" + std::to_string(min) + ", " +
                               std::to_string(max) + "]");
        } else {
            field = *n;
        }
    }
    record(key, std::to_string(field), false);
}

void Binder::bind(const std::string& key, std::vector<std::string>& field) {
    if (auto v = raw(key)) {
        if (v->is_list) {
            field = v->items;
        } else {
            field = split_list(v->items.front());
        }
    }
    std::string joined;
    for (const auto& s : field) joined += (joined.empty() ? "" : ",") + s;
    record(key, joined, false);
}

void Binder::bind_choice(const std::string& key, std::string& field,
                         const std::vector<std::string>& choices) {
    const auto v = raw(key);
    if (v) {
        const std::string text = v->is_list ? "" : trim(v->items.front());
        if (std::find(choices.begin(), choices.end(), text) == choices.end()) {
            std::string all;
            for (const auto& c : choices) all += (all.empty() ? "" : ", ") + c;
            error(key, *v, "'" + text + "' is not one of: " + all);
        } else {
            field = text;
        }
    }
    record(key, field, false);
}

void Binder::require(bool ok, const std::string& key, const std::string& message) {
    if (!ok) errors_.push_back(key + ": " + message);
}

void Binder::finish() const {
    auto errors = errors_;
    auto known = [this](const std::string& key) {
        return std::find(bound_keys_.begin(), bound_keys_.end(), key) != bound_keys_.end();
    };
    for (const auto& [key, v] : source_.file_values()) {
        if (!known(key)) errors.push_back(key + ": unknown key (from " + v.origin + ")");
    }
    for (const auto& [key, v] : source_.overrides()) {
        if (!known(key)) errors.push_back(key + ": unknown key (from " + v.origin + ")");
    }
    if (errors.empty()) return;
    std::string msg = "invalid configuration:";
    for (const auto& e : errors) msg += "\n  " + e;
    throw ConfigError(msg);
}

std::string Binder::describe() const {
    std::string out;
    for (const auto& [key, value] : described_) out += key + " = " + value + "\n";
    return out;
}

}  // namespace im::config
