// The public facade: owns the io_context and its thread, posts every call to the Engine.

#include "imclient/client.hpp"

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "engine.hpp"
#include "file_transfer.hpp"
#include "random_id.hpp"
#include "state_cursor_store.hpp"
#include "state_log.hpp"

namespace imclient {

namespace asio = boost::asio;

namespace {

std::shared_ptr<detail::StateLog> open_state(const std::string& dir) {
    if (dir.empty()) return nullptr;
    return std::make_shared<detail::StateLog>(dir);  // throws Error{state_locked, io_error}
}

Options with_defaults(Options o, const std::shared_ptr<detail::StateLog>& state) {
    if (o.device_id.empty()) o.device_id = detail::random_device_id();
    if (!o.cursor_store) {
        o.cursor_store =
            state ? std::shared_ptr<CursorStore>(std::make_shared<detail::StateCursorStore>(state))
                  : std::make_shared<MemoryCursorStore>();
    }
    if (o.sync_page == 0) o.sync_page = 200;
    if (o.max_outbox == 0) o.max_outbox = 1;
    if (o.max_in_flight == 0) o.max_in_flight = 1;
    if (o.max_session_in_flight == 0) o.max_session_in_flight = 1;
    if (o.max_buffered == 0) o.max_buffered = 1;
    if (o.reconnect_min.count() <= 0) o.reconnect_min = std::chrono::milliseconds(1);
    if (o.reconnect_max < o.reconnect_min) o.reconnect_max = o.reconnect_min;
    return o;
}

}  // namespace

struct Client::Impl {
    explicit Impl(Options o)
        : state(open_state(o.state_dir)),
          options(with_defaults(std::move(o), state)),
          work(asio::make_work_guard(io)),
          engine(std::make_unique<detail::Engine>(io, options, queued, state.get())) {
        if (state) {
            auto restored = state->take_restored();
            for (const auto& m : restored) {
                restored_sends.push_back(RestoredSend{detail::to_hex(m.client_msg_id), m.peer,
                                                      m.group, m.type, m.text, m.file});
            }
            queued = restored.size();
            engine->restore(std::move(restored));  // the engine's thread does not run yet
        }
        thread = std::thread([this] { io.run(); });
    }

    template <class F>
    void post(F&& f) {
        asio::post(io, std::forward<F>(f));
    }

    // To `peer`, or to group `group` (exactly one of them non-zero).
    std::string enqueue(std::uint64_t peer, std::uint64_t group, detail::OutMessage m) {
        if (group != 0) {
            if (peer != 0 || !is_group_conversation(group)) {
                throw Error(ErrorCode::invalid_argument, "imclient: bad group id");
            }
        } else if (peer == 0 || peer > 0xffffffffULL) {
            throw Error(ErrorCode::invalid_argument, "imclient: bad peer user id");
        }
        std::size_t n = queued.load();
        do {
            if (n >= options.max_outbox) {
                throw Error(ErrorCode::outbox_full, "imclient: the outbox is full (" +
                                                        std::to_string(options.max_outbox) +
                                                        " unacknowledged messages)");
            }
        } while (!queued.compare_exchange_weak(n, n + 1));
        m.peer = peer;
        m.group = group;
        m.client_msg_id = detail::random_client_msg_id();
        m.owner = engine->session_user();
        std::string id = detail::to_hex(m.client_msg_id);
        if (!state) {
            post([e = engine.get(), m = std::move(m)]() mutable { e->send(std::move(m)); });
            return id;
        }
        // In the log before send_*() returns, and in the log in the order the engine gets them.
        std::lock_guard lock(enqueue_mu);
        try {
            state->add(m);
        } catch (...) {
            --queued;
            throw;
        }
        post([e = engine.get(), m = std::move(m)]() mutable { e->send(std::move(m)); });
        return id;
    }

    // The file thread runs uploads and downloads (local disk I/O stays off the chat thread).
    asio::io_context& files_io() {
        std::call_once(files_started, [this] {
            files_work.emplace(asio::make_work_guard(files));
            files_thread = std::thread([this] { files.run(); });
        });
        return files;
    }

