#include "hub/server/serve.h"

#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <thread>

#include "build_info.h"
#include "common/protocol/protocol.h"
#include "common/util/files.h"
#include "hub/identity/app_registry.h"
#include "hub/identity/token_service.h"
#include "hub/ingest/ingest.h"
#include "hub/jobs/dispatcher.h"
#include "hub/jobs/job_queue.h"
#include "hub/jobs/job_signer.h"
#include "hub/pki/pki.h"
#include "hub/server/api.h"
#include "hub/server/http_server.h"
#include "hub/store/change_notifier.h"
#include "hub/store/store.h"

namespace sa::hub::server {

std::string ListenAddress::url() const {
    bool v6 = host.find(':') != std::string::npos;
    return "https://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<ListenAddress> parse_listen_address(std::string_view text) {
    auto bad = [&] {
        return fail(ErrorCode::invalid_argument,
                    "--listen must be HOST:PORT or [IPV6]:PORT, got '" + std::string(text) + "'");
    };
    std::string_view host;
    std::string_view port;
    if (!text.empty() && text.front() == '[') {
        size_t close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            return bad();
        }
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        size_t colon = text.rfind(':');
        if (colon == std::string_view::npos) return bad();
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (host.find(':') != std::string_view::npos) return bad();  // IPv6 needs brackets
    }
    if (host.empty() || port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string_view::npos) {
        return bad();
    }
    int value = std::stoi(std::string(port));
    if (value > 65535) return bad();
    return ListenAddress{std::string(host), value};
}

struct Hub::Impl {
    const clock::Clock& clock;
    store::Layout layout;
    std::vector<std::string> created;
    std::string url;
    // Declaration order is construction order; destruction runs backwards,
    // so the listener goes first and the database last.
    std::unique_ptr<store::Store> store;
    std::unique_ptr<store::ChangeNotifier> notifier;
    std::unique_ptr<identity::AppRegistry> apps;
    std::unique_ptr<identity::TokenService> tokens;
    std::unique_ptr<jobs::JobQueue> queue;
    std::unique_ptr<jobs::JobSigner> signer;
    std::unique_ptr<jobs::Dispatcher> dispatcher;
    std::unique_ptr<ingest::Ingest> ingest;
    std::unique_ptr<Api> api;
    std::unique_ptr<HttpServer> http;

    explicit Impl(const clock::Clock& c) : clock(c) {}
};

