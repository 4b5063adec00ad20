#pragma once
// `agent-hub serve`: the whole control plane in one process. Startup is a
// short list of named steps (Hub::start):
//   1. key material   (pki::ensure: CA, server certificate, signing keys)
//   2. database       (store::Store, WAL)
//   3. change watcher (store::ChangeNotifier: sees jobs created by the CLI)
//   4. services       (identity, jobs, ingest, Api)
//   5. listener       (HttpServer bound; DIR/listen-url written)
#include <atomic>
#include <chrono>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto/password_hash.h"
#include "common/result.h"
#include "hub/clock/clock.h"
#include "hub/server/request_log.h"
#include "hub/store/layout.h"

namespace sa::hub::server {

struct ListenAddress {
    std::string host = "127.0.0.1";
    int port = 8443;

    // https://HOST:PORT, with brackets around an IPv6 host.
    std::string url() const;
};

// "HOST:PORT" or "[IPV6]:PORT"; port 0..65535 (0: the OS picks).
Result<ListenAddress> parse_listen_address(std::string_view text);

struct HubOptions {
    std::string data_dir;
    ListenAddress listen;
    std::vector<std::string> extra_sans;
    // Cost of the dummy hash that unknown clients are checked against; keep
    // the production default outside tests.
    crypto::ScryptParams scrypt;
    // expires_in of issued access tokens (identity::kMin/kMaxAccessTokenLifetime).
    int access_token_lifetime_seconds = 900;
    // How long a lease lasts and how far each heartbeat extends it
    // (protocol::kMinLeaseSeconds..kMaxLeaseSeconds).
    int lease_seconds = 600;
    size_t threads = 64;
    std::chrono::milliseconds watch_interval{20};
};

class Hub final {
  public:
    // Runs steps 1-5. The clock must outlive the Hub.
    static Result<std::unique_ptr<Hub>> start(const HubOptions& options, JsonLog& log,
                                              const clock::Clock& clock);
    ~Hub();
    Hub(const Hub&) = delete;
    Hub& operator=(const Hub&) = delete;

    // The URL the listener is bound to, e.g. https://127.0.0.1:40123.
    const std::string& url() const;
    const store::Layout& layout() const;
    // Files created by this start (empty on a restart with existing material).
    const std::vector<std::string>& created_files() const;

    // Serves until stop(). False when the listener failed.
    bool run();
    // Wakes waiting long polls and stops the listener. Thread-safe and
    // idempotent; call again if run() has not returned yet (a stop that
    // lands before the listener loop starts has no effect in cpp-httplib).
    void stop();
    bool wait_until_running(std::chrono::milliseconds timeout) const;

  private:
    struct Impl;
    explicit Hub(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// The `serve` command: prints where the CA and the job-signing key are,
// serves until SIGINT/SIGTERM, and returns the process exit code.
int serve(const HubOptions& options, std::ostream& out, std::ostream& err);

}  // namespace sa::hub::server
