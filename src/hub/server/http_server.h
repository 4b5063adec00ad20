#pragma once
// HTTPS front of the Api on cpp-httplib: TLS 1.2 minimum, the hub's server
// certificate, a large worker pool for long polls, JSON request logs.
//
// Lifecycle: create() -> bind() -> run() (blocks) ; stop() from any thread
// makes run() return. The object must outlive run().
#include <chrono>
#include <memory>
#include <string>

#include "common/result.h"
#include "hub/server/api.h"
#include "hub/server/request_log.h"

namespace sa::hub::server {

struct HttpServerOptions {
    std::string host = "127.0.0.1";
    int port = 8443;  // 0: the OS picks
    std::string cert_file;
    std::string key_file;
    size_t threads = 64;          // every waiting long poll holds one
    int io_timeout_seconds = 60;  // > the longest long poll (30 s)
};

class HttpServer final {
  public:
    // Errors: invalid_argument when the certificate or key cannot be loaded.
    static Result<std::unique_ptr<HttpServer>> create(Api& api, JsonLog& log,
                                                      const HttpServerOptions& options);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // Binds the listening socket; returns the port (useful with port 0).
    Result<int> bind();
    // Serves until stop(). Returns false if the server could not run.
    bool run();
    void stop();
    // Waits until run() accepts connections; false on timeout.
    bool wait_until_running(std::chrono::milliseconds timeout) const;
    bool is_running() const;

  private:
    struct Impl;
    explicit HttpServer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace sa::hub::server