Result<std::unique_ptr<Hub>> Hub::start(const HubOptions& options, JsonLog& log,
                                        const clock::Clock& clock) {
    auto impl = std::make_unique<Impl>(clock);
    // OpenSSL writes to sockets without MSG_NOSIGNAL: a peer that disappears
    // mid-response would otherwise kill the whole process with SIGPIPE.
    signal(SIGPIPE, SIG_IGN);

    // 1. Key material.
    auto material = pki::ensure(options.data_dir, options.extra_sans);
    if (!material) return std::unexpected(material.error());
    impl->layout = material->layout;
    impl->created = material->created;
    const store::Layout& l = impl->layout;

    // 2. Database.
    auto store = store::Store::open(l.database);
    if (!store) return std::unexpected(store.error());
    impl->store = std::move(*store);

    // 3. Change watcher.
    auto notifier = store::ChangeNotifier::start(l.database, options.watch_interval);
    if (!notifier) return std::unexpected(notifier.error());
    impl->notifier = std::move(*notifier);

    // 4. Services.
    impl->apps = std::make_unique<identity::AppRegistry>(*impl->store, clock, options.scrypt);
    impl->tokens = std::make_unique<identity::TokenService>(std::move(material->token_key), clock,
                                                            options.access_token_lifetime_seconds);
    if (options.lease_seconds < protocol::kMinLeaseSeconds ||
        options.lease_seconds > protocol::kMaxLeaseSeconds) {
        return fail(ErrorCode::invalid_argument,
                    "--lease-seconds must be " + std::to_string(protocol::kMinLeaseSeconds) + ".." +
                        std::to_string(protocol::kMaxLeaseSeconds));
    }
    impl->queue = std::make_unique<jobs::JobQueue>(*impl->store, clock, impl->notifier.get(),
                                                   std::chrono::seconds(options.lease_seconds));
    // The signer follows job-signing.key, so `pki rotate-job-key` takes
    // effect without a restart.
    auto signer = jobs::JobSigner::watching(l.job_key);
    if (!signer) return std::unexpected(signer.error());
    impl->signer = std::move(*signer);
    impl->dispatcher =
        std::make_unique<jobs::Dispatcher>(*impl->queue, *impl->signer, *impl->notifier);
    impl->ingest = std::make_unique<ingest::Ingest>(*impl->store, clock);
    impl->api = std::make_unique<Api>(Services{*impl->apps, *impl->tokens, *impl->queue,
                                               *impl->dispatcher, *impl->ingest, &clock});

    // 5. Listener. A stale listen-url from an earlier run must not point
    // anyone at a dead port while this one starts.
    std::remove(l.listen_url.c_str());
    auto http = HttpServer::create(*impl->api, log,
                                   HttpServerOptions{.host = options.listen.host,
                                                     .port = options.listen.port,
                                                     .cert_file = l.server_cert,
                                                     .key_file = l.server_key,
                                                     .threads = options.threads});
    if (!http) return std::unexpected(http.error());
    impl->http = std::move(*http);
    auto port = impl->http->bind();
    if (!port) return std::unexpected(port.error());
    ListenAddress bound = options.listen;
    bound.port = *port;
    impl->url = bound.url();
    if (auto s = util::write_file_atomic(l.listen_url, impl->url + "\n", 0644); !s) {
        return std::unexpected(s.error());
    }
    log.write("info", "hub_started",
              {{"version", build::kVersion},
               {"url", impl->url},
               {"data_dir", l.dir},
               {"token_key_id", impl->tokens->key_id()},
               {"access_token_lifetime_seconds", impl->tokens->lifetime_seconds()},
               {"job_key_id", impl->signer->key_id()},
               {"lease_seconds", options.lease_seconds}});
    return std::unique_ptr<Hub>(new Hub(std::move(impl)));
}

Hub::Hub(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Hub::~Hub() = default;

const std::string& Hub::url() const {
    return impl_->url;
}
const store::Layout& Hub::layout() const {
    return impl_->layout;
}
const std::vector<std::string>& Hub::created_files() const {
    return impl_->created;
}

bool Hub::run() {
    return impl_->http->run();
}

void Hub::stop() {
    impl_->notifier->shutdown();
    impl_->http->stop();
}

bool Hub::wait_until_running(std::chrono::milliseconds timeout) const {
    return impl_->http->wait_until_running(timeout);
}

int serve(const HubOptions& options, std::ostream& out, std::ostream& err) {
    // Signals are taken synchronously by one thread (sigtimedwait below), so
    // they are blocked before any other thread exists and inherit the mask.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    JsonLog log(err);
    clock::SystemClock clock;
    auto hub = Hub::start(options, log, clock);
    if (!hub) {
        err << "agent-hub serve: " << hub.error().describe() << "\n";
        return 1;
    }
    const store::Layout& l = (*hub)->layout();
    for (const auto& f : (*hub)->created_files()) out << "created " << f << "\n";
    out << "CA certificate (agents trust it as hub.ca_file): " << l.ca_cert << "\n";
    out << "job-signing public key (agents pin it as hub.job_signing_public_key): " << l.job_public
        << "\n";
    out << "listening on " << (*hub)->url() << std::endl;

    std::atomic<bool> done{false};
    std::thread signal_thread([&] {
        const timespec tick{0, 100 * 1000 * 1000};
        while (!done.load()) {
            int sig = sigtimedwait(&stop_signals, nullptr, &tick);
            if (sig != SIGINT && sig != SIGTERM) continue;
            log.write("info", "hub_stopping", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}});
            // Repeat until run() returns: a stop before the accept loop runs is lost.
            while (!done.load()) {
                (*hub)->stop();
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
        }
    });
    bool ok = (*hub)->run();
    done = true;
    signal_thread.join();
    std::remove(l.listen_url.c_str());
    if (!ok) {
        err << "agent-hub serve: the listener stopped unexpectedly\n";
        return 1;
    }
    log.write("info", "hub_stopped");
    return 0;
}

}  // namespace sa::hub::server
