#include "hub/jobs/job_signer.h"

#include <stdexcept>

#include "common/jose/jws.h"
#include "common/protocol/protocol.h"

namespace sa::hub::jobs {

JobSigner::JobSigner(crypto::Ed25519PrivateKey key)
    : key_(std::move(key)), public_key_(key_.public_key()), key_id_(public_key_.key_id()) {}

std::string JobSigner::sign(const LeasedJob& leased) const {
    const Job& j = leased.job;
    if (!j.lease_id || !j.leased_at_ms || !j.lease_expires_at_ms) {
        // JobQueue::try_lease always sets these: reaching here is a bug.
        throw std::logic_error("JobSigner::sign: job " + j.id + " carries no lease");
    }
    int64_t iat = *j.leased_at_ms / 1000;
    nlohmann::json claims = {
        {"iss", protocol::kIssuer},
        {"aud", leased.client_id},
        {"jti", *j.lease_id},
        {"iat", iat},
        {"nbf", iat},
        {"exp", *j.lease_expires_at_ms / 1000},
        {"job_id", j.id},
        {"app", j.app},
        {"source", j.source},
        {"operation", j.operation},
    };
    return jose::sign(key_, key_id_, protocol::kJobType, claims);
}

}  // namespace sa::hub::jobs
