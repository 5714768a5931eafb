// im-cli: the terminal client of the IM cluster (docs/CLIENT.md "im-cli").
#include <csignal>
#include <iostream>
#include <string>
#include <vector>

#include "args.hpp"
#include "chat.hpp"
#include "cli_common.hpp"
#include "commands.hpp"
#include "rest_api.hpp"

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);  // a closed stdout or socket is an error code, not a death
    using namespace imcli;
    try {
        const Args args = parse_args(std::vector<std::string>(argv + 1, argv + argc));
        if (args.help) {
            std::cout << usage_text();
            return 0;
        }
        if (args.version) {
            std::cout << "im-cli 0.1\n";
            return 0;
        }
        if (args.command == "register") return run_register(args);
        if (args.command == "login") return run_login(args);
        if (args.command == "logout") return run_logout(args);
        if (args.command == "send") return run_send(args);
        if (args.command == "history") return run_history(args);
        if (args.command == "friends") return run_friends(args);
        if (args.command == "chats") return run_chats(args);
        return run_chat(args);
    } catch (const UsageError& e) {
        std::cerr << "im-cli: " << e.what() << "\n\n" << usage_text();
        return 2;
    } catch (const NotLoggedIn& e) {
        std::cerr << "im-cli: " << e.what() << "\n";
        return 3;
    } catch (const RestError& e) {
        std::cerr << "im-cli: " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "im-cli: " << e.what() << "\n";
        return 1;
    }
}
