#pragma once
// Test-only: an in-process fake of agent-hub behind the egress::Transport
// seam (no sockets), plus helpers to sign jobs and build a source database.
// Used by the app tests; the real two-process tests live in tests/integration.
#include <deque>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <stdexcept>
#include <string>
#include <vector>

#include "agent/egress/http.h"
#include "common/crypto/digest.h"
#include "common/crypto/ed25519.h"
#include "common/jose/jws.h"
#include "common/protocol/content_digest.h"
#include "common/protocol/protocol.h"
#include "common/sqlite/database.h"
#include "common/util/time.h"

namespace sa::agent::app::testing {

using nlohmann::json;

class FakeHub final : public egress::Transport {
  public:
    struct Upload {
        std::string job_id;
        int64_t seq = 0;
        std::string lease_id;
        std::string body;
    };

    Result<egress::HttpResponse> send(const egress::HttpRequest& request) override {
        const std::string path = request.url.substr(request.url.find('/', 8));
        paths.push_back(request.method + " " + path);
        if (on_request) on_request(path);
        std::smatch m;
        if (path == protocol::kTokenPath) {
            if (token_failures > 0) {
                --token_failures;
                return fail(ErrorCode::unavailable, "cannot reach hub.test");
            }
            return reply(
                200, json{{"access_token", "tok"}, {"token_type", "Bearer"}, {"expires_in", 900}});
        }
        if (path == protocol::kLeasePath) {
            lease_requests.push_back(json::parse(std::string(request.body)));
            if (leases.empty()) return reply(204, nullptr);
            auto next = std::move(leases.front());
            leases.pop_front();
            return next;
        }
        const std::string body(request.body);
        if (std::regex_match(path, m, std::regex(R"(/v1/jobs/([^/]+)/chunks/(\d+))"))) {
            std::string lease, digest;
            for (const auto& [name, value] : request.headers) {
                if (name == protocol::kLeaseHeader) lease = value;
                if (name == protocol::kDigestHeader) digest = value;
            }
            auto parsed = protocol::parse_content_digest_sha256(digest);
            if (!parsed || *parsed != crypto::sha256(body)) {
                return reply(400, json{{"error", "digest_mismatch"}});
            }
            if (chunk_status != 201) return reply(chunk_status, json{{"error", "chunk_conflict"}});
            uploads.push_back({m[1], std::stoll(m[2]), lease, body});
            return reply(201, json{{"seq", std::stoll(m[2])},
                                   {"sha256", crypto::sha256_hex(body)},
                                   {"size", body.size()}});
        }
        if (std::regex_match(path, m, std::regex(R"(/v1/jobs/([^/]+)/complete)"))) {
            completions.push_back(json::parse(body));
            return reply(200, json{{"job_id", m[1]}, {"status", "succeeded"}});
        }
        if (std::regex_match(path, m, std::regex(R"(/v1/jobs/([^/]+)/heartbeat)"))) {
            heartbeats.push_back(json::parse(body));
            if (heartbeat_status != 200) {
                return reply(heartbeat_status, json{{"error", "lease_lost"}});
            }
            return reply(200, json{{"job_id", m[1]},
                                   {"lease_expires_at", util::unix_seconds() + 600},
                                   {"cancel", cancel}});
        }
        if (std::regex_match(path, m, std::regex(R"(/v1/jobs/([^/]+)/fail)"))) {
            failures.push_back(json::parse(body));
            failures.back()["job_id"] = m[1];
            return reply(200, json{{"job_id", m[1]}, {"status", "refused"}});
        }
        return reply(404, json{{"error", "not_found"}});
    }

    static egress::HttpResponse reply(long status, const json& body) {
        egress::HttpResponse response;
        response.status = status;
        if (!body.is_null()) response.body = body.dump();
        response.headers["content-type"] = "application/json";
        return response;
    }

    // Queues a 200 lease response carrying the given JWS.
    void queue_job(const std::string& job_id, const std::string& lease_id, const std::string& jws) {
        leases.push_back(reply(200, json{{"lease_id", lease_id},
                                         {"job_id", job_id},
                                         {"lease_expires_at", util::unix_seconds() + 600},
                                         {"job", jws}}));
    }

    std::deque<Result<egress::HttpResponse>> leases;
    int token_failures = 0;
    long chunk_status = 201;
    long heartbeat_status = 200;  // 409: the lease is lost
    bool cancel = false;          // heartbeats answer cancel: true
    std::vector<json> heartbeats;
    std::function<void(const std::string& path)> on_request;
    std::vector<std::string> paths;
    std::vector<json> lease_requests;
    std::vector<Upload> uploads;
    std::vector<json> completions;
    std::vector<json> failures;
};

// A job JWS as the hub signs it (protocol section 2).
inline std::string sign_job(const crypto::Ed25519PrivateKey& key, const std::string& audience,
                            const std::string& job_id, const std::string& lease_id,
                            const std::string& source,
                            const std::string& operation = protocol::kOperationExtractMetadata,
                            const json& filters = nullptr) {
    const int64_t now = util::unix_seconds();
    json claims{{"iss", protocol::kIssuer},
                {"aud", audience},
                {"jti", lease_id},
                {"iat", now},
                {"nbf", now},
                {"exp", now + 600},
                {"job_id", job_id},
                {"app", "test-app"},
                {"source", source},
                {"operation", operation}};
    json signed_claims = claims;
    if (!filters.is_null()) signed_claims["filters"] = filters;
    return jose::sign(key, key.public_key().key_id(), protocol::kJobType, signed_claims);
}

// A small SQLite catalog: two tables (one with a foreign key) and a view.
inline void make_source_db(const std::string& path) {
    auto db = sqlite::Database::open(path, sqlite::Database::Mode::read_write_create);
    if (!db) throw std::runtime_error(db.error().describe());
    auto ok = db->exec(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES "
        "customers(id) ON DELETE CASCADE, total NUMERIC DEFAULT 0);"
        "CREATE INDEX idx_orders_customer ON orders(customer_id);"
        "CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 100;");
    if (!ok) throw std::runtime_error(ok.error().describe());
}

}  // namespace sa::agent::app::testing
