#include "agent/jobs/job_verifier.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "common/crypto/encoding.h"
#include "common/crypto/random.h"
#include "common/jose/jws.h"
#include "common/protocol/protocol.h"

namespace sa::agent::jobs {
namespace {

using nlohmann::json;

constexpr int64_t kNow = 1'764'403'200;

size_t util_lines(const std::string& path) {
    std::ifstream in(path);
    size_t n = 0;
    for (std::string line; std::getline(in, line);) ++n;
    return n;
}

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
        return jose::sign(hub_key_, hub_key_.public_key().key_id(), typ, payload);
    }
    static LeaseEnvelope envelope(std::string jws, std::string job_id = "job-1") {
        return {.lease_id = "lease-1",
                .job_id = std::move(job_id),
                .lease_expires_at = kNow + 600,
                .job_jws = std::move(jws)};
    }
    // Asserts a refusal with the given reason whose message does not leak the token.
    void expect_refused(const LeaseEnvelope& env, const std::string& reason, int64_t now = kNow) {
        expect_refused_by(verifier_, env, reason, now);
    }
    static void expect_refused_by(JobVerifier& verifier, const LeaseEnvelope& env,
                                  const std::string& reason, int64_t now = kNow) {
        auto job = verifier.verify(env, now);
        ASSERT_FALSE(job) << "expected refusal " << reason;
        EXPECT_EQ(job.error().reason_code, reason) << job.error().message;
        EXPECT_FALSE(job.error().message.empty());
        if (!env.job_jws.empty()) {
            EXPECT_EQ(job.error().message.find(env.job_jws), std::string::npos);
        }
    }