    void stop_files() {
        if (!files_thread.joinable()) return;
        files.stop();  // transfers in flight are abandoned (their frames and files are released)
        files_thread.join();
    }

    // Progress reports go to the internal thread, like every callback.
    detail::Progress on_internal_thread(Client::ProgressHandler fn) {
        if (!fn) return {};
        auto shared = std::make_shared<Client::ProgressHandler>(std::move(fn));
        return [this, shared](std::uint64_t done, std::uint64_t total) {
            post([shared, done, total] {
                try {
                    (*shared)(done, total);
                } catch (...) {
                }
            });
        };
    }

    detail::FileHttp file_http(const std::string& token) const {
        detail::FileHttp h;
        h.rest_url = options.rest_url;
        h.token = token;
        h.tls_ca_file = options.tls_ca_file;
        h.user_agent = options.client_version;
        h.connect_timeout = options.connect_timeout;
        h.io_timeout = options.request_timeout;
        return h;
    }

    // Declared first: destroyed last, after the engine that writes to it (a last fdatasync, then
    // the directory's lock is released).
    std::shared_ptr<detail::StateLog> state;
    std::vector<RestoredSend> restored_sends;
    std::mutex enqueue_mu;  // with a state log: add() and post() in one order
    Options options;
    asio::io_context files;  // declared before io: destroyed after the engine and io
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> files_work;
    std::once_flag files_started;
    std::thread files_thread;
    asio::io_context io;  // declared before the engine: destroyed after it
    asio::executor_work_guard<asio::io_context::executor_type> work;
    std::atomic<std::size_t> queued{0};
    std::unique_ptr<detail::Engine> engine;
    std::thread thread;
};

Client::Client(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Client::~Client() {
    if (std::this_thread::get_id() == impl_->thread.get_id()) {
        std::fputs("imclient: a Client must not be destroyed from its own callback\n", stderr);
        std::abort();
    }
    impl_->post([impl = impl_.get()] {
        impl->engine->callbacks = detail::Callbacks{};  // no callback from a destructor
        impl->engine->close("client destroyed");
        impl->io.stop();  // whatever is still pending is destroyed, never run
    });
    impl_->work.reset();
    impl_->thread.join();
    impl_->stop_files();
    impl_->engine.reset();
}

void Client::on_message(MessageHandler fn) {
    impl_->post([e = impl_->engine.get(), fn = std::move(fn)]() mutable {
        e->callbacks.message = std::move(fn);
    });
}
void Client::on_sent(SentHandler fn) {
    impl_->post([e = impl_->engine.get(), fn = std::move(fn)]() mutable {
        e->callbacks.sent = std::move(fn);
    });
}
void Client::on_send_failed(SendFailedHandler fn) {
    impl_->post([e = impl_->engine.get(), fn = std::move(fn)]() mutable {
        e->callbacks.send_failed = std::move(fn);
    });
}
void Client::on_receipt(ReceiptHandler fn) {
    impl_->post([e = impl_->engine.get(), fn = std::move(fn)]() mutable {
        e->callbacks.receipt = std::move(fn);
    });
}
void Client::on_state(StateHandler fn) {
    impl_->post([e = impl_->engine.get(), fn = std::move(fn)]() mutable {
        e->callbacks.state = std::move(fn);
    });
}
void Client::on_typing(TypingHandler fn) {
    impl_->post([e = impl_->engine.get(), fn = std::move(fn)]() mutable {
        e->callbacks.typing = std::move(fn);
    });
}
void Client::on_presence(PresenceHandler fn) {
    impl_->post([e = impl_->engine.get(), fn = std::move(fn)]() mutable {
        e->callbacks.presence = std::move(fn);
    });
}
void Client::on_member_receipt(MemberReceiptHandler fn) {
    impl_->post([e = impl_->engine.get(), fn = std::move(fn)]() mutable {
        e->callbacks.member_receipt = std::move(fn);
    });
}

std::future<LoginInfo> Client::login(std::string username, std::string password) {
    std::promise<LoginInfo> promise;
    auto future = promise.get_future();
    impl_->post([e = impl_->engine.get(), u = std::move(username), p = std::move(password),
                 promise = std::move(promise)]() mutable {
        e->login(std::move(u), std::move(p), std::move(promise));
    });
    return future;
}

std::future<LoginInfo> Client::login_with_token(std::string token, std::uint64_t user_id,
                                                std::vector<std::string> connectors) {
    std::promise<LoginInfo> promise;
    auto future = promise.get_future();
    impl_->post([e = impl_->engine.get(), t = std::move(token), user_id, c = std::move(connectors),
                 promise = std::move(promise)]() mutable {
        e->login_with_token(std::move(t), user_id, std::move(c), std::move(promise));
    });
    return future;
}

std::string Client::send_text(std::uint64_t peer_user_id, std::string text) {
    detail::OutMessage m;
    m.type = MessageType::text;
    m.text = std::move(text);
    return impl_->enqueue(peer_user_id, 0, std::move(m));
}

std::string Client::send_file(std::uint64_t peer_user_id, const FileRef& file) {
    detail::OutMessage m;
    m.type = MessageType::file;
    m.file = file;
    return impl_->enqueue(peer_user_id, 0, std::move(m));
}

std::string Client::send_group_text(std::uint64_t group_id, std::string text) {
    detail::OutMessage m;
    m.type = MessageType::text;
    m.text = std::move(text);
    return impl_->enqueue(0, group_id, std::move(m));
}

std::string Client::send_group_file(std::uint64_t group_id, const FileRef& file) {
    detail::OutMessage m;
    m.type = MessageType::file;
    m.file = file;
    return impl_->enqueue(0, group_id, std::move(m));
}

std::future<FileSent> Client::send_file(std::uint64_t peer_user_id, std::string path,
                                        ProgressHandler progress) {
    if (peer_user_id == 0 || peer_user_id > 0xffffffffULL) {
        std::promise<FileSent> promise;
        promise.set_exception(std::make_exception_ptr(
            Error(ErrorCode::invalid_argument, "imclient: bad peer user id")));
        return promise.get_future();
    }
    return upload_and_send(peer_user_id, 0, std::move(path), std::move(progress));
}

std::future<FileSent> Client::send_group_file(std::uint64_t group_id, std::string path,
                                              ProgressHandler progress) {
    if (!is_group_conversation(group_id)) {
        std::promise<FileSent> promise;
        promise.set_exception(
            std::make_exception_ptr(Error(ErrorCode::invalid_argument, "imclient: bad group id")));
        return promise.get_future();
    }
    return upload_and_send(0, group_id, std::move(path), std::move(progress));
}

std::future<FileSent> Client::upload_and_send(std::uint64_t peer_user_id, std::uint64_t group_id,
                                              std::string path, ProgressHandler progress) {
    auto promise = std::make_shared<std::promise<FileSent>>();
    auto future = promise->get_future();
    auto prog = impl_->on_internal_thread(std::move(progress));
    impl_->post([impl = impl_.get(), peer_user_id, group_id, path = std::move(path),
                 prog = std::move(prog), promise]() mutable {
        const auto& token = impl->engine->token();
        if (token.empty()) {
            promise->set_exception(std::make_exception_ptr(
                Error(ErrorCode::not_logged_in, "imclient: send_file needs a login")));
            return;
        }
        detail::upload_file(
            impl->files_io(), impl->file_http(token), std::move(path), std::move(prog),
            [impl, peer_user_id, group_id, promise](detail::FileResult r) {
                if (r.code != ErrorCode::none) {
                    promise->set_exception(std::make_exception_ptr(Error(r.code, r.message)));
                    return;
                }
                try {
                    detail::OutMessage m;
                    m.type = MessageType::file;
                    m.file = r.file;
                    FileSent sent;
                    sent.client_msg_id = impl->enqueue(peer_user_id, group_id, std::move(m));
                    sent.file = std::move(r.file);
                    promise->set_value(std::move(sent));
                } catch (...) {
                    promise->set_exception(std::current_exception());
                }
            });
    });
    return future;
}

std::future<FileRef> Client::download(std::uint64_t file_id, std::string path,
                                      ProgressHandler progress, std::string expected_sha256) {
    auto promise = std::make_shared<std::promise<FileRef>>();
    auto future = promise->get_future();
    if (file_id == 0 || path.empty()) {
        promise->set_exception(std::make_exception_ptr(
            Error(ErrorCode::invalid_argument, "imclient: download needs a file id and a path")));
        return future;
    }
    auto prog = impl_->on_internal_thread(std::move(progress));
    impl_->post([impl = impl_.get(), file_id, path = std::move(path),
                 sha = std::move(expected_sha256), prog = std::move(prog), promise]() mutable {
        const auto& token = impl->engine->token();
        if (token.empty()) {
            promise->set_exception(std::make_exception_ptr(
                Error(ErrorCode::not_logged_in, "imclient: download needs a login")));
            return;
        }
        detail::download_file(
            impl->files_io(), impl->file_http(token), file_id, std::move(path), std::move(sha),
            std::move(prog), [promise](detail::FileResult r) {
                if (r.code != ErrorCode::none) {
                    promise->set_exception(std::make_exception_ptr(Error(r.code, r.message)));
                } else {
                    promise->set_value(std::move(r.file));
                }
            });
    });
    return future;
}

void Client::mark_read(std::uint64_t conversation_id, std::uint64_t seq) {
    impl_->post(
        [e = impl_->engine.get(), conversation_id, seq] { e->mark_read(conversation_id, seq); });
}

void Client::typing(std::uint64_t peer_user_id) {
    impl_->post([e = impl_->engine.get(), peer_user_id] { e->typing(peer_user_id, 0); });
}

void Client::group_typing(std::uint64_t group_id) {
    if (!is_group_conversation(group_id)) return;
    impl_->post([e = impl_->engine.get(), group_id] { e->typing(0, group_id); });
}

std::future<ReadByResult> Client::read_by(std::uint64_t conversation_id, std::uint64_t seq) {
    std::promise<ReadByResult> promise;
    auto future = promise.get_future();
    if (!is_group_conversation(conversation_id) || seq == 0) {
        promise.set_exception(std::make_exception_ptr(
            Error(ErrorCode::invalid_argument,
                  "imclient: read_by needs a group conversation and a seq")));
        return future;
    }
    impl_->post(
        [e = impl_->engine.get(), conversation_id, seq, promise = std::move(promise)]() mutable {
            e->read_by(conversation_id, seq, std::move(promise));
        });
    return future;
}

std::future<std::vector<Conversation>> Client::conversations() {
    std::promise<std::vector<Conversation>> promise;
    auto future = promise.get_future();
    impl_->post([e = impl_->engine.get(), promise = std::move(promise)]() mutable {
        e->conversations(std::move(promise));
    });
    return future;
}

std::future<std::vector<Message>> Client::history(std::uint64_t conversation_id,
                                                  std::uint64_t before_seq, std::uint32_t limit) {
    std::promise<std::vector<Message>> promise;
    auto future = promise.get_future();
    impl_->post([e = impl_->engine.get(), conversation_id, before_seq, limit,
                 promise = std::move(promise)]() mutable {
        e->history(conversation_id, before_seq, limit, std::move(promise));
    });
    return future;
}

void Client::close() {
    impl_->post([e = impl_->engine.get()] { e->close("closed by the app"); });
}

std::uint64_t Client::user_id() const {
    return impl_->engine->user_id();
}
State Client::state() const {
    return impl_->engine->state();
}
std::size_t Client::pending_sends() const {
    return impl_->queued.load();
}
const std::vector<RestoredSend>& Client::restored_sends() const {
    return impl_->restored_sends;
}
const std::string& Client::device_id() const {
    return impl_->options.device_id;
}

}  // namespace imclient
