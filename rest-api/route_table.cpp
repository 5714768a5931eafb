#include "route_table.hpp"

#include "rest_service.hpp"

namespace im::rest {

void add_api_routes(Router<RouteSpec>& r) {
    add_account_routes(r);
    add_social_routes(r);
    add_conversation_routes(r);
    add_file_routes(r);
    add_group_routes(r);
}

std::vector<RouteInfo> registered_routes() {
    Router<RouteSpec> router;
    add_api_routes(router);
    std::vector<RouteInfo> out;
    router.for_each(
        [&out](const std::string& method, const std::string& pattern, const RouteSpec& spec) {
            out.push_back({method, pattern, spec.needs_auth});
        });
    out.push_back({"POST", kUploadPath, true});
    out.push_back({"GET", kHealthzPath, false});
    out.push_back({"GET", kReadyzPath, false});
    return out;
}

}  // namespace im::rest
