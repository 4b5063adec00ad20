#include "agent/secrets/dapr/dapr_test_server.h"

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "agent/egress/testing/test_pki.h"

namespace sa::agent::secrets::dapr::testing {
namespace {

std::string dapr_error_body(const std::string& code, const std::string& message) {
    return nlohmann::json{{"errorCode", code}, {"message", message}}.dump();
}

// Percent-decoding of one raw path segment; nullopt for a bad escape.
std::optional<std::string> decode_segment(const std::string& raw) {
    std::string out;
    for (size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] != '%') {
            out += raw[i];
            continue;
        }
        if (i + 2 >= raw.size() || !std::isxdigit(static_cast<unsigned char>(raw[i + 1])) ||
            !std::isxdigit(static_cast<unsigned char>(raw[i + 2]))) {
            return std::nullopt;
        }
        out += static_cast<char>(std::stoi(raw.substr(i + 1, 2), nullptr, 16));
        i += 2;
    }
    return out;
}

}  // namespace

DaprTestServer::DaprTestServer() : tls_(agent::testing::pki()) {
    const auto handler = [this](const httplib::Request& req, httplib::Response& res) {
        handle(req, res);
    };
    plain_.Get(R"(/.*)", handler);
    tls_.http().Get(R"(/.*)", handler);
    plain_.set_keep_alive_timeout(1);

    http_port_ = plain_.bind_to_any_port("127.0.0.1");
    if (http_port_ <= 0) std::abort();
    plain_thread_ = std::thread([this] {
        plain_.listen_after_bind();
        plain_finished_ = true;
    });
    while (!plain_.is_running() && !plain_finished_) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    tls_.start();
}

DaprTestServer::~DaprTestServer() {
    plain_.stop();
    plain_thread_.join();
    tls_.stop();
}

void DaprTestServer::put_secret(const std::string& store, const std::string& name,
                                std::map<std::string, std::string> entries) {
    std::lock_guard lock(mutex_);
    stores_[store][name] = std::move(entries);
}
void DaprTestServer::deny(const std::string& store, const std::string& name) {
    std::lock_guard lock(mutex_);
    denied_.insert({store, name});
}
void DaprTestServer::require_api_token(const std::string& token) {
    std::lock_guard lock(mutex_);
    api_token_ = token;
}
void DaprTestServer::fail(int status, const std::string& body, int times) {
    std::lock_guard lock(mutex_);
    for (int i = 0; i < times; ++i) failures_.emplace_back(status, body);
}
int DaprTestServer::requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
}
std::vector<std::string> DaprTestServer::violations() const {
    std::lock_guard lock(mutex_);
    return violations_;
}

void DaprTestServer::handle(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mutex_);
    ++requests_;
    const auto answer = [&](int status, const std::string& body) {
        res.status = status;
        if (!body.empty()) res.set_content(body, "application/json");
    };
    // The API token middleware runs before routing.
    if (!api_token_.empty() && req.get_header_value("dapr-api-token") != api_token_) {
        res.status = 401;
        res.set_content("invalid api token", "text/plain");
        return;
    }
    if (api_token_.empty() && req.has_header("dapr-api-token")) {
        violations_.push_back("dapr-api-token sent although none is configured");
    }

    // Route on the raw target: /v1.0/secrets/{store}/{name}, no query.
    static const std::string prefix = "/v1.0/secrets/";
    const std::string& target = req.target;
    const size_t split = target.find('/', prefix.size());
    if (!target.starts_with(prefix) || split == std::string::npos ||
        target.find_first_of("/?", split + 1) != std::string::npos) {
        violations_.push_back("unexpected target " + target);
        answer(404, "");
        return;
    }
    const auto store = decode_segment(target.substr(prefix.size(), split - prefix.size()));
    const auto name = decode_segment(target.substr(split + 1));
    if (!store || !name || name->empty()) {
        violations_.push_back("bad escape in " + target);
        answer(400, dapr_error_body("ERR_MALFORMED_REQUEST", "malformed request"));
        return;
    }
    if (req.get_header_value("Accept") != "application/json") {
        violations_.push_back("Accept: " + req.get_header_value("Accept"));
    }
    if (!failures_.empty()) {
        const auto failure = failures_.front();
        failures_.erase(failures_.begin());
        answer(failure.first, failure.second);
        return;
    }
    const auto component = stores_.find(*store);
    if (component == stores_.end()) {
        answer(400, dapr_error_body("ERR_SECRET_STORE_NOT_FOUND",
                                    "failed finding secret store with key " + *store));
        return;
    }
    if (denied_.contains({*store, *name})) {
        answer(403,
               dapr_error_body("ERR_PERMISSION_DENIED", "access denied by policy to get \"" +
                                                            *name + "\" from \"" + *store + "\""));
        return;
    }
    const auto secret = component->second.find(*name);
    if (secret == component->second.end()) {
        res.status = 204;  // documented: secret not found
        return;
    }
    answer(200, nlohmann::json(secret->second).dump());
}

}  // namespace sa::agent::secrets::dapr::testing
