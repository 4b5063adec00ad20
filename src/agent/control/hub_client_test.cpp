#include "agent/control/hub_client.h"

#include <gtest/gtest.h>

#include <deque>

#include "common/crypto/digest.h"
#include "common/protocol/content_digest.h"

namespace sa::agent::control {
namespace {

using nlohmann::json;

class FakeTokens final : public auth::TokenSource {
  public:
    Result<secrets::SecretValue> access_token() override {
        ++fetches;
        if (!token) token = secrets::SecretValue::copy_of("tok-" + std::to_string(++generation));
        return secrets::SecretValue::copy_of(token->reveal());
    }
    void invalidate() override {
        ++invalidations;
        token.reset();
    }
    std::optional<secrets::SecretValue> token;
    int generation = 0;
    int fetches = 0;
    int invalidations = 0;
};

struct Seen {
    std::string method, url, body, bearer, job_id;
    std::map<std::string, std::string> headers;
    std::chrono::milliseconds timeout{0};
};

class FakeTransport final : public egress::Transport {
  public:
    Result<egress::HttpResponse> send(const egress::HttpRequest& request) override {
        Seen seen{request.method, request.url, std::string(request.body), "", request.job_id, {},
                  request.timeout};
        for (const auto& [name, value] : request.headers) seen.headers[name] = value;
        if (request.authorization && request.authorization->credentials) {
            seen.bearer = std::string(request.authorization->credentials->reveal());
        }
        requests.push_back(seen);
        if (replies.empty()) return fail(ErrorCode::unavailable, "cannot reach hub.test");
        auto next = std::move(replies.front());
        replies.pop_front();
        return next;
    }
    void reply(long status, const std::string& body = "",
               std::map<std::string, std::string> headers = {}) {
        egress::HttpResponse response;
        response.status = status;
        response.body = body;
        response.headers = std::move(headers);
        replies.push_back(response);
    }
    void unreachable() { replies.push_back(fail(ErrorCode::unavailable, "connection refused")); }
    std::deque<Result<egress::HttpResponse>> replies;
    std::vector<Seen> requests;
};

class HubClientTest : public ::testing::Test {
  protected:
    HubClient make() {
        HubClient::Options options;
        options.hub_url = "https://hub.test";
        options.agent_id = "edge-1";
        options.observer = [this](std::string_view endpoint, long status) {
            observed_.emplace_back(std::string(endpoint), status);
        };
        options.sleep = [this](std::chrono::milliseconds delay) {
            sleeps_.push_back(delay);
            return true;
        };
        return HubClient(transport_, tokens_, options);
    }
    static delivery::Chunk chunk(int64_t seq, std::string body) {
        return delivery::Chunk{seq, body, crypto::sha256(body)};
    }
    FakeTransport transport_;
    FakeTokens tokens_;
    std::vector<std::pair<std::string, long>> observed_;
    std::vector<std::chrono::milliseconds> sleeps_;
};

TEST_F(HubClientTest, LeaseReturnsEnvelopeOn200) {
    auto hub = make();
    transport_.reply(
        200, R"({"lease_id":"L1","job_id":"J1","lease_expires_at":1764403800,"job":"a.b.c"})");
    auto lease = hub.lease(25);
    ASSERT_TRUE(lease) << lease.error().describe();
    ASSERT_TRUE(lease->has_value());
    EXPECT_EQ((*lease)->lease_id, "L1");
    EXPECT_EQ((*lease)->job_id, "J1");
    EXPECT_EQ((*lease)->lease_expires_at, 1764403800);
    EXPECT_EQ((*lease)->job_jws, "a.b.c");

    ASSERT_EQ(transport_.requests.size(), 1u);
    const Seen& seen = transport_.requests[0];
    EXPECT_EQ(seen.method, "POST");
    EXPECT_EQ(seen.url, "https://hub.test/v1/agent/lease");
    EXPECT_EQ(seen.job_id, "");
    EXPECT_EQ(json::parse(seen.body), (json{{"agent_id", "edge-1"}, {"wait_seconds", 25}}));
    EXPECT_EQ(seen.headers.at("Content-Type"), "application/json");
    EXPECT_EQ(seen.bearer, "tok-1");
    EXPECT_EQ(seen.timeout, std::chrono::seconds(35));  // wait + 10 s
    EXPECT_EQ(observed_, (std::vector<std::pair<std::string, long>>{{"lease", 200}}));
}

TEST_F(HubClientTest, LeaseReturnsNulloptOn204) {
    auto hub = make();
    transport_.reply(204);
    auto lease = hub.lease(0);
    ASSERT_TRUE(lease);
    EXPECT_FALSE(lease->has_value());
    EXPECT_EQ(transport_.requests[0].timeout, std::chrono::seconds(10));
}

TEST_F(HubClientTest, MalformedLeaseResponsesAreErrors) {
    auto hub = make();
    for (const char* body :
         {"nope", "[]", R"({"job_id":"J","lease_expires_at":1,"job":"x"})",
          R"({"lease_id":"L","job_id":"J","job":"x"})",
          R"({"lease_id":"L\r\nX-Evil: 1","job_id":"J","lease_expires_at":1,"job":"x"})",
          R"({"lease_id":"L","job_id":"J","lease_expires_at":"soon","job":"x"})"}) {
        transport_.reply(200, body);
        auto lease = hub.lease(1);
        ASSERT_FALSE(lease) << body;
        EXPECT_EQ(lease.error().code, ErrorCode::invalid_argument) << body;
    }
}

TEST_F(HubClientTest, HubErrorBodyBecomesTheMessage) {
    auto hub = make();
    transport_.reply(409, R"({"error":"lease_lost","error_description":"lease L1 expired"})");
    auto status = hub.fail("J1", "L1", "failed", "extraction_failed", "boom");
    ASSERT_FALSE(status);
    EXPECT_EQ(status.error().code, ErrorCode::conflict);
    EXPECT_EQ(status.error().message,
              "hub POST /v1/jobs/J1/fail: HTTP 409 lease_lost: lease L1 expired");
}

TEST_F(HubClientTest, Unauthorized401ReauthenticatesOnce) {
    auto hub = make();
    transport_.reply(401, R"({"error":"invalid_token"})");
    transport_.reply(204);
    auto lease = hub.lease(5);
    ASSERT_TRUE(lease) << lease.error().describe();
    EXPECT_EQ(tokens_.invalidations, 1);
    ASSERT_EQ(transport_.requests.size(), 2u);
    EXPECT_EQ(transport_.requests[0].bearer, "tok-1");
    EXPECT_EQ(transport_.requests[1].bearer, "tok-2");
}

TEST_F(HubClientTest, Persistent401IsUnauthenticated) {
    auto hub = make();
    transport_.reply(401, R"({"error":"invalid_token"})");
    transport_.reply(401, R"({"error":"invalid_token"})");
    auto lease = hub.lease(5);
    ASSERT_FALSE(lease);
    EXPECT_EQ(lease.error().code, ErrorCode::unauthenticated);
    EXPECT_EQ(transport_.requests.size(), 2u);  // retried once, not forever
}

TEST_F(HubClientTest, PingSendsAgentIdAndReturnsServerTime) {
    HubClient::Options options;
    options.hub_url = "https://hub.test";
    options.agent_id = "edge 1/x";
    options.request_timeout = std::chrono::milliseconds(7000);
    options.observer = [this](std::string_view endpoint, long status) {
        observed_.emplace_back(std::string(endpoint), status);
    };
    HubClient hub(transport_, tokens_, options);
    transport_.reply(200, R"({"agent_id":"edge 1/x","server_time":1764403200})");
    auto ping = hub.ping();
    ASSERT_TRUE(ping) << ping.error().describe();
    EXPECT_EQ(ping->server_time, 1764403200);
    EXPECT_GE(ping->rtt.count(), 0);
    ASSERT_EQ(transport_.requests.size(), 1u);
    const Seen& seen = transport_.requests[0];
    EXPECT_EQ(seen.method, "GET");
    EXPECT_EQ(seen.url, "https://hub.test/v1/agent/ping?agent_id=edge%201%2Fx");
    EXPECT_EQ(seen.body, "");
    EXPECT_EQ(seen.bearer, "tok-1");
    EXPECT_EQ(seen.timeout, std::chrono::milliseconds(7000));
    EXPECT_EQ(observed_, (std::vector<std::pair<std::string, long>>{{"ping", 200}}));
}

TEST_F(HubClientTest, Ping401InvalidatesTheTokenWithoutRetrying) {
    auto hub = make();
    transport_.reply(401, R"({"error":"invalid_token","error_description":"expired"})");
    transport_.reply(200, R"({"agent_id":"edge-1","server_time":1})");
    auto ping = hub.ping();
    ASSERT_FALSE(ping);
    EXPECT_EQ(ping.error().code, ErrorCode::unauthenticated);
    EXPECT_EQ(ping.error().message, "hub GET /v1/agent/ping: HTTP 401 invalid_token: expired");
    EXPECT_EQ(transport_.requests.size(), 1u);  // one attempt
    EXPECT_EQ(tokens_.invalidations, 1);
    EXPECT_TRUE(sleeps_.empty());

    // The next ping uses a fresh token.
    auto again = hub.ping();
    ASSERT_TRUE(again) << again.error().describe();
    EXPECT_EQ(transport_.requests.at(1).bearer, "tok-2");
}

TEST_F(HubClientTest, PingReportsFailuresWithoutRetrying) {
    auto hub = make();
    transport_.unreachable();
    transport_.reply(200, R"({"agent_id":"edge-1","server_time":1})");
    auto down = hub.ping();
    ASSERT_FALSE(down);
    EXPECT_EQ(down.error().code, ErrorCode::unavailable);
    EXPECT_EQ(transport_.requests.size(), 1u);
    EXPECT_EQ(tokens_.invalidations, 0);

    transport_.replies.clear();
    transport_.reply(503, R"({"error":"server_error"})");
    auto busy = hub.ping();
    ASSERT_FALSE(busy);
    EXPECT_EQ(busy.error().code, ErrorCode::unavailable);
    EXPECT_EQ(transport_.requests.size(), 2u);
    EXPECT_TRUE(sleeps_.empty());

    for (const char* body : {"nope", "{}", R"({"server_time":"now"})", R"({"server_time":1.5})",
                             R"({"server_time":18446744073709551615})"}) {
        transport_.reply(200, body);
        auto bad = hub.ping();
        ASSERT_FALSE(bad) << body;
        EXPECT_EQ(bad.error().code, ErrorCode::invalid_argument) << body;
    }
}

TEST_F(HubClientTest, UploadChunkSendsDigestAndLease) {
    auto hub = make();
    transport_.reply(201, R"({"seq":3,"sha256":"x","size":5})");
    auto status = hub.upload_chunk("J/1", "L1", chunk(3, "{}\n{}\n"));
    ASSERT_TRUE(status) << status.error().describe();
    const Seen& seen = transport_.requests.at(0);
    EXPECT_EQ(seen.method, "PUT");
    EXPECT_EQ(seen.url, "https://hub.test/v1/jobs/J%2F1/chunks/3");
    EXPECT_EQ(seen.job_id, "J/1");  // for the network log
    EXPECT_EQ(seen.body, "{}\n{}\n");
    EXPECT_EQ(seen.headers.at("X-Lease-Id"), "L1");
    EXPECT_EQ(seen.headers.at("Content-Type"), "application/x-ndjson");
    auto digest = protocol::parse_content_digest_sha256(seen.headers.at("Content-Digest"));
    ASSERT_TRUE(digest);
    EXPECT_EQ(*digest, crypto::sha256("{}\n{}\n"));
}

TEST_F(HubClientTest, UploadTreats200AsSuccess) {
    auto hub = make();
    transport_.reply(200, R"({"seq":0})");
    EXPECT_TRUE(hub.upload_chunk("J1", "L1", chunk(0, "x\n")));
}

TEST_F(HubClientTest, UploadRetriesTransientFailuresWithBackoff) {
    auto hub = make();
    transport_.unreachable();
    transport_.reply(503, R"({"error":"busy"})");
    transport_.reply(429, "", {{"retry-after", "7"}});
    transport_.reply(201, "{}");
    auto status = hub.upload_chunk("J1", "L1", chunk(0, "x\n"));
    ASSERT_TRUE(status) << status.error().describe();
    EXPECT_EQ(transport_.requests.size(), 4u);
    ASSERT_EQ(sleeps_.size(), 3u);
    EXPECT_LE(sleeps_[0], std::chrono::milliseconds(500));   // full jitter under base
    EXPECT_LE(sleeps_[1], std::chrono::milliseconds(1000));  // ceiling doubled
    EXPECT_EQ(sleeps_[2], std::chrono::seconds(7));          // Retry-After wins
}

TEST_F(HubClientTest, UploadGivesUpAfterFourAttempts) {
    auto hub = make();
    for (int i = 0; i < 5; ++i) transport_.reply(500, R"({"error":"server_error"})");
    auto status = hub.upload_chunk("J1", "L1", chunk(0, "x\n"));
    ASSERT_FALSE(status);
    EXPECT_EQ(status.error().code, ErrorCode::unavailable);
    EXPECT_EQ(transport_.requests.size(), 4u);
}

TEST_F(HubClientTest, UploadDoesNotRetryConflicts) {
    auto hub = make();
    transport_.reply(409, R"({"error":"chunk_conflict"})");
    auto status = hub.upload_chunk("J1", "L1", chunk(0, "x\n"));
    ASSERT_FALSE(status);
    EXPECT_EQ(status.error().code, ErrorCode::conflict);
    EXPECT_NE(status.error().message.find("chunk_conflict"), std::string::npos);
    EXPECT_EQ(transport_.requests.size(), 1u);
    EXPECT_TRUE(sleeps_.empty());
}

TEST_F(HubClientTest, UploadStopsWhenSleepIsInterrupted) {
    HubClient::Options options;
    options.hub_url = "https://hub.test";
    options.agent_id = "edge-1";
    options.sleep = [](std::chrono::milliseconds) { return false; };
    HubClient hub(transport_, tokens_, options);
    transport_.reply(503);
    transport_.reply(201);
    EXPECT_FALSE(hub.upload_chunk("J1", "L1", chunk(0, "x\n")));
    EXPECT_EQ(transport_.requests.size(), 1u);
}

TEST_F(HubClientTest, CompleteSendsProtocolBody) {
    auto hub = make();
    transport_.reply(200, R"({"job_id":"J1","status":"succeeded","tables":2,"columns":5})");
    Completion completion;
    completion.lease_id = "L1";
    completion.chunks = {{0, "aa", 10}, {1, "bb", 20}};
    completion.summary.tables = 2;
    completion.summary.views = 1;
    completion.summary.columns = 5;
    completion.summary.indexes = 9;  // not part of the wire body
    completion.started_at_ms = 1000;
    completion.finished_at_ms = 2000;
    auto result = hub.complete("J1", completion);
    ASSERT_TRUE(result) << result.error().describe();
    EXPECT_EQ((*result)["status"], "succeeded");
    const Seen& seen = transport_.requests.at(0);
    EXPECT_EQ(seen.url, "https://hub.test/v1/jobs/J1/complete");
    EXPECT_EQ(json::parse(seen.body),
              (json{{"lease_id", "L1"},
                    {"agent_id", "edge-1"},
                    {"chunks",
                     {{{"seq", 0}, {"sha256", "aa"}, {"size", 10}},
                      {{"seq", 1}, {"sha256", "bb"}, {"size", 20}}}},
                    {"summary", {{"tables", 2}, {"views", 1}, {"columns", 5}}},
                    {"started_at_ms", 1000},
                    {"finished_at_ms", 2000}}));
}

TEST_F(HubClientTest, FailSendsProtocolBody) {
    auto hub = make();
    transport_.reply(200, R"({"job_id":"J1","status":"refused"})");
    ASSERT_TRUE(hub.fail("J1", "L1", "refused", "bad_signature", "JWS signature does not verify"));
    const Seen& seen = transport_.requests.at(0);
    EXPECT_EQ(seen.url, "https://hub.test/v1/jobs/J1/fail");
    EXPECT_EQ(json::parse(seen.body), (json{{"lease_id", "L1"},
                                            {"agent_id", "edge-1"},
                                            {"outcome", "refused"},
                                            {"reason_code", "bad_signature"},
                                            {"message", "JWS signature does not verify"}}));
}

TEST_F(HubClientTest, CompleteSendsTheResultOfAnInteractiveOperation) {
    auto hub = make();
    transport_.reply(200, R"({"job_id":"J1","status":"succeeded"})");
    Completion completion;
    completion.lease_id = "L1";
    completion.started_at_ms = 1000;
    completion.finished_at_ms = 1500;
    completion.result = json{{"ok", true}, {"server_version", "16.2"}};
    auto result = hub.complete("J1", completion);
    ASSERT_TRUE(result) << result.error().describe();
    const json sent = json::parse(transport_.requests.at(0).body);
    EXPECT_EQ(sent["result"], (json{{"ok", true}, {"server_version", "16.2"}}));
    EXPECT_EQ(sent["chunks"], json::array());
    EXPECT_EQ(sent["lease_id"], "L1");

    // Without a result the body has no "result" member at all.
    transport_.reply(200, "{}");
    completion.result.reset();
    ASSERT_TRUE(hub.complete("J1", completion));
    EXPECT_FALSE(json::parse(transport_.requests.at(1).body).contains("result"));
    // Nor a "delta" member: a full replacement.
    EXPECT_FALSE(json::parse(transport_.requests.at(1).body).contains("delta"));
}

TEST_F(HubClientTest, CompleteNamesTheBaselineOfADelta) {
    auto hub = make();
    transport_.reply(200, R"({"job_id":"J2","status":"succeeded"})");
    Completion completion;
    completion.lease_id = "L2";
    completion.chunks = {{0, "aa", 10}};
    completion.delta_baseline_job_id = "J1";
    ASSERT_TRUE(hub.complete("J2", completion));
    const json sent = json::parse(transport_.requests.at(0).body);
    EXPECT_EQ(sent["delta"], (json{{"baseline_job_id", "J1"}}));

    // A baseline_mismatch answer is an error: the caller keeps its state.
    transport_.reply(409, R"({"error":"baseline_mismatch","error_description":"expected J0"})");
    auto rejected = hub.complete("J2", completion);
    ASSERT_FALSE(rejected);
    EXPECT_EQ(rejected.error().code, ErrorCode::conflict);
    EXPECT_NE(rejected.error().message.find("baseline_mismatch"), std::string::npos)
        << rejected.error().message;
}

TEST_F(HubClientTest, HeartbeatSendsProgressAndParsesTheReply) {
    auto hub = make();
    transport_.reply(200, R"({"job_id":"J/1","lease_expires_at":1764404400,"cancel":false})");
    Progress progress{.objects = 12, .bytes = 3456, .chunks = 2, .phase = "uploading"};
    auto reply = hub.heartbeat("J/1", "L1", progress);
    ASSERT_TRUE(reply) << reply.error().describe();
    EXPECT_EQ(reply->lease_expires_at, 1764404400);
    EXPECT_FALSE(reply->cancel);
    const Seen& seen = transport_.requests.at(0);
    EXPECT_EQ(seen.method, "POST");
    EXPECT_EQ(seen.url, "https://hub.test/v1/jobs/J%2F1/heartbeat");
    EXPECT_EQ(seen.job_id, "J/1");
    EXPECT_EQ(seen.timeout, std::chrono::seconds(15));
    EXPECT_EQ(seen.headers.at("Content-Type"), "application/json");
    EXPECT_EQ(json::parse(seen.body),
              (json{{"lease_id", "L1"},
                    {"agent_id", "edge-1"},
                    {"progress",
                     {{"objects", 12}, {"bytes", 3456}, {"chunks", 2}, {"phase", "uploading"}}}}));
    EXPECT_EQ(observed_, (std::vector<std::pair<std::string, long>>{{"heartbeat", 200}}));

    transport_.reply(200, R"({"job_id":"J/1","lease_expires_at":1764404500,"cancel":true})");
    auto cancelled = hub.heartbeat("J/1", "L1", Progress{});
    ASSERT_TRUE(cancelled) << cancelled.error().describe();
    EXPECT_TRUE(cancelled->cancel);
    EXPECT_EQ(json::parse(transport_.requests.at(1).body)["progress"]["phase"], "extracting");
}

TEST_F(HubClientTest, HeartbeatMapsLeaseLostAndMalformedReplies) {
    auto hub = make();
    transport_.reply(409, R"({"error":"lease_lost","error_description":"lease L1 expired at 5"})");
    auto lost = hub.heartbeat("J1", "L1", Progress{});
    ASSERT_FALSE(lost);
    EXPECT_EQ(lost.error().code, ErrorCode::conflict);
    EXPECT_NE(lost.error().message.find("lease_lost"), std::string::npos);
    EXPECT_EQ(transport_.requests.size(), 1u);  // not retried
    EXPECT_TRUE(sleeps_.empty());

    // A 409 whose body got lost still names lease_lost.
    transport_.reply(409, "");
    auto bare = hub.heartbeat("J1", "L1", Progress{});
    ASSERT_FALSE(bare);
    EXPECT_EQ(bare.error().code, ErrorCode::conflict);
    EXPECT_NE(bare.error().message.find("lease_lost"), std::string::npos);

    // One retry after a 401, with a fresh token.
    transport_.reply(401, R"({"error":"invalid_token"})");
    transport_.reply(200, R"({"job_id":"J1","lease_expires_at":7,"cancel":false})");
    auto again = hub.heartbeat("J1", "L1", Progress{});
    ASSERT_TRUE(again) << again.error().describe();
    EXPECT_EQ(again->lease_expires_at, 7);
    EXPECT_EQ(tokens_.invalidations, 1);

    transport_.unreachable();
    auto down = hub.heartbeat("J1", "L1", Progress{});
    ASSERT_FALSE(down);
    EXPECT_EQ(down.error().code, ErrorCode::unavailable);

    for (const char* body : {"nope", "{}", R"({"lease_expires_at":"soon","cancel":false})",
                             R"({"lease_expires_at":1})", R"({"lease_expires_at":1,"cancel":"no"})",
                             R"({"lease_expires_at":18446744073709551615,"cancel":false})"}) {
        transport_.reply(200, body);
        auto bad = hub.heartbeat("J1", "L1", Progress{});
        ASSERT_FALSE(bad) << body;
        EXPECT_EQ(bad.error().code, ErrorCode::invalid_argument) << body;
    }
}

TEST_F(HubClientTest, InvalidUtf8InMessagesDoesNotThrow) {
    auto hub = make();
    transport_.reply(200, "{}");
    EXPECT_TRUE(hub.fail("J1", "L1", "failed", "extraction_failed", "bad \xff\xfe bytes"));
}

}  // namespace
}  // namespace sa::agent::control
