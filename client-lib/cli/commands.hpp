#pragma once
// The one-shot commands for scripts: register, login, logout, send, history, friends, chats.
// Each returns the exit code (0 done) or throws (main maps the exception to 1, 2 or 3).

#include "args.hpp"

namespace imcli {

int run_register(const Args& args);
int run_login(const Args& args);
int run_logout(const Args& args);
int run_send(const Args& args);
int run_history(const Args& args);
int run_friends(const Args& args);
int run_chats(const Args& args);

}  // namespace imcli
