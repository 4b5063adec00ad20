#include "agent/jobs/job_verifier.h"

#include <utility>

#include "agent/jobs/printable.h"
#include "agent/jobs/refusal_reasons.h"
#include "common/jose/jws.h"
#include "common/protocol/protocol.h"

namespace sa::agent::jobs {

namespace {

using nlohmann::json;

// Claims are signed by the hub, but a bound keeps a compromised or buggy
// hub from making the agent hold megabytes per remembered jti.
constexpr size_t kMaxClaimLength = 1024;

std::unexpected<Refusal> refuse(const char* reason, std::string message) {
    return std::unexpected(Refusal{reason, std::move(message)});
}

bool audience_matches(const json& payload, const std::string& audience) {
    auto aud = payload.find("aud");
    if (aud == payload.end()) return false;
    if (aud->is_string()) return *aud == audience;
    if (aud->is_array()) {
        for (const auto& a : *aud) {
            if (a.is_string() && a == audience) return true;
        }
    }
    return false;
}

// Reads a required, non-empty, bounded string claim.
std::expected<std::string, Refusal> string_claim(const json& payload, const char* name) {
    auto it = payload.find(name);
    if (it == payload.end() || !it->is_string()) {
        return refuse(reason::kMalformedJob,
                      std::string("job has no string claim \"") + name + "\"");
    }
    const auto& value = it->get_ref<const std::string&>();
    if (value.empty()) {
        return refuse(reason::kMalformedJob, std::string("job claim \"") + name + "\" is empty");
    }
    if (value.size() > kMaxClaimLength) {
        return refuse(reason::kMalformedJob, std::string("job claim \"") + name + "\" is too long");
    }
    return value;
}

// A kid from an unverified header, made safe to put in a message and a log:
// bounded, and anything but printable ASCII replaced.
std::string printable(std::string_view text) {
    return jobs::printable(text, 80);
}

}  // namespace

JobVerifier::JobVerifier(std::vector<crypto::Ed25519PublicKey> pinned_keys, Options options)
    : keys_(std::move(pinned_keys)), options_(std::move(options)) {
    key_ids_.reserve(keys_.size());
    for (const auto& key : keys_) key_ids_.push_back(key.key_id());
    if (options_.replay_file.empty()) store_.emplace(options_.leeway_seconds);
}

Result<JtiStore::LoadStats> JobVerifier::open_replay_store(int64_t now) {
    std::lock_guard lock(mutex_);
    if (store_ && !store_->broken()) return store_->load_stats();
    auto store = JtiStore::open(options_.replay_file, now, options_.leeway_seconds);
    if (!store) return std::unexpected(store.error());
    store_.emplace(std::move(*store));
    return store_->load_stats();
}

std::expected<void, Refusal> JobVerifier::ensure_store(int64_t now) {
    // A store that failed a write is reopened: that repairs a cut-short line
    // and rereads what did reach the disk.
    if (store_ && !store_->broken()) return {};
    store_.reset();
    auto store = JtiStore::open(options_.replay_file, now, options_.leeway_seconds);
    if (!store) {
        return refuse(reason::kReplayStoreUnavailable,
                      "cannot use the replay file, so the job's id cannot be remembered: " +
                          store.error().message);
    }
    store_.emplace(std::move(*store));
    return {};
}

std::expected<Job, Refusal> JobVerifier::verify(const LeaseEnvelope& envelope, int64_t now) {
    std::lock_guard lock(mutex_);
    // An empty audience would make check_claims skip the aud check, letting
    // jobs meant for any app through: refuse everything instead.
    if (options_.audience.empty()) {
        return refuse(reason::kWrongAudience,
                      "the agent has no client id to match the job audience");
    }

    // The header is read unverified only to pick the key: alg first (so a
    // token with "none" is a bad signature whatever its kid), then kid.
    auto unverified = jose::decode_unverified(envelope.job_jws);
    if (!unverified) return refuse(reason::kMalformedJob, unverified.error().message);
    const json& header = unverified->header;
    if (!header.is_object()) return refuse(reason::kMalformedJob, "job header is not an object");
    auto alg = header.find("alg");
    if (alg == header.end() || !alg->is_string() || *alg != "EdDSA") {
        return refuse(reason::kBadSignature, "job is not signed with EdDSA");
    }
    auto kid_it = header.find("kid");
    const std::string kid =
        kid_it != header.end() && kid_it->is_string() ? kid_it->get<std::string>() : "";
    size_t key_index = key_ids_.size();
    for (size_t i = 0; i < key_ids_.size(); ++i) {
        if (!kid.empty() && key_ids_[i] == kid) {
            key_index = i;
            break;
        }
    }
    if (key_index == key_ids_.size()) {
        std::string pinned;
        for (const auto& id : key_ids_) pinned += (pinned.empty() ? "" : ", ") + id;
        return refuse(reason::kUnknownKey,
                      (kid.empty() ? std::string("job is signed with no key id")
                                   : "job is signed with key id " + printable(kid)) +
                          ", which this agent does not pin (pinned: " +
                          (pinned.empty() ? "none" : pinned) + ")");
    }

    // Signature with the selected key only: nothing in an unverified
    // payload is looked at.
    auto jws = jose::verify(envelope.job_jws, keys_[key_index]);
    if (!jws) {
        if (jws.error().code == ErrorCode::integrity) {
            return refuse(reason::kBadSignature, jws.error().message);
        }
        return refuse(reason::kMalformedJob, jws.error().message);
    }
    const json& claims = jws->payload;

    // typ, aud and iss are checked here, before check_claims, because it
    // reports all three as permission_denied and the refusal must say which.
    auto typ = jws->header.find("typ");
    if (typ == jws->header.end() || !typ->is_string() || *typ != protocol::kJobType) {
        return refuse(reason::kWrongType,
                      std::string("job header typ is not ") + protocol::kJobType);
    }
    if (!audience_matches(claims, options_.audience)) {
        return refuse(reason::kWrongAudience,
                      "job audience does not include this agent's client id " + options_.audience);
    }
    auto iss = claims.find("iss");
    if (iss == claims.end() || !iss->is_string() || *iss != protocol::kIssuer) {
        return refuse(reason::kMalformedJob, std::string("job issuer is not ") + protocol::kIssuer);
    }

    jose::ClaimRules rules{.issuer = protocol::kIssuer,
                           .audience = options_.audience,
                           .type = protocol::kJobType,
                           .now = now,
                           .leeway_seconds = options_.leeway_seconds,
                           .require_jti = true};
    if (auto st = jose::check_claims(*jws, rules); !st) {
        const char* code =
            st.error().code == ErrorCode::expired ? reason::kExpired : reason::kMalformedJob;
        return refuse(code, "job " + st.error().message);
    }

    Job job;
    job.lease_id = envelope.lease_id;
    job.kid = kid;
    for (auto [name, field] :
         {std::pair{"job_id", &job.job_id}, std::pair{"app", &job.app},
          std::pair{"source", &job.source}, std::pair{"operation", &job.operation},
          std::pair{"jti", &job.jti}}) {
        auto value = string_claim(claims, name);
        if (!value) return std::unexpected(value.error());
        *field = std::move(*value);
    }
    // check_claims has made sure exp is an integer.
    job.expires_at = claims.at("exp").get<int64_t>();
    // The jti becomes one line of the replay file: no whitespace or control
    // characters, or one jti could forge another's entry.
    if (!JtiStore::valid_jti(job.jti)) {
        return refuse(reason::kMalformedJob,
                      "job claim \"jti\" contains whitespace or control characters");
    }
    if (auto it = claims.find("filters"); it != claims.end()) {
        auto filters = filters_from_json(*it, "job filters");
        if (!filters) return refuse(reason::kMalformedJob, filters.error().message);
        job.filters = std::move(*filters);
    }

    if (auto it = claims.find("mode"); it != claims.end()) {
        if (!it->is_string()) {
            return refuse(reason::kMalformedJob, "job claim \"mode\" is not a string");
        }
        const auto& mode = it->get_ref<const std::string&>();
        if (mode != kModeFull && mode != kModeIncremental) {
            return refuse(reason::kMalformedJob, "job claim \"mode\" is " + printable(mode) +
                                                     ", expected \"full\" or \"incremental\"");
        }
        job.mode = mode;
    }
    if (job.mode == kModeIncremental) {
        if (job.operation != protocol::kOperationExtractMetadata) {
            return refuse(reason::kMalformedJob,
                          "job mode \"incremental\" is only for extract_metadata");
        }
        auto baseline = string_claim(claims, "baseline_job_id");
        if (!baseline) return std::unexpected(baseline.error());
        job.baseline_job_id = std::move(*baseline);
    } else if (claims.contains("baseline_job_id")) {
        return refuse(reason::kMalformedJob,
                      "job claim \"baseline_job_id\" is only for mode \"incremental\"");
    }

    if (job.job_id != envelope.job_id) {
        // Neither id is secret; naming both makes a mix-up diagnosable.
        return refuse(reason::kMalformedJob, "signed job_id " + job.job_id +
                                                 " does not match the lease's job_id " +
                                                 envelope.job_id);
    }

    if (auto ready = ensure_store(now); !ready) return std::unexpected(ready.error());
    store_->forget_expired(now);
    if (store_->contains(job.jti)) {
        return refuse(reason::kReplayed, "job jti " + job.jti + " was already accepted once");
    }
    // Only a job that passed every check is remembered, so a refused job
    // cannot poison the jti of a later, valid one. Durable before the job is
    // returned: a crash after this point must not let it run twice.
    if (auto st = store_->remember(job.jti, job.expires_at); !st) {
        return refuse(reason::kReplayStoreUnavailable,
                      "cannot remember the job's id, so it is not run: " + st.error().message);
    }
    return job;
}

}  // namespace sa::agent::jobs
