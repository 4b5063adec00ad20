// The real HTTPS server on 127.0.0.1 port 0, driven by a cpp-httplib client
// that trusts only the CA the hub generated.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <sstream>
#include <thread>

#include "common/crypto/digest.h"
#include "common/jose/jws.h"
#include "common/protocol/content_digest.h"
#include "common/util/files.h"
#include "common/util/time.h"
#include "hub/identity/app_registry.h"
#include "hub/jobs/job_queue.h"
#include "hub/pki/pki.h"
#include "hub/server/serve.h"
#include "hub/testing/test_support.h"

namespace sa::hub::server {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

class HttpServerTest : public ::testing::Test {
  protected:
    void SetUp() override {
        HubOptions options;
        options.data_dir = tmp.file("data");
        options.listen = ListenAddress{"127.0.0.1", 0};
        options.scrypt = testing::fast_scrypt();
        options.threads = 8;
        auto h = Hub::start(options, log, clock);
        ASSERT_TRUE(h.has_value()) << h.error().describe();
        hub = std::move(*h);
        port = std::stoi(hub->url().substr(hub->url().rfind(':') + 1));
        runner = std::thread([this] { hub->run(); });
        ASSERT_TRUE(hub->wait_until_running(5s));

        // The offline CLI's view: its own connection to the same database.
        auto s = store::Store::open(hub->layout().database, store::Store::Create::never);
        ASSERT_TRUE(s.has_value());
        cli_store = std::move(*s);
        identity::AppRegistry apps(*cli_store, clock, testing::fast_scrypt());
        auto created = apps.create("app-a");
        ASSERT_TRUE(created.has_value());
        client_id = created->app.client_id;
        secret = created->client_secret;
    }

    void TearDown() override {
        if (hub) {
            hub->stop();
            if (runner.joinable()) runner.join();
        }
    }

    std::unique_ptr<httplib::SSLClient> client() {
        auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", port);
        c->set_ca_cert_path(hub->layout().ca_cert.c_str());
        c->enable_server_certificate_verification(true);
        c->set_read_timeout(40, 0);
        return c;
    }

    std::string token() {
        auto c = client();
        c->set_basic_auth(client_id.c_str(), secret.c_str());
        auto r = c->Post("/oauth2/token", "grant_type=client_credentials",
                         "application/x-www-form-urlencoded");
        EXPECT_TRUE(r) << httplib::to_string(r.error());
        if (!r) return "";
        EXPECT_EQ(r->status, 200) << r->body;
        EXPECT_EQ(r->get_header_value("Cache-Control"), "no-store");
        return json::parse(r->body)["access_token"];
    }

    testing::TempDir tmp;
    std::ostringstream log_text;
    JsonLog log{log_text};
    clock::SystemClock clock;
    std::unique_ptr<Hub> hub;
    std::thread runner;
    int port = 0;
    std::unique_ptr<store::Store> cli_store;
    std::string client_id;
    std::string secret;
};

TEST_F(HttpServerTest, ServesHealthOverVerifiedTlsAndWritesListenUrl) {
    auto r = client()->Get("/healthz");
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "ok");
    auto url = util::read_file(hub->layout().listen_url);
    ASSERT_TRUE(url.has_value());
    EXPECT_EQ(*url, hub->url() + "\n");
    EXPECT_EQ(hub->url().rfind("https://127.0.0.1:", 0), 0u);

    auto missing = client()->Get("/nope");
    ASSERT_TRUE(missing);
    EXPECT_EQ(missing->status, 404);
    EXPECT_EQ(json::parse(missing->body)["error"], "not_found");
}

TEST_F(HttpServerTest, PingRouteOverHttps) {
    std::string bearer = token();
    ASSERT_FALSE(bearer.empty());
    httplib::Headers auth = {{"Authorization", "Bearer " + bearer}};
    const int64_t before = util::unix_seconds();
    auto ok = client()->Get("/v1/agent/ping?agent_id=edge-1", auth);
    ASSERT_TRUE(ok) << httplib::to_string(ok.error());
    ASSERT_EQ(ok->status, 200) << ok->body;
    auto body = json::parse(ok->body);
    EXPECT_EQ(body["agent_id"], "edge-1");
    EXPECT_GE(body["server_time"].get<int64_t>(), before);
    EXPECT_LE(body["server_time"].get<int64_t>(), util::unix_seconds());

    auto anonymous = client()->Get("/v1/agent/ping?agent_id=edge-1");
    ASSERT_TRUE(anonymous);
    EXPECT_EQ(anonymous->status, 401);
    EXPECT_EQ(json::parse(anonymous->body)["error"], "invalid_token");
    auto bad = client()->Get("/v1/agent/ping?agent_id=edge-1",
                             httplib::Headers{{"Authorization", "Bearer forged"}});
    ASSERT_TRUE(bad);
    EXPECT_EQ(bad->status, 401);

    for (const char* path : {"/v1/agent/ping", "/v1/agent/ping?agent_id=a&agent_id=b"}) {
        auto missing = client()->Get(path, auth);
        ASSERT_TRUE(missing) << path;
        EXPECT_EQ(missing->status, 400) << path;
    }
    // GET only: other methods are not routed.
    auto post = client()->Post("/v1/agent/ping?agent_id=edge-1", auth, "{}", "application/json");
    ASSERT_TRUE(post);
    EXPECT_EQ(post->status, 404);
}

