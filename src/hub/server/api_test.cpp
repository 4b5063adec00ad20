#include "hub/server/api.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdio>
#include <thread>

#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"
#include "common/protocol/content_digest.h"
#include "common/util/time.h"
#include "hub/identity/test_keys.h"
#include "hub/testing/test_support.h"

namespace sa::hub::server {
namespace {

using json = nlohmann::json;
using testing::chunk_of;
using testing::sample_table;

std::string header_of(const ApiResponse& r, const std::string& name) {
    for (const auto& [k, v] : r.headers) {
        if (k == name) return v;
    }
    return "";
}

class ApiTest : public ::testing::Test {
  protected:
    void SetUp() override {
        auto s = store::Store::open(tmp.file("hub.db"));
        ASSERT_TRUE(s.has_value());
        store = std::move(*s);
        auto n = store::ChangeNotifier::start(tmp.file("hub.db"));
        ASSERT_TRUE(n.has_value());
        notifier = std::move(*n);
        apps = std::make_unique<identity::AppRegistry>(*store, clock, testing::fast_scrypt());
        tokens =
            std::make_unique<identity::TokenService>(crypto::Ed25519PrivateKey::generate(), clock);
        queue = std::make_unique<jobs::JobQueue>(*store, clock, notifier.get());
        dispatcher = std::make_unique<jobs::Dispatcher>(*queue, signer, *notifier);
        ingest = std::make_unique<ingest::Ingest>(*store, clock);
        api = std::make_unique<Api>(Services{*apps, *tokens, *queue, *dispatcher, *ingest, &clock});
        auto created = apps->create("app-a");
        ASSERT_TRUE(created.has_value());
        client_id = created->app.client_id;
        secret = created->client_secret;
    }

    static std::string basic(const std::string& id, const std::string& pw) {
        return "Basic " + crypto::base64_encode(id + ":" + pw);
    }

    std::string bearer() {
        auto r = api->token(basic(client_id, secret), "grant_type=client_credentials");
        EXPECT_EQ(r.status, 200) << r.body;
        return "Bearer " + json::parse(r.body)["access_token"].get<std::string>();
    }