    crypto::Ed25519PrivateKey hub_key_ = crypto::Ed25519PrivateKey::generate();
    JobVerifier verifier_{{hub_key_.public_key()}, {.audience = "client-1", .leeway_seconds = 60}};
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
    EXPECT_EQ(job->kid, hub_key_.public_key().key_id());
    EXPECT_TRUE(job->filters.empty());
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
    // Claims the pinned key's id, but the signature is not that key's.
    expect_refused(
        envelope(jose::sign(other, hub_key_.public_key().key_id(), protocol::kJobType, claims())),
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
    JobVerifier verifier({hub_key_.public_key()}, {.audience = ""});
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

TEST_F(JobVerifierTest, ModeIsFullWhenAbsentOrSaidSo) {
    auto absent = verifier_.verify(envelope(sign(claims("lease-m1"))), kNow);
    ASSERT_TRUE(absent) << absent.error().message;
    EXPECT_EQ(absent->mode, "full");
    EXPECT_TRUE(absent->baseline_job_id.empty());
    json c = claims("lease-m2");
    c["mode"] = "full";
    auto full = verifier_.verify(envelope(sign(c)), kNow);
    ASSERT_TRUE(full) << full.error().message;
    EXPECT_EQ(full->mode, "full");
}

TEST_F(JobVerifierTest, IncrementalModeCarriesItsBaseline) {
    json c = claims();
    c["mode"] = "incremental";
    c["baseline_job_id"] = "job-0";
    auto job = verifier_.verify(envelope(sign(c)), kNow);
    ASSERT_TRUE(job) << job.error().message;
    EXPECT_EQ(job->mode, "incremental");
    EXPECT_EQ(job->baseline_job_id, "job-0");
}

TEST_F(JobVerifierTest, BadModeClaimsAreMalformed) {
    int n = 0;
    const auto refused = [&](json c) {
        c["jti"] = "lease-b" + std::to_string(++n);
        expect_refused(envelope(sign(c)), "malformed_job");
    };
    json c = claims();
    c["mode"] = "sideways";
    refused(c);
    c["mode"] = 1;
    refused(c);
    c["mode"] = "incremental";  // without a baseline
    refused(c);
    c["baseline_job_id"] = "";
    refused(c);
    c["baseline_job_id"] = 7;
    refused(c);
    c["mode"] = "full";  // a baseline only goes with incremental
    c["baseline_job_id"] = "job-0";
    refused(c);
    c = claims();
    c["operation"] = "test_connection";
    c["mode"] = "incremental";
    c["baseline_job_id"] = "job-0";
    refused(c);
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
    json header = {
        {"alg", "EdDSA"}, {"typ", "secure-agent-job+jwt"}, {"kid", hub_key_.public_key().key_id()}};
    std::string token = jose::sign_compact(hub_key_, header.dump(), R"(["job-1"])");
    expect_refused(envelope(token), "malformed_job");
}

TEST_F(JobVerifierTest, UnknownOrMissingKidIsUnknownKey) {
    auto job = verifier_.verify(
        envelope(jose::sign(hub_key_, "retired-key", protocol::kJobType, claims())), kNow);
    ASSERT_FALSE(job);
    EXPECT_EQ(job.error().reason_code, "unknown_key");
    EXPECT_EQ(job.error().message,
              "job is signed with key id retired-key, which this agent does not pin (pinned: " +
                  hub_key_.public_key().key_id() + ")");

    json header = {{"alg", "EdDSA"}, {"typ", "secure-agent-job+jwt"}};
    expect_refused(envelope(jose::sign_compact(hub_key_, header.dump(), claims().dump())),
                   "unknown_key");
    header["kid"] = 7;
    expect_refused(envelope(jose::sign_compact(hub_key_, header.dump(), claims().dump())),
                   "unknown_key");
    // A hostile kid is bounded and made printable in the message.
    job = verifier_.verify(
        envelope(jose::sign(hub_key_, std::string(500, 'k') + "\n", protocol::kJobType, claims())),
        kNow);
    ASSERT_FALSE(job);
    EXPECT_EQ(job.error().reason_code, "unknown_key");
    EXPECT_LT(job.error().message.size(), 300u);
    EXPECT_EQ(job.error().message.find('\n'), std::string::npos);
}

TEST_F(JobVerifierTest, NoPinnedKeyRefusesEverything) {
    JobVerifier verifier({}, {.audience = "client-1"});
    auto job = verifier.verify(envelope(sign(claims())), kNow);
    ASSERT_FALSE(job);
    EXPECT_EQ(job.error().reason_code, "unknown_key");
    EXPECT_NE(job.error().message.find("(pinned: none)"), std::string::npos);
}

TEST_F(JobVerifierTest, EachOfTwoPinnedKeysIsAccepted) {
    // Key rotation: the new key is pinned beside the old one.
    auto new_key = crypto::Ed25519PrivateKey::generate();
    JobVerifier verifier({hub_key_.public_key(), new_key.public_key()}, {.audience = "client-1"});
    auto old_job = verifier.verify(envelope(sign(claims("lease-a"))), kNow);
    ASSERT_TRUE(old_job) << old_job.error().message;
    EXPECT_EQ(old_job->kid, hub_key_.public_key().key_id());
    auto new_job = verifier.verify(envelope(jose::sign(new_key, new_key.public_key().key_id(),
                                                       protocol::kJobType, claims("lease-b"))),
                                   kNow);
    ASSERT_TRUE(new_job) << new_job.error().message;
    EXPECT_EQ(new_job->kid, new_key.public_key().key_id());
    // The kid selects the key: the new key's signature under the old kid fails.
    auto crossed = verifier.verify(envelope(jose::sign(new_key, hub_key_.public_key().key_id(),
                                                       protocol::kJobType, claims("lease-c"))),
                                   kNow);
    ASSERT_FALSE(crossed);
    EXPECT_EQ(crossed.error().reason_code, "bad_signature");
    // The same jti under the other key is still a replay.
    auto again = verifier.verify(envelope(jose::sign(new_key, new_key.public_key().key_id(),
                                                     protocol::kJobType, claims("lease-a"))),
                                 kNow);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().reason_code, "replayed");
}

TEST_F(JobVerifierTest, JtiWithWhitespaceOrControlCharsIsMalformed) {
    for (std::string jti : {"lease 1", "lease\n1", "lease\t1", "lease\x01"}) {
        SCOPED_TRACE(jti);
        expect_refused(envelope(sign(claims(jti))), "malformed_job");
    }
    EXPECT_TRUE(verifier_.verify(envelope(sign(claims("lease-\xc3\xa9"))), kNow));
}

TEST_F(JobVerifierTest, FiltersClaimIsParsed) {
    json c = claims();
    c["filters"] = {{"schemas", {{"include", {"sales_.*"}}}}, {"tables", {{"exclude", {"tmp"}}}}};
    auto job = verifier_.verify(envelope(sign(c)), kNow);
    ASSERT_TRUE(job) << job.error().message;
    EXPECT_EQ(job->filters.schemas.include, std::vector<std::string>{"sales_.*"});
    EXPECT_EQ(job->filters.tables.exclude, std::vector<std::string>{"tmp"});
}

TEST_F(JobVerifierTest, BadFiltersClaimIsMalformedAndNamesTheField) {
    json c = claims();
    c["filters"] = {{"schemas", {{"include", {"ok", "(unclosed"}}}}};
    auto job = verifier_.verify(envelope(sign(c)), kNow);
    ASSERT_FALSE(job);
    EXPECT_EQ(job.error().reason_code, "malformed_job");
    EXPECT_EQ(job.error().message.rfind("job filters.schemas.include[1]: ", 0), 0u)
        << job.error().message;
    c["filters"] = "everything";
    expect_refused(envelope(sign(c)), "malformed_job");
    // A refused job does not consume its jti.
    EXPECT_TRUE(verifier_.verify(envelope(sign(claims())), kNow));
}

class ReplayFileTest : public JobVerifierTest {
  protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() / ("sa-jobs-" + crypto::random_token(8));
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    JobVerifier::Options options() const {
        return {.audience = "client-1",
                .leeway_seconds = 60,
                .replay_file = (dir_ / "jobs" / "replay.log").string()};
    }
    std::filesystem::path dir_;
};

TEST_F(ReplayFileTest, ReplayIsRefusedAfterARestart) {
    std::string token = sign(claims("lease-r"));
    {
        JobVerifier first({hub_key_.public_key()}, options());
        auto job = first.verify(envelope(token), kNow);
        ASSERT_TRUE(job) << job.error().message;
    }
    // The file exists, is private and holds the entry.
    struct stat st {};
    ASSERT_EQ(::stat(options().replay_file.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    JobVerifier second({hub_key_.public_key()}, options());
    auto stats = second.open_replay_store(kNow + 10);
    ASSERT_TRUE(stats) << stats.error().message;
    EXPECT_EQ(stats->loaded, 1u);
    auto again = second.verify(envelope(token), kNow + 10);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().reason_code, "replayed");
    EXPECT_TRUE(second.verify(envelope(sign(claims("lease-s"))), kNow + 10));
}

TEST_F(ReplayFileTest, UnusableReplayFileFailsClosed) {
    // The replay file's directory is a regular file: nothing can be opened.
    std::ofstream(dir_ / "jobs") << "not a directory";
    JobVerifier verifier({hub_key_.public_key()}, options());
    EXPECT_FALSE(verifier.open_replay_store(kNow));
    expect_refused_by(verifier, envelope(sign(claims())), "replay_store_unavailable");
    // Once the problem is fixed the verifier recovers without a restart.
    std::filesystem::remove(dir_ / "jobs");
    EXPECT_TRUE(verifier.verify(envelope(sign(claims())), kNow));
}

TEST_F(ReplayFileTest, ConcurrentVerifyAcceptsEachJtiExactlyOnce) {
    JobVerifier verifier({hub_key_.public_key()}, options());
    constexpr int kThreads = 4;
    constexpr int kPerThread = 10;
    // Tokens are signed up front so the threads race on verify() only.
    std::vector<std::vector<std::string>> distinct(kThreads);
    for (int t = 0; t < kThreads; ++t) {
        for (int i = 0; i < kPerThread; ++i) {
            distinct[t].push_back(
                sign(claims("lease-" + std::to_string(t) + "-" + std::to_string(i))));
        }
    }
    const std::string shared = sign(claims("lease-shared"));
    std::atomic<int> distinct_ok{0}, shared_ok{0}, shared_replayed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; ++i) {
                if (verifier.verify(envelope(distinct[t][i]), kNow)) ++distinct_ok;
                auto s = verifier.verify(envelope(shared), kNow);
                if (s) {
                    ++shared_ok;
                } else if (s.error().reason_code == "replayed") {
                    ++shared_replayed;
                }
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(distinct_ok.load(), kThreads * kPerThread);
    EXPECT_EQ(shared_ok.load(), 1);
    EXPECT_EQ(shared_replayed.load(), kThreads * kPerThread - 1);
    auto lines = util_lines(options().replay_file);
    EXPECT_EQ(lines, static_cast<size_t>(kThreads * kPerThread + 1));
}

}  // namespace
}  // namespace sa::agent::jobs
