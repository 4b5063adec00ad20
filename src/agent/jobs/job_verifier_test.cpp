#include "agent/jobs/job_verifier.h"

#include <gtest/gtest.h>

#include "common/crypto/encoding.h"
#include "common/jose/jws.h"
#include "common/protocol/protocol.h"

namespace sa::agent::jobs {
namespace {

using nlohmann::json;

constexpr int64_t kNow = 1'764'403'200;

class JobVerifierTest : public ::testing::Test {
  protected:
    json claims(const std::string& jti = "lease-1") const {
        return {{"iss", "agent-hub"},
                {"aud", "client-1"},
                {"jti", jti},
                {"iat", kNow},
                {"nbf", kNow},
                {"exp", kNow + 600},
                {"job_id", "job-1"},
                {"app", "sales"},
                {"source", "warehouse"},
                {"operation", "extract_metadata"}};
    }
    std::string sign(const json& payload, const std::string& typ = protocol::kJobType) const {
        return jose::sign(hub_key_, "job-key-1", typ, payload);
    }
    static LeaseEnvelope envelope(std::string jws, std::string job_id = "job-1") {
        return {.lease_id = "lease-1",
                .job_id = std::move(job_id),
                .lease_expires_at = kNow + 600,
                .job_jws = std::move(jws)};
    }
    // Asserts a refusal with the given reason whose message does not leak the token.
    void expect_refused(const LeaseEnvelope& env, const std::string& reason, int64_t now = kNow) {
        auto job = verifier_.verify(env, now);
        ASSERT_FALSE(job) << "expected refusal " << reason;
        EXPECT_EQ(job.error().reason_code, reason) << job.error().message;
        EXPECT_FALSE(job.error().message.empty());
        if (!env.job_jws.empty()) {
            EXPECT_EQ(job.error().message.find(env.job_jws), std::string::npos);
        }
    }

