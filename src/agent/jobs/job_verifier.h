#pragma once
// Verifies jobs leased from the hub before anything runs (docs/protocol.md §2).
// SECURITY NOTE: the only trust anchor is the job-signing public key the
// customer pinned in the agent config; nothing the hub sends can replace it.
#include <cstdint>
#include <expected>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>

#include "common/crypto/ed25519.h"

namespace sa::agent::jobs {

// What the lease response carried. Only lease_id/job_id are used unverified,
// and only to address a refusal report.
struct LeaseEnvelope {
    std::string lease_id;
    std::string job_id;
    int64_t lease_expires_at = 0;
    std::string job_jws;
};

// A job whose signature and claims have been verified.
struct Job {
    std::string job_id;
    std::string lease_id;
    std::string jti;
    std::string app;
    std::string source;
    std::string operation;
    int64_t expires_at = 0;
};

// Why a job was not run; reason_code is one of docs/protocol.md §5
// (spelled in agent/jobs/refusal_reasons.h). message is for humans and never
// contains the token.
struct Refusal {
    std::string reason_code;
    std::string message;
};

class JobVerifier final {
  public:
    struct Options {
        std::string audience;  // the agent's client id
        int64_t leeway_seconds = 60;
    };

    JobVerifier(crypto::Ed25519PublicKey pinned_key, Options options);

    // Checks signature, typ, iss, aud, exp/nbf, required claims, that the
    // signed job_id equals the envelope's, and that jti was not seen before
    // (remembered until its exp). Not thread-safe: one verifier per loop.
    // Reasons: bad_signature (signature or algorithm), wrong_type,
    // wrong_audience, expired (exp or nbf/iat beyond the leeway), replayed,
    // malformed_job (anything else, including a wrong iss). The operation and
    // source are not checked here: the caller checks them against its config.
    std::expected<Job, Refusal> verify(const LeaseEnvelope& envelope, int64_t now);

  private:
    void forget_expired(int64_t now);
    void remember(const std::string& jti, int64_t exp);

    crypto::Ed25519PublicKey key_;
    Options options_;
    std::map<std::string, int64_t> seen_jti_;               // jti -> exp, pruned on each call
    std::set<std::pair<int64_t, std::string>> jti_by_exp_;  // same entries, oldest exp first
};

}  // namespace sa::agent::jobs
