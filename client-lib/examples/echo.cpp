// imclient-echo: logs in as a user and answers every message with "echo: <text>".
//
//   imclient-echo --user bob --password bob-secret [--rest http://127.0.0.1:8080]
//                 [--connector 127.0.0.1:9000] [--device echo-bot] [--cursors FILE]
//
// Stops on SIGINT/SIGTERM. Uses only the public imclient API: no Asio, no protobuf.

#include <imclient/imclient.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>

namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) {
    g_stop = true;
}

void usage() {
    std::cout << "usage: imclient-echo --user NAME --password PASSWORD [--rest URL]\n"
                 "                     [--connector HOST:PORT]... [--device ID] [--cursors FILE]\n";
}

}  // namespace

int main(int argc, char** argv) {
    imclient::Options options;
    options.device_id = "echo-bot";
    std::string user;
    std::string password;
    std::string cursors;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::cerr << arg << " needs a value\n";
                std::exit(2);
            }
            return argv[++i];
        };
        if (arg == "--help" || arg == "-h") {
            usage();
            return 0;
        } else if (arg == "--user") {
            user = value();
        } else if (arg == "--password") {
            password = value();
        } else if (arg == "--rest") {
            options.rest_url = value();
        } else if (arg == "--connector") {
            options.connectors.push_back(value());
        } else if (arg == "--device") {
            options.device_id = value();
        } else if (arg == "--cursors") {
            cursors = value();
        } else {
            usage();
            return 2;
        }
    }
    if (user.empty() || password.empty()) {
        usage();
        return 2;
    }
    try {
        if (!cursors.empty())
            options.cursor_store = std::make_shared<imclient::FileCursorStore>(cursors);
        imclient::Client client(options);

        // Callbacks run on the client's thread: keep them short, never block in them.
        client.on_state([](imclient::State s, const std::string& detail) {
            std::cout << "state: " << imclient::to_string(s) << " (" << detail << ")" << std::endl;
            if (s == imclient::State::kicked || s == imclient::State::auth_failed) g_stop = true;
        });
        client.on_message([&client](const imclient::Message& m) {
            if (m.sender_user_id == client.user_id()) return;  // our own other devices
            std::cout << "message " << m.conversation_id << "#" << m.seq << " from "
                      << m.sender_user_id << ": " << m.text << std::endl;
            client.send_text(m.sender_user_id, "echo: " + m.text);
            client.mark_read(m.conversation_id, m.seq);
        });
        client.on_sent([](const imclient::SendAck& a) {
            std::cout << "sent " << a.client_msg_id << " as seq " << a.seq << std::endl;
        });
        client.on_send_failed([](const imclient::SendFailure& f) {
            std::cout << "send failed " << f.client_msg_id << ": " << imclient::to_string(f.code)
                      << " " << f.message << std::endl;
        });

        const imclient::LoginInfo info = client.login(user, password).get();
        std::cout << "logged in as user " << info.user_id << " on " << info.connector << std::endl;

        std::signal(SIGINT, on_signal);
        std::signal(SIGTERM, on_signal);
        while (!g_stop)
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        client.close();
    } catch (const imclient::Error& e) {
        std::cerr << "imclient-echo: " << e.what() << " (" << imclient::to_string(e.code())
                  << ")\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "imclient-echo: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
