#pragma once
// Test-only HTTPS server on 127.0.0.1 with an OS-chosen port (cpp-httplib
// SSLServer), configurable TLS versions, and a record of the TLS versions
// each ClientHello offered, so tests can prove the client's own TLS floor.
#include <httplib.h>
#include <openssl/ssl.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "agent/egress/testing/test_pki.h"

namespace sa::agent::testing {

class TlsTestServer final {
  public:
    struct Options {
        int min_version = TLS1_2_VERSION;
        int max_version = 0;      // 0: the highest OpenSSL supports
        int security_level = -1;  // -1: OpenSSL's default
        std::string ciphers;      // empty: OpenSSL's default
    };

    explicit TlsTestServer(const TestPki& pki) : TlsTestServer(pki, Options{}) {}
    TlsTestServer(const TestPki& pki, Options options);
    ~TlsTestServer();
    TlsTestServer(const TlsTestServer&) = delete;
    TlsTestServer& operator=(const TlsTestServer&) = delete;

    // Register handlers here before start().
    httplib::Server& http() { return *server_; }
    // Binds 127.0.0.1:0 and returns once the server accepts connections.
    void start();
    // Stops accepting and joins the server thread; idempotent.
    void stop();

    int port() const { return port_; }
    std::string url(std::string_view path = "") const;

    // Every TLS version (e.g. 0x0303) offered by each ClientHello so far.
    std::vector<std::vector<int>> offered_versions() const;

  private:
    static int on_client_hello(SSL* ssl, int* alert, void* arg);

    mutable std::mutex mutex_;
    std::vector<std::vector<int>> offered_;
    std::unique_ptr<httplib::SSLServer> server_;
    std::thread thread_;
    std::atomic<bool> finished_{false};
    int port_ = 0;
};

}  // namespace sa::agent::testing