    testing::TempDir tmp;
    clock::ManualClock clock{util::unix_millis()};
    std::unique_ptr<store::Store> store;
    std::unique_ptr<store::ChangeNotifier> notifier;
    std::unique_ptr<identity::AppRegistry> apps;
    std::unique_ptr<identity::TokenService> tokens;
    std::unique_ptr<jobs::JobQueue> queue;
    jobs::JobSigner signer{crypto::Ed25519PrivateKey::generate()};
    std::unique_ptr<jobs::Dispatcher> dispatcher;
    std::unique_ptr<ingest::Ingest> ingest;
    std::unique_ptr<Api> api;
    std::string client_id;
    std::string secret;
};

TEST_F(ApiTest, TokenEndpointIssuesForGoodCredentialsOnly) {
    auto ok = api->token(basic(client_id, secret), "grant_type=client_credentials");
    ASSERT_EQ(ok.status, 200) << ok.body;
    auto body = json::parse(ok.body);
    EXPECT_EQ(body["token_type"], "Bearer");
    EXPECT_EQ(body["expires_in"], 900);
    EXPECT_TRUE(tokens->verify(body["access_token"].get<std::string>()).has_value());
    EXPECT_EQ(header_of(ok, "Cache-Control"), "no-store");
    EXPECT_EQ(ok.client_id, client_id);
    EXPECT_EQ(ok.detail.find(body["access_token"].get<std::string>()), std::string::npos);

    auto wrong = api->token(basic(client_id, "wrong"), "grant_type=client_credentials");
    EXPECT_EQ(wrong.status, 401);
    EXPECT_EQ(json::parse(wrong.body)["error"], "invalid_client");
    EXPECT_EQ(header_of(wrong, "WWW-Authenticate"), "Basic realm=\"agent-hub\"");
    EXPECT_EQ(header_of(wrong, "Cache-Control"), "no-store");

    auto unknown = api->token(basic("cid_nobody", secret), "grant_type=client_credentials");
    EXPECT_EQ(unknown.status, 401);
    EXPECT_EQ(unknown.body, wrong.body);
    EXPECT_EQ(api->token(std::nullopt, "grant_type=client_credentials").status, 401);
    EXPECT_EQ(api->token("Basic !!!", "grant_type=client_credentials").status, 401);
    EXPECT_EQ(api->token("Bearer x", "grant_type=client_credentials").status, 401);

    auto grant = api->token(basic(client_id, secret), "grant_type=password");
    EXPECT_EQ(grant.status, 400);
    EXPECT_EQ(json::parse(grant.body)["error"], "unsupported_grant_type");
    auto none = api->token(basic(client_id, secret), "scope=x");
    EXPECT_EQ(none.status, 400);
    EXPECT_EQ(json::parse(none.body)["error"], "invalid_request");
    EXPECT_EQ(api->token(basic(client_id, secret), "grant_type=%zz").status, 400);
    EXPECT_EQ(api->token(basic(client_id, secret), std::string(kMaxFormBody + 1, 'a')).status, 413);
}

TEST_F(ApiTest, BasicCredentialsAreFormUrlDecoded) {
    // RFC 6749 section 2.3.1: id and secret are form-url-encoded before base64.
    std::string encoded_id;
    for (char c : client_id) {
        char buf[4];
        std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
        encoded_id += buf;
    }
    auto ok = api->token(basic(encoded_id, secret), "grant_type=client_credentials");
    EXPECT_EQ(ok.status, 200) << ok.body;
    EXPECT_EQ(form_url_decode("a+b%2Fc%3a"), "a b/c:");
    EXPECT_FALSE(form_url_decode("%").has_value());
    EXPECT_FALSE(form_url_decode("%4").has_value());
    EXPECT_FALSE(form_url_decode("%g0").has_value());
    auto form = parse_form("a=1&&b=&c");
    ASSERT_TRUE(form.has_value());
    ASSERT_EQ(form->size(), 3u);
    EXPECT_EQ((*form)[1], (std::pair<std::string, std::string>{"b", ""}));
}

TEST_F(ApiTest, V1EndpointsRequireAValidBearerToken) {
    auto check = [](const ApiResponse& r) {
        EXPECT_EQ(r.status, 401);
        EXPECT_EQ(json::parse(r.body)["error"], "invalid_token");
        EXPECT_NE(header_of(r, "WWW-Authenticate").find("invalid_token"), std::string::npos);
    };
    check(api->lease(std::nullopt, R"({"agent_id":"e","wait_seconds":0})"));
    check(api->lease("Bearer nonsense", R"({"agent_id":"e","wait_seconds":0})"));
    check(api->complete("Basic abc", "j", "{}"));
    check(api->fail(std::nullopt, "j", "{}"));
    check(api->put_chunk(std::nullopt, "j", "0", "l", "d", "body"));

    std::string token = bearer();
    clock.advance_ms(901'000);
    check(api->lease(token, R"({"agent_id":"e","wait_seconds":0})"));
}

TEST_F(ApiTest, PingAnswersAuthenticatedAgentsWithServerTime) {
    clock.set_ms(1'764'403'200'123);
    std::string token = bearer();
    auto r = api->ping(token, "edge-1");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.content_type, "application/json");
    EXPECT_EQ(json::parse(r.body), (json{{"agent_id", "edge-1"}, {"server_time", 1764403200}}));
    EXPECT_EQ(r.client_id, client_id);
    EXPECT_EQ(r.detail.find(token.substr(7)), std::string::npos);

    // Changes no state: a queued job stays queued and is still leasable.
    auto job = queue->create("app-a", "inv", "extract_metadata");
    ASSERT_TRUE(job.has_value());
    EXPECT_EQ(api->ping(token, "edge-1").status, 200);
    EXPECT_EQ(queue->get(job->id)->status, "queued");
    EXPECT_EQ(api->lease(token, R"({"agent_id":"e","wait_seconds":0})").status, 200);

    // agent_id is required, once, and validated like the lease's.
    for (const std::optional<std::string>& bad :
         {std::optional<std::string>(), std::optional<std::string>(""),
          std::optional<std::string>("has space"),
          std::optional<std::string>(std::string(129, 'a'))}) {
        auto e = api->ping(token, bad);
        EXPECT_EQ(e.status, 400);
        EXPECT_EQ(json::parse(e.body)["error"], "invalid_request");
    }
}

TEST_F(ApiTest, PingRequiresAValidBearerTokenLikeLease) {
    auto check = [](const ApiResponse& r) {
        EXPECT_EQ(r.status, 401) << r.body;
        EXPECT_EQ(json::parse(r.body)["error"], "invalid_token");
        EXPECT_NE(header_of(r, "WWW-Authenticate").find("invalid_token"), std::string::npos);
    };
    check(api->ping(std::nullopt, "edge-1"));
    check(api->ping("Bearer nonsense", "edge-1"));
    check(api->ping(basic(client_id, secret), "edge-1"));
    // A token signed by another key is forged.
    identity::TokenService other(crypto::Ed25519PrivateKey::generate(), clock);
    auto app = apps->authenticate(client_id, secret);
    ASSERT_TRUE(app.has_value());
    check(api->ping("Bearer " + other.issue(*app).access_token, "edge-1"));
    // Unauthenticated callers learn nothing about agent_id validation.
    check(api->ping(std::nullopt, std::nullopt));

    // Expired.
    std::string expired = bearer();
    EXPECT_EQ(api->ping(expired, "edge-1").status, 200);
    clock.advance_ms(901'000);
    check(api->ping(expired, "edge-1"));

    // The app is gone: its tokens stop working here too.
    std::string token = bearer();
    EXPECT_EQ(api->ping(token, "edge-1").status, 200);
    ASSERT_TRUE(store->with([](sqlite::Database& db) { return db.exec("DELETE FROM apps"); }));
    check(api->ping(token, "edge-1"));
}

TEST_F(ApiTest, TokensOfADeletedAppStopWorking) {
    std::string token = bearer();
    EXPECT_EQ(api->lease(token, R"({"agent_id":"e","wait_seconds":0})").status, 204);
    ASSERT_TRUE(store->with([](sqlite::Database& db) { return db.exec("DELETE FROM apps"); }));
    EXPECT_EQ(api->lease(token, R"({"agent_id":"e","wait_seconds":0})").status, 401);
}

TEST_F(ApiTest, MalformedRequestsGet400NotACrash) {
    std::string token = bearer();
    for (const char* body :
         {"", "not json", "[]", "{\"agent_id\": 5}", "{\"agent_id\": \"\"}",
          "{\"agent_id\": \"has space\"}", "{\"agent_id\": \"e\", \"wait_seconds\": 31}",
          "{\"agent_id\": \"e\", \"wait_seconds\": -1}",
          "{\"agent_id\": \"e\", \"wait_seconds\": \"5\"}",
          "{\"agent_id\": \"e\", \"wait_seconds\": 1.5}"}) {
        auto r = api->lease(token, body);
        EXPECT_EQ(r.status, 400) << body;
        EXPECT_EQ(json::parse(r.body)["error"], "invalid_request") << body;
        EXPECT_FALSE(json::parse(r.body)["error_description"].get<std::string>().empty());
    }
    std::string deep(100000, '[');
    EXPECT_EQ(api->lease(token, deep).status, 400);
    EXPECT_EQ(api->lease(token, std::string(kMaxJsonBody + 1, ' ')).status, 413);
    EXPECT_EQ(api->complete(token, "j", R"({"lease_id":"l","agent_id":"e","chunks":"x"})").status,
              400);
    EXPECT_EQ(
        api->complete(
               token, "j",
               R"({"lease_id":"l","agent_id":"e","chunks":[{"seq":-1,"sha256":"a","size":1}]})")
            .status,
        400);
    EXPECT_EQ(api->fail(token, "j", R"({"lease_id":"l","agent_id":"e"})").status, 400);
    EXPECT_EQ(api->put_chunk(token, "j", "0", std::nullopt, "d", "x").status, 400);
    EXPECT_EQ(api->put_chunk(token, "j", "0x1", "l", "d", "x").status, 400);
    EXPECT_EQ(api->healthz().body, "ok");
}

TEST_F(ApiTest, FullJobLifecycle) {
    std::string token = bearer();
    auto job = queue->create("app-a", "inv", "extract_metadata");
    ASSERT_TRUE(job.has_value());

    auto leased = api->lease(token, R"({"agent_id":"edge-1","wait_seconds":0})");
    ASSERT_EQ(leased.status, 200) << leased.body;
    auto lease = json::parse(leased.body);
    EXPECT_EQ(lease["job_id"], job->id);
    EXPECT_TRUE(lease["lease_expires_at"].is_number_integer());
    EXPECT_TRUE(lease["job"].is_string());
    std::string lease_id = lease["lease_id"];
    EXPECT_EQ(leased.client_id, client_id);

    std::string body = chunk_of({sample_table("orders", 3), sample_table("v", 1, "view")});
    std::string digest = protocol::content_digest_sha256(body);
    auto put = api->put_chunk(token, job->id, "0", lease_id, digest, body);
    ASSERT_EQ(put.status, 201) << put.body;
    auto receipt = json::parse(put.body);
    EXPECT_EQ(receipt["seq"], 0);
    EXPECT_EQ(receipt["sha256"], crypto::sha256_hex(body));
    EXPECT_EQ(receipt["size"], body.size());
    EXPECT_EQ(api->put_chunk(token, job->id, "0", lease_id, digest, body).status, 200);
    EXPECT_EQ(api->put_chunk(token, job->id, "0", lease_id, std::nullopt, body).status, 400);
    EXPECT_EQ(api->put_chunk(token, job->id, "1", "wrong", digest, body).status, 409);

    json completion = {
        {"lease_id", lease_id},
        {"agent_id", "edge-1"},
        {"chunks", {{{"seq", 0}, {"sha256", crypto::sha256_hex(body)}, {"size", body.size()}}}},
        {"summary", {{"tables", 1}, {"views", 1}, {"columns", 4}}},
        {"started_at_ms", 10},
        {"finished_at_ms", 20}};
    auto done = api->complete(token, job->id, completion.dump());
    ASSERT_EQ(done.status, 200) << done.body;
    auto result = json::parse(done.body);
    EXPECT_EQ(result["job_id"], job->id);
    EXPECT_EQ(result["status"], "succeeded");
    EXPECT_EQ(result["tables"], 1);
    EXPECT_EQ(result["columns"], 4);
    EXPECT_EQ(queue->get(job->id)->status, "succeeded");

    // Completed: the lease is gone.
    auto late = api->complete(token, job->id, completion.dump());
    EXPECT_EQ(late.status, 409);
    EXPECT_EQ(json::parse(late.body)["error"], "lease_lost");
}

TEST_F(ApiTest, IncrementalCompletionCarriesDeltaAndAStaleOneGets409) {
    std::string token = bearer();
    // Leases job_id and uploads records; returns the completion body.
    auto run = [&](const std::string& job_id, const std::vector<metadata::Record>& records) {
        auto leased = api->lease(token, R"({"agent_id":"edge-1","wait_seconds":0})");
        EXPECT_EQ(leased.status, 200) << leased.body;
        auto lease = json::parse(leased.body);
        EXPECT_EQ(lease["job_id"], job_id);
        std::string body = testing::records_chunk(records);
        auto put = api->put_chunk(token, job_id, "0", lease["lease_id"].get<std::string>(),
                                  protocol::content_digest_sha256(body), body);
        EXPECT_EQ(put.status, 201) << put.body;
        return json{{"lease_id", lease["lease_id"]},
                    {"agent_id", "edge-1"},
                    {"chunks",
                     {{{"seq", 0}, {"sha256", crypto::sha256_hex(body)}, {"size", body.size()}}}}};
    };
    auto base = queue->create("app-a", "inv", "extract_metadata");
    auto full = run(base->id, {sample_table("orders", 3), sample_table("gone", 1)});
    ASSERT_EQ(api->complete(token, base->id, full.dump()).status, 200);

    auto inc = queue->create("app-a", "inv", "extract_metadata", {}, "incremental");
    auto delta = run(inc->id, {sample_table("added", 2),
                               metadata::Removal{"table", "main", "main", "gone", ""}});
    for (const json& bad : {json("x"), json::object(), json{{"baseline_job_id", 7}},
                            json{{"baseline_job_id", ""}}, json{{"baseline_job_id", "a\x1b[2Jb"}},
                            json{{"baseline_job_id", std::string(129, 'j')}}}) {
        json c = delta;
        c["delta"] = bad;
        auto r = api->complete(token, inc->id, c.dump());
        EXPECT_EQ(r.status, 400) << bad.dump();
        EXPECT_EQ(json::parse(r.body)["error"], "invalid_request") << c.dump() << r.body;
    }
    EXPECT_EQ(queue->get(inc->id)->status, "leased");
    delta["delta"] = {{"baseline_job_id", base->id}};
    auto done = api->complete(token, inc->id, delta.dump());
    ASSERT_EQ(done.status, 200) << done.body;
    EXPECT_EQ(json::parse(done.body)["tables"], 1);
    auto job = queue->get(inc->id);
    EXPECT_EQ(job->applied_mode, "incremental");
    EXPECT_EQ(jobs::to_json(*job)["applied"], "incremental");

    // A delta against an older baseline than the signed one: 409, job failed.
    auto stale = queue->create("app-a", "inv", "extract_metadata", {}, "incremental");
    auto c = run(stale->id, {sample_table("late", 1)});
    c["delta"] = {{"baseline_job_id", base->id}};
    auto refused = api->complete(token, stale->id, c.dump());
    EXPECT_EQ(refused.status, 409) << refused.body;
    auto error = json::parse(refused.body);
    EXPECT_EQ(error["error"], "baseline_mismatch");
    EXPECT_NE(error["error_description"].get<std::string>().find(inc->id), std::string::npos);
    EXPECT_EQ(queue->get(stale->id)->status, "failed");
    EXPECT_EQ(queue->get(stale->id)->reason_code, "baseline_mismatch");
}

TEST_F(ApiTest, FailureReportsEndTheJob) {
    std::string token = bearer();
    auto job = queue->create("app-a", "inv", "extract_metadata");
    auto leased = api->lease(token, R"({"agent_id":"edge-1","wait_seconds":0})");
    ASSERT_EQ(leased.status, 200);
    std::string lease_id = json::parse(leased.body)["lease_id"];
    json report = {{"lease_id", lease_id},
                   {"agent_id", "edge-1"},
                   {"outcome", "refused"},
                   {"reason_code", "no_such_reason"},
                   {"message", "m"}};
    EXPECT_EQ(api->fail(token, job->id, report.dump()).status, 400);
    report["reason_code"] = "bad_signature";
    report["message"] = std::string(5000, 'm');
    auto r = api->fail(token, job->id, report.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(json::parse(r.body)["status"], "refused");
    auto j = queue->get(job->id);
    EXPECT_EQ(j->reason_code, "bad_signature");
    EXPECT_EQ(j->message->size(), 1000u);
}

TEST_F(ApiTest, HeartbeatExtendsTheLeaseAndAnswersCancel) {
    std::string token = bearer();
    auto job = queue->create("app-a", "inv", "extract_metadata");
    auto leased = api->lease(token, R"({"agent_id":"edge-1","wait_seconds":0})");
    ASSERT_EQ(leased.status, 200);
    std::string lease_id = json::parse(leased.body)["lease_id"];
    json beat = {
        {"lease_id", lease_id},
        {"agent_id", "edge-1"},
        {"progress", {{"objects", 3}, {"bytes", 900}, {"chunks", 0}, {"phase", "starting"}}}};

    clock.advance_ms(120'000);
    auto r = api->heartbeat(token, job->id, beat.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(json::parse(r.body),
              (json{{"job_id", job->id},
                    {"lease_expires_at", clock.now_seconds() + protocol::kLeaseLifetimeSeconds},
                    {"cancel", false}}));
    EXPECT_EQ(r.client_id, client_id);
    EXPECT_EQ(queue->get(job->id)->progress->phase, "starting");

    // Progress is optional, but when present it is complete and sane.
    json bare = {{"lease_id", lease_id}, {"agent_id", "edge-1"}};
    EXPECT_EQ(api->heartbeat(token, job->id, bare.dump()).status, 200);
    for (const json& bad_progress :
         {json("x"), json{{"objects", 1}, {"bytes", 1}, {"chunks", 1}},
          json{{"objects", -1}, {"bytes", 1}, {"chunks", 1}, {"phase", "starting"}},
          json{{"objects", 1}, {"bytes", 1.5}, {"chunks", 1}, {"phase", "starting"}},
          json{{"objects", 1}, {"bytes", 1}, {"chunks", 1}, {"phase", "sleeping"}}}) {
        json bad = bare;
        bad["progress"] = bad_progress;
        auto refused = api->heartbeat(token, job->id, bad.dump());
        EXPECT_EQ(refused.status, 400) << bad_progress.dump();
        EXPECT_EQ(json::parse(refused.body)["error"], "invalid_request");
    }
    EXPECT_EQ(api->heartbeat(token, job->id, R"({"agent_id":"edge-1"})").status, 400);
    EXPECT_EQ(api->heartbeat(std::nullopt, job->id, bare.dump()).status, 401);

    ASSERT_TRUE(queue->cancel(job->id, "op").has_value());
    auto told = api->heartbeat(token, job->id, bare.dump());
    ASSERT_EQ(told.status, 200);
    EXPECT_EQ(json::parse(told.body)["cancel"], true);
    json report = {{"lease_id", lease_id},
                   {"agent_id", "edge-1"},
                   {"outcome", "failed"},
                   {"reason_code", "cancelled"},
                   {"message", "stopped"}};
    auto ended = api->fail(token, job->id, report.dump());
    ASSERT_EQ(ended.status, 200) << ended.body;
    EXPECT_EQ(json::parse(ended.body)["status"], "cancelled");

    auto lost = api->heartbeat(token, job->id, bare.dump());
    EXPECT_EQ(lost.status, 409);
    EXPECT_EQ(json::parse(lost.body)["error"], "lease_lost");
}

TEST_F(ApiTest, InteractiveCompletionCarriesAResult) {
    std::string token = bearer();
    auto job = queue->create("app-a", "inv", "preflight");
    auto leased = api->lease(token, R"({"agent_id":"edge-1","wait_seconds":0})");
    ASSERT_EQ(leased.status, 200);
    std::string lease_id = json::parse(leased.body)["lease_id"];
    json completion = {{"lease_id", lease_id},
                       {"agent_id", "edge-1"},
                       {"chunks", json::array()},
                       {"result", "not an object"}};
    EXPECT_EQ(api->complete(token, job->id, completion.dump()).status, 400);
    completion["result"] = {{"ok", false}, {"checks", {{{"name", "catalog"}, {"ok", false}}}}};
    auto done = api->complete(token, job->id, completion.dump());
    ASSERT_EQ(done.status, 200) << done.body;
    EXPECT_EQ(json::parse(done.body), (json{{"job_id", job->id}, {"status", "succeeded"}}));
    EXPECT_EQ(queue->get(job->id)->result, completion["result"]);

    auto big_job = queue->create("app-a", "inv", "list_schemas");
    auto big_lease = api->lease(token, R"({"agent_id":"edge-1","wait_seconds":0})");
    ASSERT_EQ(big_lease.status, 200);
    completion["lease_id"] = json::parse(big_lease.body)["lease_id"];
    completion["result"] = {{"schemas", std::string(protocol::kMaxResultBytes, 's')}};
    auto too_big = api->complete(token, big_job->id, completion.dump());
    EXPECT_EQ(too_big.status, 413);
    EXPECT_EQ(json::parse(too_big.body)["error"], "request_too_large");
}

TEST_F(ApiTest, LongPollReturnsWhenAJobArrives) {
    std::string token = bearer();
    std::thread creator([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        (void)queue->create("app-a", "inv", "extract_metadata");
    });
    auto t0 = std::chrono::steady_clock::now();
    auto r = api->lease(token, R"({"agent_id":"edge-1","wait_seconds":10})");
    creator.join();
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
}

TEST_F(ApiTest, InternalErrorsAreNotLeakedToThePeer) {
    ApiResponse r = Api::error("server_error", "SQLite: disk I/O error at /secret/path");
    EXPECT_EQ(r.status, 500);
    EXPECT_EQ(r.body.find("/secret/path"), std::string::npos);
    EXPECT_NE(r.detail.find("/secret/path"), std::string::npos);
}

// ---- client_secret_post, rotation and revocation (issue #5).

std::string form_encode(const std::string& text) {
    std::string out;
    for (unsigned char c : text) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            char buf[4];
            std::snprintf(buf, sizeof buf, "%%%02X", c);
            out += buf;
        }
    }
    return out;
}

std::string post_body(const std::string& id, const std::string& secret) {
    return "grant_type=client_credentials&client_id=" + form_encode(id) +
           "&client_secret=" + form_encode(secret);
}

TEST_F(ApiTest, TokenEndpointAcceptsClientSecretPost) {
    auto ok = api->token(std::nullopt, post_body(client_id, secret));
    ASSERT_EQ(ok.status, 200) << ok.body;
    auto body = json::parse(ok.body);
    EXPECT_EQ(body["token_type"], "Bearer");
    EXPECT_TRUE(tokens->verify(body["access_token"].get<std::string>()).has_value());
    EXPECT_EQ(header_of(ok, "Cache-Control"), "no-store");
    EXPECT_EQ(ok.client_id, client_id);
    EXPECT_NE(ok.detail.find("client_secret_post"), std::string::npos);
    EXPECT_EQ(ok.detail.find(secret), std::string::npos);
    // Parameter order does not matter.
    EXPECT_EQ(api->token(std::nullopt, "client_secret=" + form_encode(secret) +
                                           "&grant_type=client_credentials&client_id=" + client_id)
                  .status,
              200);

    // Wrong secret and unknown client: the same 401 as with Basic.
    auto basic_wrong = api->token(basic(client_id, "wrong"), "grant_type=client_credentials");
    auto wrong = api->token(std::nullopt, post_body(client_id, "wrong"));
    auto unknown = api->token(std::nullopt, post_body("cid_nobody", secret));
    for (const auto* r : {&wrong, &unknown}) {
        EXPECT_EQ(r->status, 401);
        EXPECT_EQ(r->body, basic_wrong.body);
        EXPECT_EQ(header_of(*r, "WWW-Authenticate"), "Basic realm=\"agent-hub\"");
        EXPECT_EQ(header_of(*r, "Cache-Control"), "no-store");
        EXPECT_EQ(r->detail.find(secret), std::string::npos);
    }
    // Half the credentials are no credentials.
    EXPECT_EQ(
        api->token(std::nullopt, "grant_type=client_credentials&client_id=" + client_id).status,
        401);
    EXPECT_EQ(api->token(std::nullopt,
                         "grant_type=client_credentials&client_secret=" + form_encode(secret))
                  .status,
              401);
    EXPECT_EQ(api->token(std::nullopt, post_body(client_id, "")).status, 401);
    // The grant type is still checked.
    auto grant = api->token(std::nullopt, "grant_type=password&client_id=" + client_id +
                                              "&client_secret=" + form_encode(secret));
    EXPECT_EQ(grant.status, 400);
    EXPECT_EQ(json::parse(grant.body)["error"], "unsupported_grant_type");
}

TEST_F(ApiTest, TokenEndpointRefusesTwoAuthenticationMethodsAndNone) {
    // Both at once: 400 invalid_request, even when both are right.
    auto both = api->token(basic(client_id, secret), post_body(client_id, secret));
    EXPECT_EQ(both.status, 400) << both.body;
    EXPECT_EQ(json::parse(both.body)["error"], "invalid_request");
    EXPECT_EQ(header_of(both, "Cache-Control"), "no-store");
    EXPECT_EQ(both.body.find(secret), std::string::npos);
    // A Basic header plus either body parameter also counts as both.
    EXPECT_EQ(
        api->token(basic(client_id, secret), "grant_type=client_credentials&client_id=" + client_id)
            .status,
        400);
    EXPECT_EQ(api->token(basic(client_id, secret),
                         "grant_type=client_credentials&client_secret=" + form_encode(secret))
                  .status,
              400);
    // A repeated parameter is malformed (RFC 6749 section 3.2).
    auto twice = api->token(std::nullopt, post_body(client_id, secret) + "&client_id=" + client_id);
    EXPECT_EQ(twice.status, 400);
    EXPECT_EQ(json::parse(twice.body)["error"], "invalid_request");

    // Neither: 401 invalid_client.
    auto none = api->token(std::nullopt, "grant_type=client_credentials");
    EXPECT_EQ(none.status, 401);
    EXPECT_EQ(json::parse(none.body)["error"], "invalid_client");
    EXPECT_EQ(header_of(none, "WWW-Authenticate"), "Basic realm=\"agent-hub\"");
}

TEST_F(ApiTest, RotationOverlapAtTheTokenEndpoint) {
    std::string before = bearer();  // issued with the original secret
    auto rotated = apps->rotate("app-a", std::chrono::seconds(120), "op");
    ASSERT_TRUE(rotated.has_value());
    const std::string fresh = rotated->client_secret;
    auto get = [&](const std::string& pw, bool post) {
        return post ? api->token(std::nullopt, post_body(client_id, pw))
                    : api->token(basic(client_id, pw), "grant_type=client_credentials");
    };
    for (bool post : {false, true}) {
        EXPECT_EQ(get(secret, post).status, 200) << "old secret during the overlap";
        EXPECT_EQ(get(fresh, post).status, 200) << "new secret during the overlap";
    }
    clock.advance_ms(120'000);
    for (bool post : {false, true}) {
        auto old = get(secret, post);
        EXPECT_EQ(old.status, 401) << "old secret after the overlap";
        EXPECT_EQ(json::parse(old.body)["error"], "invalid_client");
        EXPECT_EQ(get(fresh, post).status, 200);
    }
    // The token issued before the rotation is still good until it expires.
    EXPECT_EQ(api->ping(before, "edge-1").status, 200);
}

TEST_F(ApiTest, RevocationRejectsLiveTokensOnEveryCall) {
    std::string token = bearer();
    auto job = queue->create("app-a", "inv", "extract_metadata");
    ASSERT_TRUE(job.has_value());
    auto leased = api->lease(token, R"({"agent_id":"e","wait_seconds":0})");
    ASSERT_EQ(leased.status, 200) << leased.body;
    std::string lease_id = json::parse(leased.body)["lease_id"];
    EXPECT_EQ(api->ping(token, "e").status, 200);

    ASSERT_TRUE(apps->revoke("app-a", "op").has_value());
    auto check = [&](const ApiResponse& r) {
        EXPECT_EQ(r.status, 401) << r.body;
        auto body = json::parse(r.body);
        EXPECT_EQ(body["error"], "invalid_token");
        EXPECT_NE(body["error_description"].get<std::string>().find("revoked"), std::string::npos);
        EXPECT_NE(header_of(r, "WWW-Authenticate").find("error=\"invalid_token\""),
                  std::string::npos);
    };
    // At once, on every endpoint, with no time passing.
    check(api->lease(token, R"({"agent_id":"e","wait_seconds":0})"));
    check(api->ping(token, "e"));
    std::string chunk = chunk_of({sample_table("t", 2)});
    check(api->put_chunk(token, job->id, "0", lease_id, std::nullopt, chunk));
    check(api->complete(
        token, job->id,
        json{{"lease_id", lease_id}, {"agent_id", "e"}, {"chunks", json::array()}}.dump()));
    check(api->fail(
        token, job->id,
        json{{"lease_id", lease_id}, {"agent_id", "e"}, {"outcome", "failed"}, {"reason_code", "x"}}
            .dump()));
    // No new token either, with either method.
    auto basic_token = api->token(basic(client_id, secret), "grant_type=client_credentials");
    EXPECT_EQ(basic_token.status, 401);
    EXPECT_EQ(json::parse(basic_token.body)["error"], "invalid_client");
    EXPECT_EQ(api->token(std::nullopt, post_body(client_id, secret)).status, 401);
    // And no new jobs for it.
    auto refused = queue->create("app-a", "inv", "extract_metadata");
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, ErrorCode::conflict);
}

TEST_F(ApiTest, RevocationEndsAWaitingLongPoll) {
    std::string token = bearer();
    auto t0 = std::chrono::steady_clock::now();
    ApiResponse r;
    std::thread poller(
        [&] { r = api->lease(token, R"({"agent_id":"edge-1","wait_seconds":30})"); });
    // Whether the revocation lands before or during the wait, the answer is
    // the same 401; the poll must not sit out its 30 seconds.
    ASSERT_TRUE(apps->revoke("app-a", "op").has_value());
    poller.join();
    EXPECT_EQ(r.status, 401) << r.body;
    EXPECT_EQ(json::parse(r.body)["error"], "invalid_token");
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

// ---- private_key_jwt (RFC 7523) ----

using identity_testing::assertion_claims;
using identity_testing::TestKey;

constexpr const char* kTokenUrl = "https://hub.example:8443/oauth2/token";

std::string assertion_form(const std::string& assertion, const std::string& client_id = "") {
    std::string body = "grant_type=client_credentials&client_assertion_type=" +
                       form_encode("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") +
                       "&client_assertion=" + form_encode(assertion);
    if (!client_id.empty()) body += "&client_id=" + form_encode(client_id);
    return body;
}

class KeyTokenTest : public ApiTest {
  protected:
    void SetUp() override {
        ApiTest::SetUp();
        auto app = apps->create_with_key("keyed", key.public_key(), "alice");
        ASSERT_TRUE(app.has_value()) << app.error().describe();
        key_client = app->client_id;
    }
    std::string fresh(const TestKey& k, const std::string& aud = kTokenUrl) {
        return k.assertion(assertion_claims(key_client, clock.now_seconds(), aud));
    }

    TestKey key = TestKey::generate("ES256");
    std::string key_client;
};

TEST_F(KeyTokenTest, PrivateKeyJwtIssuesATokenThatWorks) {
    auto r = api->token(std::nullopt, assertion_form(fresh(key), key_client));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.client_id, key_client);
    EXPECT_NE(r.detail.find("via private_key_jwt"), std::string::npos);
    EXPECT_EQ(header_of(r, "Cache-Control"), "no-store");
    auto token = json::parse(r.body)["access_token"].get<std::string>();
    auto ping = api->ping("Bearer " + token, "edge-1");
    EXPECT_EQ(ping.status, 200) << ping.body;
    // client_id is optional (RFC 7523 section 3), aud may be the issuer.
    auto bare = api->token(std::nullopt, assertion_form(fresh(key, "agent-hub")));
    EXPECT_EQ(bare.status, 200) << bare.body;
    // Secret apps keep working alongside.
    EXPECT_EQ(api->token(basic(client_id, secret), "grant_type=client_credentials").status, 200);
}

TEST_F(KeyTokenTest, EveryAuthenticationFailureLooksTheSame) {
    auto good = api->token(std::nullopt, assertion_form(fresh(key)));
    ASSERT_EQ(good.status, 200) << good.body;
    auto other_client = apps->create_with_key("other", TestKey::generate("EdDSA").public_key());
    ASSERT_TRUE(other_client.has_value());

    std::vector<std::pair<std::string, std::string>> bodies = {
        {"bad signature", assertion_form(fresh(TestKey::generate("ES256")))},
        {"unknown client", assertion_form(key.assertion(
                               assertion_claims("cid_nobody", clock.now_seconds(), kTokenUrl)))},
        {"client_id mismatch", assertion_form(fresh(key), other_client->client_id)},
        {"wrong aud", assertion_form(fresh(key, "https://other.example/token"))},
        {"secret app", assertion_form(key.assertion(
                           assertion_claims(client_id, clock.now_seconds(), kTokenUrl)))},
        {"garbage", assertion_form("not-a-jwt")},
    };
    std::string replayed = fresh(key);
    ASSERT_EQ(api->token(std::nullopt, assertion_form(replayed)).status, 200);
    bodies.emplace_back("replay", assertion_form(replayed));
    std::string before_revoke = fresh(key);
    for (const auto& [why, body] : bodies) {
        auto r = api->token(std::nullopt, body);
        EXPECT_EQ(r.status, 401) << why;
        EXPECT_EQ(r.body, R"({"error":"invalid_client"})") << why;
        EXPECT_EQ(r.client_id, "") << why;
        EXPECT_NE(r.detail.find("private_key_jwt"), std::string::npos) << why;
    }
    ASSERT_TRUE(apps->revoke("keyed", "alice").has_value());
    auto revoked = api->token(std::nullopt, assertion_form(before_revoke));
    EXPECT_EQ(revoked.status, 401);
    EXPECT_EQ(revoked.body, R"({"error":"invalid_client"})");
}

TEST_F(KeyTokenTest, OneAuthenticationMethodPerRequest) {
    const std::string assertion = fresh(key);
    auto with_basic = api->token(basic(client_id, secret), assertion_form(assertion));
    EXPECT_EQ(with_basic.status, 400);
    EXPECT_EQ(json::parse(with_basic.body)["error"], "invalid_request");
    auto with_secret =
        api->token(std::nullopt, assertion_form(assertion, key_client) + "&client_secret=x");
    EXPECT_EQ(with_secret.status, 400);
    auto twice = api->token(std::nullopt, assertion_form(assertion) + "&client_assertion=x");
    EXPECT_EQ(twice.status, 400);
    auto no_type = api->token(
        std::nullopt, "grant_type=client_credentials&client_assertion=" + form_encode(assertion));
    EXPECT_EQ(no_type.status, 400);
    auto other_type = api->token(std::nullopt,
                                 "grant_type=client_credentials&client_assertion_type=urn%3Aother"
                                 "&client_assertion=" +
                                     form_encode(assertion));
    EXPECT_EQ(other_type.status, 400);
    // None of these consumed the assertion.
    EXPECT_EQ(api->token(std::nullopt, assertion_form(assertion)).status, 200);
}

TEST(HubAudience, IssuerOrTheTokenEndpointUrl) {
    const TokenEndpointOptions any;
    EXPECT_TRUE(is_hub_audience("agent-hub", any));
    EXPECT_TRUE(is_hub_audience("https://127.0.0.1:8443/oauth2/token", any));
    EXPECT_TRUE(is_hub_audience("https://hub.example/prefix/oauth2/token", any));
    EXPECT_FALSE(is_hub_audience("http://hub.example/oauth2/token", any));
    EXPECT_FALSE(is_hub_audience("https://hub.example/oauth2/token?x=1", any));
    EXPECT_FALSE(is_hub_audience("https:///oauth2/token", any));
    EXPECT_FALSE(is_hub_audience("https://user@hub.example/oauth2/token", any));
    EXPECT_FALSE(is_hub_audience("https://idp.example/token", any));
    EXPECT_FALSE(is_hub_audience("", any));
    const TokenEndpointOptions exact{{"https://hub.example:8443/oauth2/token"}};
    EXPECT_TRUE(is_hub_audience("https://hub.example:8443/oauth2/token", exact));
    EXPECT_TRUE(is_hub_audience("agent-hub", exact));
    EXPECT_FALSE(is_hub_audience("https://127.0.0.1:8443/oauth2/token", exact));
}

}  // namespace
}  // namespace sa::hub::server