TEST_F(HttpServerTest, PlainHttpIsNotServed) {
    httplib::Client plain("127.0.0.1", port);
    plain.set_connection_timeout(2, 0);
    plain.set_read_timeout(2, 0);
    auto r = plain.Get("/healthz");
    EXPECT_FALSE(r && r->status == 200);
}

TEST_F(HttpServerTest, RefusesTls11EvenFromAPermissiveClient) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    ASSERT_NE(ctx, nullptr);
    // Security level 0 lets this client offer TLS 1.1: the refusal below is
    // then the hub's own floor, not OpenSSL's default policy.
    SSL_CTX_set_security_level(ctx, 0);
    SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION);
    SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    EXPECT_LE(SSL_connect(ssl), 0);
    SSL_free(ssl);
    ::close(fd);
    SSL_CTX_free(ctx);

    // And TLS 1.2 is accepted.
    SSL_CTX* ok_ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ok_ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ok_ctx, TLS1_2_VERSION);
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ssl = SSL_new(ok_ctx);
    SSL_set_fd(ssl, fd);
    EXPECT_EQ(SSL_connect(ssl), 1);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    ::close(fd);
    SSL_CTX_free(ok_ctx);
}

TEST_F(HttpServerTest, AgentFlowOverHttpsWithJobFromAnotherConnection) {
    std::string bearer = token();
    ASSERT_FALSE(bearer.empty());
    httplib::Headers auth = {{"Authorization", "Bearer " + bearer}};

    // Start a long poll, then queue a job through the CLI's connection.
    auto poll = std::async(std::launch::async, [&] {
        auto c = client();
        auto r = c->Post("/v1/agent/lease", auth, R"({"agent_id":"edge-1","wait_seconds":20})",
                         "application/json");
        return std::make_pair(r ? r->status : -1, r ? r->body : httplib::to_string(r.error()));
    });
    std::this_thread::sleep_for(150ms);  // let the poll reach the server and wait
    jobs::JobQueue cli_queue(*cli_store, clock);
    auto job = cli_queue.create("app-a", "inv", "extract_metadata");
    ASSERT_TRUE(job.has_value());
    auto created_at = std::chrono::steady_clock::now();
    ASSERT_EQ(poll.wait_for(5s), std::future_status::ready);
    // Far below the 20 s wait: the poll woke on the change. Speed is measured in bench/.
    EXPECT_LT(std::chrono::steady_clock::now() - created_at, 5s);
    auto [status, body] = poll.get();
    ASSERT_EQ(status, 200) << body;
    auto lease = json::parse(body);
    EXPECT_EQ(lease["job_id"], job->id);
    std::string lease_id = lease["lease_id"];

    std::string chunk = testing::chunk_of({testing::sample_table("orders", 3)});
    httplib::Headers put_headers = auth;
    put_headers.emplace("X-Lease-Id", lease_id);
    put_headers.emplace("Content-Digest", protocol::content_digest_sha256(chunk));
    auto c = client();
    auto put = c->Put(("/v1/jobs/" + job->id + "/chunks/0").c_str(), put_headers, chunk,
                      "application/x-ndjson");
    ASSERT_TRUE(put);
    EXPECT_EQ(put->status, 201) << put->body;

    json beat = {
        {"lease_id", lease_id},
        {"agent_id", "edge-1"},
        {"progress", {{"objects", 1}, {"bytes", 10}, {"chunks", 1}, {"phase", "uploading"}}}};
    auto heartbeat = c->Post(("/v1/jobs/" + job->id + "/heartbeat").c_str(), auth, beat.dump(),
                             "application/json");
    ASSERT_TRUE(heartbeat);
    ASSERT_EQ(heartbeat->status, 200) << heartbeat->body;
    EXPECT_EQ(json::parse(heartbeat->body)["cancel"], false);
    EXPECT_EQ(cli_queue.get(job->id)->progress->phase, "uploading");

    // Over the 8 MiB limit: 413 before any handler runs.
    std::string huge(8 * 1024 * 1024 + 1, 'x');
    auto too_big = c->Put(("/v1/jobs/" + job->id + "/chunks/1").c_str(), put_headers, huge,
                          "application/x-ndjson");
    if (too_big) {
        EXPECT_EQ(too_big->status, 413);
    }

    json completion = {
        {"lease_id", lease_id},
        {"agent_id", "edge-1"},
        {"chunks", {{{"seq", 0}, {"sha256", crypto::sha256_hex(chunk)}, {"size", chunk.size()}}}},
        {"started_at_ms", 1},
        {"finished_at_ms", 2}};
    auto done = client()->Post(("/v1/jobs/" + job->id + "/complete").c_str(), auth,
                               completion.dump(), "application/json");
    ASSERT_TRUE(done);
    EXPECT_EQ(done->status, 200) << done->body;
    EXPECT_EQ(cli_queue.get(job->id)->status, "succeeded");

    // Nothing more to do: a short poll answers 204.
    auto empty = client()->Post("/v1/agent/lease", auth,
                                R"({"agent_id":"edge-1","wait_seconds":0})", "application/json");
    ASSERT_TRUE(empty);
    EXPECT_EQ(empty->status, 204);

    // The request log is JSON per line, names the client, and has no secrets.
    std::string text = log_text.str();
    EXPECT_EQ(text.find(bearer), std::string::npos);
    EXPECT_EQ(text.find(secret), std::string::npos);
    std::istringstream lines(text);
    std::string line;
    bool saw_lease = false;
    while (std::getline(lines, line)) {
        auto entry = json::parse(line, nullptr, false);
        ASSERT_FALSE(entry.is_discarded()) << line;
        if (entry.value("path", "") == "/v1/agent/lease" && entry.value("status", 0) == 200) {
            saw_lease = true;
            EXPECT_EQ(entry["client_id"], client_id);
            EXPECT_EQ(entry["method"], "POST");
            EXPECT_TRUE(entry["duration_ms"].is_number());
        }
    }
    EXPECT_TRUE(saw_lease);
}

