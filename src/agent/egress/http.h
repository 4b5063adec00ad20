#pragma once
// The HTTP request/response model of the egress layer, and Transport: the
// seam between code that talks to the hub (auth, control) and the only code
// allowed to open connections (HttpClient). Tests substitute a fake Transport.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/secrets/secret_value.h"
#include "common/result.h"

namespace sa::agent::egress {

// An Authorization header whose credentials stay in a SecretValue: the
// egress layer builds the header line itself, never logs it and never puts
// it in an error.
//
// Scheme::header sends the credentials as the whole value of another header
// (header_name), for APIs with their own token header such as Dapr's
// "dapr-api-token" or Vault's "X-Vault-Token"; it is handled exactly like
// Authorization: never logged, its header line wiped, and dropped when a
// redirect leaves the host.
struct Authorization {
    enum class Scheme { basic, bearer, header };
    Scheme scheme = Scheme::bearer;
    // Not owned; must outlive send(). Basic: the base64 "id:secret" token.
    const secrets::SecretValue* credentials = nullptr;
    std::string header_name;  // Scheme::header only: a token (RFC 9110) name

    static Authorization basic(const secrets::SecretValue& token) {
        return {Scheme::basic, &token, {}};
    }
    static Authorization bearer(const secrets::SecretValue& token) {
        return {Scheme::bearer, &token, {}};
    }
    static Authorization header(std::string name, const secrets::SecretValue& token) {
        return {Scheme::header, &token, std::move(name)};
    }
};

struct HttpRequest {
    std::string method = "GET";
    std::string url;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string_view body;  // not owned; must outlive send()
    std::chrono::milliseconds timeout{30'000};
    std::optional<Authorization> authorization;
    // The job this request serves (empty for none), copied into its
    // ConnectionRecord so the network log ties connections to jobs; not sent.
    std::string job_id;
};

struct HttpResponse {
    long status = 0;
    // Lower-cased names; repeated fields joined with ", ".
    std::map<std::string, std::string> headers;
    std::string body;

    // nullptr when absent; name must be lower case.
    const std::string* header(const std::string& name) const {
        auto it = headers.find(name);
        return it == headers.end() ? nullptr : &it->second;
    }
};

// Told about every hub request: endpoint is a short label ("token",
// "lease", "chunk", "complete", "fail"), status the HTTP status or 0 when no
// response arrived. Used for metrics; must not block.
using ResponseObserver = std::function<void(std::string_view endpoint, long status)>;

class Transport {
  public:
    virtual ~Transport() = default;
    // Sends one request and returns the response, whatever its status: HTTP
    // errors are responses, not Errors. Errors are for requests that got no
    // response: unavailable (network, TLS, timeout, aborted),
    // permission_denied (egress policy), invalid_argument (bad URL, response
    // too large).
    virtual Result<HttpResponse> send(const HttpRequest& request) = 0;
};

}  // namespace sa::agent::egress
