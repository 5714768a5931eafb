#pragma once
// The REST side of im-cli (friends, requests, conversations, history), as printable lines, shared
// by the one-shot commands and the interactive session. All throw RestError / CommandFailed.

#include <cstdint>
#include <string>
#include <vector>

#include "rest_api.hpp"

namespace imcli {

std::vector<std::string> friends_lines(RestApi& rest);
std::vector<std::string> requests_lines(RestApi& rest);
std::vector<std::string> chats_lines(RestApi& rest);
// The conversation of me and peer, oldest first, one message a line; the last `keep` (0: all).
std::vector<std::string> history_lines(RestApi& rest, std::uint64_t me, const std::string& my_name,
                                       std::uint64_t peer, const std::string& peer_name,
                                       std::size_t keep);
// Returns what to print.
std::string add_friend(RestApi& rest, const std::string& peer, const std::string& message);
// verb: accept or decline the pending request from peer.
std::string answer_request(RestApi& rest, const std::string& peer, const std::string& verb);
// Accepts every pending request addressed to me; one line per request.
std::vector<std::string> accept_all(RestApi& rest);

}  // namespace imcli
