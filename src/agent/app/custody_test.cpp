#include "agent/app/custody.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/audit/audit_log.h"
#include "agent/audit/format.h"
#include "agent/delivery/chunk_writer.h"
#include "agent/identity/agent_key.h"
#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"
#include "common/crypto/random.h"
#include "common/jose/jws.h"

namespace sa::agent::app {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Writes the records a job leaves in the log, in the shape JobRunner writes
// them (the e2e test checks the real agent's records with the same command).
class CustodyTest : public ::testing::Test {
  protected:
    void SetUp() override {
        root_ = fs::temp_directory_path() / ("sa-custody-" + crypto::random_token(8));
        auto key = identity::AgentKey::load_or_create(state());
        ASSERT_TRUE(key) << key.error().describe();
        key_.emplace(std::move(*key));
        hub_key_.emplace(crypto::Ed25519PrivateKey::generate());
        std::ofstream(hub_pub()) << hub_key_->public_key().pem();
        audit::Options o;
        o.agent_id = "edge-1";
        o.batch_interval_ms = 1;
        o.checkpoint_every_records = 1000;
        auto opened = audit::AuditLog::open(dir(), o, *key_);
        ASSERT_TRUE(opened) << opened.error().describe();
        log_ = std::move(opened->log);
    }
    void TearDown() override {
        log_.reset();
        fs::remove_all(root_);
    }

    std::string state() const { return (root_ / "state").string(); }
    std::string dir() const { return (root_ / "state" / "audit").string(); }
    std::string pub() const { return (root_ / "state" / identity::kPublicKeyFile).string(); }
    std::string hub_pub() const { return (root_ / "hub-job-signing.pub.pem").string(); }

    std::string signed_job(const std::string& job_id) const {
        return jose::sign(*hub_key_, "job-key-1", "sa-job+jwt",
                          {{"job_id", job_id},
                           {"jti", "jti-" + job_id},
                           {"source", "crm"},
                           {"operation", "extract_metadata"}});
    }

    void rec(const std::string& type, json fields, const std::string& job) {
        auto appended = log_->append(type, std::move(fields), {job, "", ""});
        ASSERT_TRUE(appended) << appended.error().describe();
    }

    void received(const std::string& job, const std::string& jws) {
        rec("job.received",
            {{"job_id", job},
             {"lease_id", "lease-1"},
             {"kid", "job-key-1"},
             {"jws_sha256", crypto::sha256_hex(jws)},
             {"jws", jws}},
            job);
    }
    void verified(const std::string& job) {
        rec("job.verified",
            {{"job_id", job},
             {"lease_id", "lease-1"},
             {"jti", "jti-" + job},
             {"source", "crm"},
             {"operation", "extract_metadata"}},
            job);
    }
    void started(const std::string& job) {
        rec("job.started", {{"source", "crm"}, {"operation", "extract_metadata"}}, job);
    }
    std::vector<delivery::ChunkInfo> chunks(const std::string& job, int n) {
        std::vector<delivery::ChunkInfo> list;
        for (int i = 0; i < n; ++i) {
            delivery::ChunkInfo info{i, crypto::sha256_hex("chunk " + std::to_string(i)), 100 + i};
            rec("delivery.chunk", {{"seq", i}, {"sha256", info.sha256_hex}, {"size", info.size}},
                job);
            list.push_back(info);
        }
        return list;
    }
    void finished(const std::string& job, const std::vector<delivery::ChunkInfo>& list) {
        rec("job.finished",
            {{"outcome", "succeeded"},
             {"tables", 3},
             {"views", 1},
             {"columns", 9},
             {"chunks", list.size()},
             {"duration_ms", 5},
             {"chunks_root", *delivery::chunks_root(list)}},
            job);
    }
    void accepted(const std::string& job, const std::vector<delivery::ChunkInfo>& list) {
        rec("delivery.accepted",
            {{"chunks", list.size()},
             {"chunks_root", *delivery::chunks_root(list)},
             {"hub_status", "succeeded"}},
            job);
    }
    void complete_job(const std::string& job) {
        received(job, signed_job(job));
        verified(job);
        started(job);
        auto list = chunks(job, 3);
        finished(job, list);
        accepted(job, list);
    }

    int custody(const std::string& job, bool with_hub_key = true, bool as_json = false) {
        if (log_) {
            EXPECT_TRUE(log_->close());
            log_.reset();
        }
        out_.str("");
        err_.str("");
        CustodyOptions options{dir(), pub(), job, with_hub_key ? hub_pub() : "", as_json};
        return audit_custody(options, out_, err_);
    }