TEST_F(HttpServerTest, RotatedJobKeySignsTheNextLeaseWithoutARestart) {
    std::string bearer = token();
    httplib::Headers auth = {{"Authorization", "Bearer " + bearer}};
    jobs::JobQueue cli_queue(*cli_store, clock);
    auto lease_kid = [&] {
        EXPECT_TRUE(cli_queue.create("app-a", "inv", "test_connection").has_value());
        auto r = client()->Post("/v1/agent/lease", auth,
                                R"({"agent_id":"edge-1","wait_seconds":0})", "application/json");
        EXPECT_TRUE(r && r->status == 200);
        if (!r || r->status != 200) return std::string();
        auto jws = jose::decode_unverified(json::parse(r->body)["job"].get<std::string>());
        EXPECT_TRUE(jws.has_value());
        return jws ? jws->header["kid"].get<std::string>() : std::string();
    };
    auto before = crypto::Ed25519PublicKey::from_pem_file(hub->layout().job_public);
    ASSERT_TRUE(before.has_value());
    EXPECT_EQ(lease_kid(), before->key_id());
    auto rotated = pki::rotate_job_key(hub->layout().dir);
    ASSERT_TRUE(rotated.has_value()) << rotated.error().describe();
    EXPECT_EQ(lease_kid(), rotated->new_kid);
}

TEST(HubStart, RefusesALeaseLifetimeOutOfRange) {
    testing::TempDir tmp;
    std::ostringstream sink;
    JsonLog log{sink};
    clock::SystemClock clock;
    for (int seconds : {9, 3601}) {
        HubOptions options;
        options.data_dir = tmp.file("data");
        options.listen = ListenAddress{"127.0.0.1", 0};
        options.scrypt = testing::fast_scrypt();
        options.lease_seconds = seconds;
        auto h = Hub::start(options, log, clock);
        ASSERT_FALSE(h.has_value()) << seconds;
        EXPECT_EQ(h.error().code, ErrorCode::invalid_argument);
        EXPECT_NE(h.error().message.find("--lease-seconds must be 10..3600"), std::string::npos);
    }
}

TEST_F(HttpServerTest, StopEndsWaitingLongPollsPromptly) {
    std::string bearer = token();
    httplib::Headers auth = {{"Authorization", "Bearer " + bearer}};
    auto poll = std::async(std::launch::async, [&] {
        auto r = client()->Post("/v1/agent/lease", auth,
                                R"({"agent_id":"edge-1","wait_seconds":30})", "application/json");
        return r ? r->status : -1;
    });
    std::this_thread::sleep_for(150ms);
    auto t0 = std::chrono::steady_clock::now();
    hub->stop();
    runner.join();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
    ASSERT_EQ(poll.wait_for(5s), std::future_status::ready);
    int status = poll.get();
    EXPECT_TRUE(status == 204 || status == -1) << status;
}

TEST(ListenAddress, ParsesHostPortAndBracketedIpv6) {
    auto a = parse_listen_address("127.0.0.1:8443");
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->host, "127.0.0.1");
    EXPECT_EQ(a->port, 8443);
    EXPECT_EQ(a->url(), "https://127.0.0.1:8443");
    auto v6 = parse_listen_address("[::1]:0");
    ASSERT_TRUE(v6.has_value());
    EXPECT_EQ(v6->host, "::1");
    EXPECT_EQ(v6->port, 0);
    EXPECT_EQ(v6->url(), "https://[::1]:0");
    for (const char* bad :
         {"", "8443", "host:", ":80", "h:65536", "h:-1", "::1:80", "[::1]80", "h:8x"}) {
        EXPECT_FALSE(parse_listen_address(bad).has_value()) << bad;
    }
}

}  // namespace
}  // namespace sa::hub::server
