#pragma once
// Maps (method, path) to a route. Patterns are literal segments and {name} parameters:
// "/v1/friends/requests/{id}/accept". Literal segments win over parameters, so "/v1/users/me"
// and "/v1/users/{id}" coexist. A path that matches with another method answers 405.

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace im::rest {

using RouteParams = std::map<std::string, std::string>;

template <class Target>
class Router {
public:
    void add(std::string method, const std::string& pattern, Target target) {
        routes_.push_back(Route{std::move(method), split(pattern), std::move(target), pattern});
    }

    struct Match {
        const Target* target = nullptr;  // null: no route
        bool method_mismatch = false;    // the path exists with other methods (405)
        std::string allow;               // those methods, for the Allow header
        RouteParams params;
        std::string pattern;  // for metrics labels (bounded cardinality)
    };

    // Every registered route, in registration order: f(method, pattern, target).
    template <class F>
    void for_each(F&& f) const {
        for (const auto& r : routes_) f(r.method, r.pattern, r.target);
    }

    Match match(const std::string& method, const std::string& path) const {
        Match best;
        int best_score = -1;
        const auto segs = split(path);
        for (const auto& r : routes_) {
            RouteParams params;
            const int score = score_of(r.segments, segs, params);
            if (score < 0) continue;
            if (r.method != method) {
                best.method_mismatch = true;
                if (!lists(best.allow, r.method)) best.allow += (best.allow.empty() ? "" : ", ") + r.method;
                continue;
            }
            if (score > best_score) {
                best_score = score;
                best.target = &r.target;
                best.params = std::move(params);
                best.pattern = r.pattern;
            }
        }
        if (best.target != nullptr) best.method_mismatch = false;
        return best;
    }

private:
    struct Route {
        std::string method;
        std::vector<std::string> segments;
        Target target;
        std::string pattern;
    };

    // Whether the Allow list "GET, POST" names `method` (two patterns of one method may match).
    static bool lists(const std::string& allow, const std::string& method) {
        for (std::size_t at = 0; at < allow.size();) {
            const auto comma = allow.find(", ", at);
            const auto end = comma == std::string::npos ? allow.size() : comma;
            if (allow.compare(at, end - at, method) == 0) return true;
            at = end + 2;
        }
        return false;
    }

    static std::vector<std::string> split(const std::string& path) {
        std::vector<std::string> out;
        std::size_t i = 0;
        while (i < path.size()) {
            if (path[i] == '/') {
                ++i;
                continue;
            }
            const auto j = path.find('/', i);
            out.push_back(path.substr(i, j == std::string::npos ? std::string::npos : j - i));
            if (j == std::string::npos) break;
            i = j;
        }
        return out;
    }

    // -1: no match; otherwise the number of literal segments matched (more literal = better).
    static int score_of(const std::vector<std::string>& pattern, const std::vector<std::string>& segs,
                        RouteParams& params) {
        if (pattern.size() != segs.size()) return -1;
        int literal = 0;
        for (std::size_t i = 0; i < pattern.size(); ++i) {
            const auto& p = pattern[i];
            if (p.size() > 2 && p.front() == '{' && p.back() == '}') {
                params[p.substr(1, p.size() - 2)] = segs[i];
            } else if (p == segs[i]) {
                ++literal;
            } else {
                return -1;
            }
        }
        return literal;
    }

    std::vector<Route> routes_;
};

}  // namespace im::rest