    fs::path root_;
    std::optional<identity::AgentKey> key_;
    std::optional<crypto::Ed25519PrivateKey> hub_key_;
    std::unique_ptr<audit::AuditLog> log_;
    std::ostringstream out_;
    std::ostringstream err_;
};

TEST_F(CustodyTest, CompleteChainChecksEveryLink) {
    rec("agent.started", {{"version", "1"}}, "");
    complete_job("job-1");
    complete_job("job-2");  // another job's records are not part of job-1's chain
    EXPECT_EQ(custody("job-1"), kExitOk) << err_.str();
    const std::string text = out_.str();
    for (const char* link : {"received", "verified", "started", "chunks", "finished", "accepted"})
        EXPECT_NE(text.find(std::string("[ok] ") + link + " "), std::string::npos) << link << "\n"
                                                                                   << text;
    EXPECT_NE(text.find("signature verified with the hub key"), std::string::npos) << text;
    EXPECT_NE(text.find("3 chunks, 303 bytes"), std::string::npos) << text;
    EXPECT_NE(text.find("audit custody: complete; every link checked; all 8 records are covered "
                        "by the signed checkpoint"),
              std::string::npos)
        << text;
    EXPECT_EQ(text.find("BROKEN"), std::string::npos);
}

TEST_F(CustodyTest, JsonOutputCarriesTheLinks) {
    complete_job("job-1");
    ASSERT_EQ(custody("job-1", true, true), kExitOk) << err_.str();
    auto doc = json::parse(out_.str());
    EXPECT_EQ(doc["status"], "complete");
    EXPECT_EQ(doc["signature_checked"], true);
    EXPECT_EQ(doc["covered_by_checkpoint"], true);
    ASSERT_EQ(doc["attempts"].size(), 1u);
    EXPECT_EQ(doc["attempts"][0]["links"].size(), 6u);
    EXPECT_EQ(doc["attempts"][0]["links"][3]["first_seq"], 3);
    EXPECT_EQ(doc["attempts"][0]["links"][3]["last_seq"], 5);
}

TEST_F(CustodyTest, WithoutTheHubKeyTheSignatureIsNotClaimed) {
    complete_job("job-1");
    EXPECT_EQ(custody("job-1", /*with_hub_key=*/false), kExitOk) << err_.str();
    EXPECT_NE(out_.str().find("signature not re-checked (pass --job-key)"), std::string::npos);
}

TEST_F(CustodyTest, RefusedJobIsAConsistentChain) {
    received("job-r", signed_job("job-r"));
    rec("job.refused", {{"reason_code", "bad_signature"}, {"message", "no pinned key"}}, "job-r");
    EXPECT_EQ(custody("job-r"), kExitOk) << err_.str();
    EXPECT_NE(out_.str().find("refused: bad_signature"), std::string::npos) << out_.str();
    EXPECT_NE(out_.str().find("audit custody: refused"), std::string::npos);
}

TEST_F(CustodyTest, JobSignedByAnotherKeyIsBroken) {
    const auto other = crypto::Ed25519PrivateKey::generate();
    const std::string forged =
        jose::sign(other, "job-key-1", "sa-job+jwt", {{"job_id", "job-1"}, {"jti", "jti-job-1"}});
    received("job-1", forged);
    verified("job-1");
    EXPECT_EQ(custody("job-1"), kExitFailure);
    EXPECT_NE(out_.str().find("[BROKEN] received "), std::string::npos) << out_.str();
    EXPECT_NE(out_.str().find("does not verify with the hub key"), std::string::npos);
    EXPECT_NE(err_.str().find("audit custody: broken"), std::string::npos);
}

TEST_F(CustodyTest, SignedJobForAnotherJobIsBroken) {
    received("job-1", signed_job("job-9"));
    EXPECT_EQ(custody("job-1"), kExitFailure);
    EXPECT_NE(out_.str().find("names job \"job-9\""), std::string::npos) << out_.str();
}

TEST_F(CustodyTest, RecordedJwsThatDoesNotMatchItsDigestIsBroken) {
    const std::string jws = signed_job("job-1");
    rec("job.received",
        {{"job_id", "job-1"}, {"jws_sha256", crypto::sha256_hex(jws + "x")}, {"jws", jws}},
        "job-1");
    EXPECT_EQ(custody("job-1"), kExitFailure);
    EXPECT_NE(out_.str().find("does not match its recorded digest"), std::string::npos);
}

TEST_F(CustodyTest, MissingChunkRecordIsBroken) {
    received("job-1", signed_job("job-1"));
    verified("job-1");
    started("job-1");
    auto list = chunks("job-1", 1);
    // chunk 1 never recorded, chunk 2 is: a gap
    rec("delivery.chunk", {{"seq", 2}, {"sha256", crypto::sha256_hex("c2")}, {"size", 5}}, "job-1");
    EXPECT_EQ(custody("job-1"), kExitFailure);
    EXPECT_NE(out_.str().find("has seq 2, expected 1"), std::string::npos) << out_.str();
}

TEST_F(CustodyTest, AcceptanceOfOtherChunksIsBroken) {
    received("job-1", signed_job("job-1"));
    verified("job-1");
    started("job-1");
    auto list = chunks("job-1", 2);
    finished("job-1", list);
    auto other = list;
    other[1].sha256_hex = crypto::sha256_hex("something else");
    accepted("job-1", other);
    EXPECT_EQ(custody("job-1"), kExitFailure);
    EXPECT_NE(out_.str().find("[BROKEN] accepted "), std::string::npos) << out_.str();
    EXPECT_NE(out_.str().find("chunk-list root differs"), std::string::npos);
}

TEST_F(CustodyTest, FinishedWithAnotherChunkCountIsBroken) {
    received("job-1", signed_job("job-1"));
    verified("job-1");
    started("job-1");
    auto list = chunks("job-1", 2);
    list.pop_back();
    finished("job-1", list);
    EXPECT_EQ(custody("job-1"), kExitFailure);
    EXPECT_NE(out_.str().find("names 1 chunks, the log holds 2"), std::string::npos) << out_.str();
}

TEST_F(CustodyTest, InterruptedAttemptThenCompleteRetry) {
    // The agent died mid-job; the lease expired and the job came back.
    received("job-1", signed_job("job-1"));
    verified("job-1");
    started("job-1");
    chunks("job-1", 1);
    complete_job("job-1");
    EXPECT_EQ(custody("job-1"), kExitOk) << out_.str() << err_.str();
    EXPECT_NE(out_.str().find("attempt 1 (interrupted)"), std::string::npos) << out_.str();
    EXPECT_NE(out_.str().find("attempt 2 (complete)"), std::string::npos);
}

TEST_F(CustodyTest, ChainThatStopsIsIncomplete) {
    received("job-1", signed_job("job-1"));
    verified("job-1");
    started("job-1");
    EXPECT_EQ(custody("job-1"), kExitFailure);
    EXPECT_NE(err_.str().find("incomplete: the chain stops after \"started\""), std::string::npos)
        << err_.str();
}

TEST_F(CustodyTest, UnknownJobIsNotFound) {
    complete_job("job-1");
    EXPECT_EQ(custody("job-404"), kExitFailure);
    EXPECT_NE(err_.str().find("not_found: no audit record names job job-404"), std::string::npos)
        << err_.str();
}

TEST_F(CustodyTest, DamagedLogBreaksCustody) {
    complete_job("job-1");
    ASSERT_TRUE(log_->close());
    log_.reset();
    // Rewrite the finished record's table count: the chain no longer matches.
    fs::path seg = fs::path(dir()) / audit::segment_name(1);
    std::ifstream in(seg);
    std::stringstream buffer;
    buffer << in.rdbuf();
    std::string text = buffer.str();
    const auto pos = text.find("\"tables\":3");
    ASSERT_NE(pos, std::string::npos);
    text.replace(pos, 10, "\"tables\":4");
    std::ofstream(seg, std::ios::trunc) << text;
    EXPECT_EQ(custody("job-1"), kExitFailure);
    EXPECT_NE(out_.str().find("the audit log is damaged: modified"), std::string::npos)
        << out_.str();
}

TEST_F(CustodyTest, UnreadableKeyIsBadInput) {
    complete_job("job-1");
    ASSERT_TRUE(log_->close());
    log_.reset();
    CustodyOptions options{dir(), (root_ / "missing.pem").string(), "job-1", "", false};
    EXPECT_EQ(audit_custody(options, out_, err_), kExitConfig);
    EXPECT_NE(err_.str().find("cannot load public key"), std::string::npos);
}

}  // namespace
}  // namespace sa::agent::app
