#include "agent/jobs/job_verifier.h"

#include <utility>

#include "agent/jobs/refusal_reasons.h"
#include "common/jose/jws.h"
#include "common/protocol/protocol.h"

namespace sa::agent::jobs {

namespace {

using nlohmann::json;

// Bounds the replay memory: a lease lives 600 s, so even a very busy agent
// sees far fewer live jtis than this. Past it the entry closest to expiry is
// dropped first, as it is the one whose replay window closes soonest.
constexpr size_t kMaxRememberedJtis = 100'000;

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

}  // namespace

JobVerifier::JobVerifier(crypto::Ed25519PublicKey pinned_key, Options options)
    : key_(std::move(pinned_key)), options_(std::move(options)) {}

std::expected<Job, Refusal> JobVerifier::verify(const LeaseEnvelope& envelope, int64_t now) {
    // An empty audience would make check_claims skip the aud check, letting
    // jobs meant for any app through: refuse everything instead.
    if (options_.audience.empty()) {
        return refuse(reason::kWrongAudience,
                      "the agent has no client id to match the job audience");
    }

    // Signature first: nothing in an unverified payload is looked at.
    auto jws = jose::verify(envelope.job_jws, key_);
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

    if (job.job_id != envelope.job_id) {
        // Neither id is secret; naming both makes a mix-up diagnosable.
        return refuse(reason::kMalformedJob, "signed job_id " + job.job_id +
                                                 " does not match the lease's job_id " +
                                                 envelope.job_id);
    }

    forget_expired(now);
    if (seen_jti_.contains(job.jti)) {
        return refuse(reason::kReplayed, "job jti " + job.jti + " was already accepted once");
    }
    // Only a job that passed every check is remembered, so a refused job
    // cannot poison the jti of a later, valid one.
    remember(job.jti, job.expires_at);
    return job;
}

void JobVerifier::forget_expired(int64_t now) {
    // An entry matters until the job itself would be refused as expired.
    while (!jti_by_exp_.empty() && jti_by_exp_.begin()->first + options_.leeway_seconds < now) {
        seen_jti_.erase(jti_by_exp_.begin()->second);
        jti_by_exp_.erase(jti_by_exp_.begin());
    }
}

void JobVerifier::remember(const std::string& jti, int64_t exp) {
    while (seen_jti_.size() >= kMaxRememberedJtis && !jti_by_exp_.empty()) {
        seen_jti_.erase(jti_by_exp_.begin()->second);
        jti_by_exp_.erase(jti_by_exp_.begin());
    }
    seen_jti_.emplace(jti, exp);
    jti_by_exp_.emplace(exp, jti);
}

}  // namespace sa::agent::jobs