    crypto::Ed25519PrivateKey hub_key_ = crypto::Ed25519PrivateKey::generate();
    JobVerifier verifier_{hub_key_.public_key(), {.audience = "client-1", .leeway_seconds = 60}};
};

TEST_F(JobVerifierTest, GoodJobPassesAndFieldsAreFilled) {
    auto job = verifier_.verify(envelope(sign(claims())), kNow);
    ASSERT_TRUE(job) << job.error().reason_code << ": " << job.error().message;
    EXPECT_EQ(job->job_id, "job-1");
    EXPECT_EQ(job->lease_id, "lease-1");
    EXPECT_EQ(job->jti, "lease-1");
    EXPECT_EQ(job->app, "sales");
    EXPECT_EQ(job->source, "warehouse");
    EXPECT_EQ(job->operation, "extract_metadata");
    EXPECT_EQ(job->expires_at, kNow + 600);
}

TEST_F(JobVerifierTest, AudienceArrayContainingTheClientIsAccepted) {
    json c = claims();
    c["aud"] = json::array({"other", "client-1"});
    EXPECT_TRUE(verifier_.verify(envelope(sign(c)), kNow));
}

TEST_F(JobVerifierTest, OperationIsLeftToTheCaller) {
    json c = claims();
    c["operation"] = "drop_everything";
    auto job = verifier_.verify(envelope(sign(c)), kNow);
    ASSERT_TRUE(job);
    EXPECT_EQ(job->operation, "drop_everything");
}

TEST_F(JobVerifierTest, SignedByAnotherKeyIsBadSignature) {
    auto other = crypto::Ed25519PrivateKey::generate();
    expect_refused(envelope(jose::sign(other, "job-key-1", protocol::kJobType, claims())),
                   "bad_signature");
}

TEST_F(JobVerifierTest, TamperedPayloadIsBadSignature) {
    std::string token = sign(claims());
    json evil = claims();
    evil["source"] = "hr";
    size_t a = token.find('.');
    size_t b = token.rfind('.');
    std::string forged =
        token.substr(0, a + 1) + crypto::base64url_encode(evil.dump()) + token.substr(b);
    expect_refused(envelope(forged), "bad_signature");
}

TEST_F(JobVerifierTest, AlgNoneIsBadSignature) {
    std::string header = crypto::base64url_encode(R"({"alg":"none","typ":"secure-agent-job+jwt"})");
    std::string token = header + "." + crypto::base64url_encode(claims().dump()) + ".";
    expect_refused(envelope(token), "bad_signature");
}

TEST_F(JobVerifierTest, OtherAlgorithmIsBadSignature) {
    std::string header =
        crypto::base64url_encode(R"({"alg":"HS256","typ":"secure-agent-job+jwt"})");
    std::string token = header + "." + crypto::base64url_encode(claims().dump()) + ".c2ln";
    expect_refused(envelope(token), "bad_signature");
}

TEST_F(JobVerifierTest, WrongAudience) {
    json c = claims();
    c["aud"] = "client-2";
    expect_refused(envelope(sign(c)), "wrong_audience");
    c.erase("aud");
    expect_refused(envelope(sign(c)), "wrong_audience");
}

TEST_F(JobVerifierTest, EmptyConfiguredAudienceRefusesEverything) {
    JobVerifier verifier(hub_key_.public_key(), {.audience = ""});
    auto job = verifier.verify(envelope(sign(claims())), kNow);
    ASSERT_FALSE(job);
    EXPECT_EQ(job.error().reason_code, "wrong_audience");
}

TEST_F(JobVerifierTest, ExpiredBeyondLeeway) {
    expect_refused(envelope(sign(claims())), "expired", kNow + 600 + 61);
}

TEST_F(JobVerifierTest, ExpiryWithinLeewayIsAccepted) {
    EXPECT_TRUE(verifier_.verify(envelope(sign(claims())), kNow + 600 + 60));
}

TEST_F(JobVerifierTest, NotYetValidIsExpired) {
    expect_refused(envelope(sign(claims())), "expired", kNow - 61);
}

TEST_F(JobVerifierTest, WrongType) {
    expect_refused(envelope(sign(claims(), "at+jwt")), "wrong_type");
    expect_refused(envelope(sign(claims(), "")), "wrong_type");
}

TEST_F(JobVerifierTest, WrongIssuerIsMalformed) {
    json c = claims();
    c["iss"] = "someone-else";
    expect_refused(envelope(sign(c)), "malformed_job");
}

TEST_F(JobVerifierTest, MissingOrEmptyRequiredClaimsAreMalformed) {
    for (const char* name : {"job_id", "app", "source", "operation", "jti", "exp"}) {
        json c = claims();
        c.erase(name);
        SCOPED_TRACE(name);
        expect_refused(envelope(sign(c)), "malformed_job");
    }
    for (const char* name : {"job_id", "source", "jti"}) {
        json c = claims();
        c[name] = "";
        SCOPED_TRACE(name);
        expect_refused(envelope(sign(c)), "malformed_job");
    }
    json c = claims();
    c["source"] = 42;
    expect_refused(envelope(sign(c)), "malformed_job");
    c = claims();
    c["exp"] = "tomorrow";
    expect_refused(envelope(sign(c)), "malformed_job");
}

TEST_F(JobVerifierTest, OverlongClaimIsMalformed) {
    json c = claims();
    c["source"] = std::string(5000, 's');
    expect_refused(envelope(sign(c)), "malformed_job");
}

TEST_F(JobVerifierTest, JobIdMismatchWithEnvelopeIsMalformed) {
    expect_refused(envelope(sign(claims()), "job-2"), "malformed_job");
}

TEST_F(JobVerifierTest, SameJtiTwiceIsReplayed) {
    ASSERT_TRUE(verifier_.verify(envelope(sign(claims("lease-7"))), kNow));
    // A fresh signature over the same jti is still a replay.
    json again = claims("lease-7");
    again["iat"] = kNow + 5;
    expect_refused(envelope(sign(again)), "replayed", kNow + 10);
    // A different jti is fine.
    EXPECT_TRUE(verifier_.verify(envelope(sign(claims("lease-8"))), kNow + 10));
}

TEST_F(JobVerifierTest, RefusedJobDoesNotConsumeItsJti) {
    expect_refused(envelope(sign(claims("lease-9")), "job-other"), "malformed_job");
    EXPECT_TRUE(verifier_.verify(envelope(sign(claims("lease-9"))), kNow));
}

TEST_F(JobVerifierTest, ManyDistinctJobsAreAccepted) {
    // Pruning and the jti index must stay consistent across many calls.
    for (int i = 0; i < 200; ++i) {
        json c = claims("lease-" + std::to_string(i));
        c["exp"] = kNow + i;
        ASSERT_TRUE(verifier_.verify(envelope(sign(c)), kNow + i)) << i;
    }
    json c = claims("lease-199");
    c["exp"] = kNow + 1000;
    expect_refused(envelope(sign(c)), "replayed", kNow + 199);
}

TEST_F(JobVerifierTest, GarbageIsMalformed) {
    expect_refused(envelope("not a jws at all"), "malformed_job");
    expect_refused(envelope(""), "malformed_job");
    expect_refused(envelope("a.b.c.d"), "malformed_job");
    expect_refused(envelope("!!!.???.***"), "malformed_job");
}

TEST_F(JobVerifierTest, NonObjectPayloadWithValidSignatureIsMalformed) {
    std::string token = jose::sign_compact(
        hub_key_, R"({"alg":"EdDSA","typ":"secure-agent-job+jwt"})", R"(["job-1"])");
    expect_refused(envelope(token), "malformed_job");
}

}  // namespace
}  // namespace sa::agent::jobs
