#pragma once
// Test-only Dapr sidecar secrets API on 127.0.0.1, over plain http (as the
// sidecar serves it) and https, faithful to
// https://docs.dapr.io/reference/api/secrets_api/ and strict about requests:
//
//   GET /v1.0/secrets/{secret-store-name}/{name}   (dapr-api-token when set)
//   200 JSON object of string values; 204 secret not found (empty body);
//   400 {"errorCode":"ERR_SECRET_STORE_NOT_FOUND","message"} store missing;
//   403 {"errorCode":"ERR_PERMISSION_DENIED","message"} denied by the
//   component's secret scope; 500 {"errorCode":"ERR_SECRET_GET","message"};
//   401 when the sidecar requires an API token and the request lacks it
//   (https://docs.dapr.io/operations/security/api-token/; the docs give
//   only the status, so the body here is a short text).
//
// {name} is one path segment: a '/' inside a name must arrive as %2F (the
// sidecar routes on the raw path). Requests that break the protocol are
// answered 400 and recorded in violations().
#include <httplib.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/egress/testing/tls_test_server.h"

namespace sa::agent::secrets::dapr::testing {

class DaprTestServer final {
  public:
    DaprTestServer();  // starts the http and the https listener
    ~DaprTestServer();
    DaprTestServer(const DaprTestServer&) = delete;
    DaprTestServer& operator=(const DaprTestServer&) = delete;

    std::string http_address() const { return "http://127.0.0.1:" + std::to_string(http_port_); }
    std::string https_address() const { return tls_.url(); }
    int http_port() const { return http_port_; }
    int https_port() const { return tls_.port(); }

    // A secret of component `store`: its key/value map (replaces any before).
    void put_secret(const std::string& store, const std::string& name,
                    std::map<std::string, std::string> entries);
    // Names the component's secret scope denies (403).
    void deny(const std::string& store, const std::string& name);
    // The sidecar requires this dapr-api-token (empty: none required).
    void require_api_token(const std::string& token);
    // The next answers have this status and body (one per entry).
    void fail(int status, const std::string& body, int times = 1);

    int requests() const;
    std::vector<std::string> violations() const;

  private:
    void handle(const httplib::Request& req, httplib::Response& res);

    mutable std::mutex mutex_;
    std::map<std::string, std::map<std::string, std::map<std::string, std::string>>> stores_;
    std::set<std::pair<std::string, std::string>> denied_;
    std::string api_token_;
    std::vector<std::pair<int, std::string>> failures_;
    int requests_ = 0;
    std::vector<std::string> violations_;

    httplib::Server plain_;
    std::thread plain_thread_;
    std::atomic<bool> plain_finished_{false};
    int http_port_ = 0;
    agent::testing::TlsTestServer tls_;
};

}  // namespace sa::agent::secrets::dapr::testing
