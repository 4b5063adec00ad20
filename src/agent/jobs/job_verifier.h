#pragma once
// Verifies jobs leased from the hub before anything runs (docs/protocol.md §2).
// SECURITY NOTE: the only trust anchors are the job-signing public keys the
// customer pinned in the agent config; nothing the hub sends can replace or
// add one. The JWS header "kid" only selects among the pinned keys.
#include <cstdint>
#include <expected>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "agent/jobs/filters.h"
#include "agent/jobs/jti_store.h"
#include "common/crypto/ed25519.h"
#include "common/result.h"

namespace sa::agent::jobs {

// What the lease response carried. Only lease_id/job_id are used unverified,
// and only to address a refusal report.
struct LeaseEnvelope {
    std::string lease_id;
    std::string job_id;
    int64_t lease_expires_at = 0;
    std::string job_jws;
};

inline constexpr const char* kModeFull = "full";
inline constexpr const char* kModeIncremental = "incremental";

// A job whose signature and claims have been verified.
struct Job {
    std::string job_id;
    std::string lease_id;
    std::string jti;
    std::string app;
    std::string source;
    std::string operation;
    int64_t expires_at = 0;
    std::string kid;        // the pinned key that verified the signature
    ObjectFilters filters;  // the optional claim "filters"; empty: the job narrows nothing
    // The optional claim "mode" (extract_metadata only): kModeFull (also when
    // absent: hubs before incremental runs) or kModeIncremental, which comes
    // with baseline_job_id, the job whose completion last changed the hub's
    // catalog of (app, source). Incremental is a request: the supervisor
    // still runs a full extraction when its own state does not match.
    std::string mode = kModeFull;
    std::string baseline_job_id;  // non-empty exactly when mode is incremental
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
        // Clock skew tolerated on exp/nbf/iat. The config checks it is
        // 0..300; the verifier takes it as given.
        int64_t leeway_seconds = 60;
        // Where accepted jtis are remembered across restarts (see
        // jti_store.h); empty: in memory only.
        std::string replay_file;
    };

    // pinned_keys: the job-signing keys the customer pinned (at least one;
    // several while the hub rotates its key). With none, every job is
    // refused as unknown_key. Does no I/O: the replay file is opened by
    // open_replay_store() or on the first job that passes every other check.
    JobVerifier(std::vector<crypto::Ed25519PublicKey> pinned_keys, Options options);

    // Opens the replay file now (a no-op when open or memory only), so that
    // the supervisor can report a problem at startup and log what was loaded.
    // Errors: those of JtiStore::open.
    Result<JtiStore::LoadStats> open_replay_store(int64_t now);

    // Checks, in this order: the header alg (bad_signature), the header kid
    // names a pinned key (unknown_key), the signature with that key only
    // (bad_signature), typ (wrong_type), aud (wrong_audience), iss
    // (malformed_job), exp/nbf/iat within the leeway (expired), the required
    // claims, the optional "filters" claim, the optional "mode" claim ("full"
    // anywhere, "incremental" only for extract_metadata and then with a
    // "baseline_job_id", which no other mode may carry) and that the signed job_id equals
    // the envelope's (malformed_job), and that jti was not accepted before
    // (replayed), then remembers jti durably before returning the job
    // (replay_store_unavailable if it cannot: the job is not run).
    // Thread-safe: calls are serialised. The operation and source are not
    // checked here: the caller checks them against its config and policy.
    std::expected<Job, Refusal> verify(const LeaseEnvelope& envelope, int64_t now);

  private:
    std::expected<void, Refusal> ensure_store(int64_t now);

    std::vector<crypto::Ed25519PublicKey> keys_;
    std::vector<std::string> key_ids_;  // key_ids_[i] == keys_[i].key_id()
    Options options_;
    std::mutex mutex_;
    std::optional<JtiStore> store_;  // guarded by mutex_; empty until opened
};

}  // namespace sa::agent::jobs
