#pragma once
// Signs a leased job as a JWS (EdDSA) with the hub's job-signing key. The
// agent checks it against the public key its operator pinned; the claims are
// listed in docs/protocol.md section 2 ("The signed job").
//
// Thread safety: const methods are safe from any thread.
#include <string>

#include "common/crypto/ed25519.h"
#include "hub/jobs/job_queue.h"

namespace sa::hub::jobs {

class JobSigner final {
  public:
    explicit JobSigner(crypto::Ed25519PrivateKey key);

    // typ secure-agent-job+jwt; iss agent-hub; aud = the app's client id;
    // jti = lease id; iat = nbf = lease time; exp = lease expiry; job_id,
    // app, source, operation. Requires a job with lease fields set.
    std::string sign(const LeasedJob& leased) const;

    const crypto::Ed25519PublicKey& public_key() const { return public_key_; }
    const std::string& key_id() const { return key_id_; }

  private:
    crypto::Ed25519PrivateKey key_;
    crypto::Ed25519PublicKey public_key_;
    std::string key_id_;
};

}  // namespace sa::hub::jobs
