// Egress rate limit: does an upload through HttpClient hold the configured
// rate? A loopback HTTPS server (the tests' TlsTestServer) receives one PUT
// of N MB, sent through HttpClient with an EgressPolicy and an
// EgressRateLimiter (global limit); the measured rate is printed with its
// ratio to the configured one. Reference from the same process: the same
// upload without a limiter (what the machine does unthrottled), so a ratio
// near 1 means the limiter, not the machine, set the pace.
//
// The bucket starts full, so the first burst_bytes go at once: the expected
// ratio is bytes / (bytes - burst), printed too (1.003 for 20 MB, 64 KiB).
//
// Usage: egress_rate_limit_bench [MB] [RATE_MB_PER_S] [BURST_KIB]
//        (defaults 20, 8, 64; MB = 1,000,000 bytes)
// Exits non-zero only when an upload fails or arrives altered.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include "agent/egress/http_client.h"
#include "agent/egress/policy.h"
#include "agent/egress/rate_limit.h"
#include "agent/egress/testing/test_pki.h"
#include "agent/egress/testing/tls_test_server.h"
#include "common/crypto/random.h"

namespace {

namespace fs = std::filesystem;
namespace egress = sa::agent::egress;
using Clock = std::chrono::steady_clock;

int fail(const std::string& what) {
    std::fprintf(stderr, "egress_rate_limit_bench: %s\n", what.c_str());
    return 1;
}

struct Received {
    std::mutex mutex;
    std::string body;
};

// Uploads body once; returns seconds, or a negative value on failure.
double upload(egress::HttpClient& client, const std::string& url, const std::string& body,
              Received& received, std::string& error) {
    egress::HttpRequest request;
    request.method = "PUT";
    request.url = url;
    request.body = body;
    request.headers = {{"Content-Type", "application/octet-stream"}};
    request.timeout = std::chrono::seconds(60);
    const auto start = Clock::now();
    auto response = client.send(request);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (!response) {
        error = response.error().describe();
        return -1;
    }
    if (response->status != 200) {
        error = "server answered " + std::to_string(response->status);
        return -1;
    }
    std::lock_guard lock(received.mutex);
    if (received.body != body) {
        error = "the server received " + std::to_string(received.body.size()) +
                " bytes that differ from the " + std::to_string(body.size()) + " sent";
        return -1;
    }
    received.body.clear();
    return seconds;
}

}  // namespace

int main(int argc, char** argv) {
    const double megabytes = argc > 1 ? std::atof(argv[1]) : 20;
    const double rate_mb = argc > 2 ? std::atof(argv[2]) : 8;
    const double burst_kib = argc > 3 ? std::atof(argv[3]) : 64;
    if (megabytes <= 0 || rate_mb <= 0 || burst_kib <= 0) {
        return fail("usage: egress_rate_limit_bench [MB] [RATE_MB_PER_S] [BURST_KIB] (all > 0)");
    }
    const auto bytes = static_cast<size_t>(megabytes * 1e6);
    const auto rate = static_cast<int64_t>(rate_mb * 1e6);
    const auto burst = static_cast<int64_t>(burst_kib * 1024);

    const auto pki = sa::agent::testing::TestPki::generate();
    const fs::path dir =
        fs::temp_directory_path() / ("sa-rate-bench-" + sa::crypto::random_token(6));
    const std::string ca_file =
        sa::agent::testing::write_test_file((dir / "ca.pem").string(), pki.ca.cert_pem);

    Received received;
    sa::agent::testing::TlsTestServer server(pki);
    server.http().Put("/upload", [&](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard lock(received.mutex);
        received.body = req.body;
        res.set_content("ok", "text/plain");
    });
    server.start();

    // Incompressible, so no layer below could make the bytes cheaper.
    const std::string body = sa::crypto::random_bytes(bytes);

    egress::PolicyOptions policy_options;
    egress::AllowRule rule;
    rule.host = "127.0.0.1";  // an IP literal rule lifts the loopback deny
    rule.port = server.port();
    rule.origin = "bench";
    policy_options.allow = {rule};
    policy_options.max_bytes_per_second = rate;
    policy_options.burst_bytes = burst;
    const egress::EgressPolicy policy(policy_options);
    egress::EgressRateLimiter limiter(policy_options);

    egress::HttpClient::Options options;
    options.ca_file = ca_file;
    options.policy = &policy;
    auto unlimited_client = egress::HttpClient::create(options);
    options.rate_limiter = &limiter;
    auto limited_client = egress::HttpClient::create(options);
    if (!unlimited_client || !limited_client) return fail("cannot create an HttpClient");

    std::string error;
    const std::string url = server.url("/upload");
    const double unlimited_s = upload(*unlimited_client, url, body, received, error);
    if (unlimited_s < 0) return fail("unlimited upload failed: " + error);
    const double limited_s = upload(*limited_client, url, body, received, error);
    if (limited_s < 0) return fail("limited upload failed: " + error);
    server.stop();
    std::error_code ignored;
    fs::remove_all(dir, ignored);

    const double mb = static_cast<double>(bytes) / 1e6;
    const double measured = mb / limited_s;
    const double expected_ratio =
        static_cast<double>(bytes) /
        static_cast<double>(std::max<int64_t>(1, static_cast<int64_t>(bytes) - burst));
    std::printf("upload_bytes=%zu configured_mb_per_s=%.3f burst_bytes=%lld\n", bytes, rate_mb,
                static_cast<long long>(burst));
    std::printf("limited_s=%.3f measured_mb_per_s=%.3f ratio=%.3f expected_ratio=%.3f\n", limited_s,
                measured, measured / rate_mb, expected_ratio);
    std::printf("reference_unlimited_s=%.3f reference_unlimited_mb_per_s=%.1f\n", unlimited_s,
                mb / unlimited_s);
    return 0;
}
