#pragma once
// Every route im-rest answers, in one list: the router's (routes_*.cpp, registered through
// add_api_routes) and the three answered outside the router (the streamed upload, /healthz,
// /readyz). RestService registers exactly these, and the authorization sweep
// (tests/integration/authz_sweep_test.cpp) fails while a route here has no row in its table, so
// a new endpoint cannot ship without its authorization checks.

#include <string>
#include <vector>

namespace im::rest {

// Answered outside the router: POST is streamed by the HttpServer (RestService::upload_route).
inline constexpr const char* kUploadPath = "/v1/files";
// GET, public: liveness on the I/O thread, readiness on the pool (RestService::handle).
inline constexpr const char* kHealthzPath = "/healthz";
inline constexpr const char* kReadyzPath = "/readyz";

struct RouteInfo {
    std::string method;
    std::string pattern;  // literal segments and {name} parameters, as given to Router::add
    bool needs_auth = true;
};

// Every (method, pattern) the service answers, router and non-router routes alike.
std::vector<RouteInfo> registered_routes();

}  // namespace im::rest
