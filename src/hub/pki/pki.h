#pragma once
// The hub's key material, created on first start and reused afterwards:
//   - a local CA (ECDSA P-256, self-signed, CA:TRUE, ~10 years) that agents
//     trust through `hub.ca_file`;
//   - a TLS server certificate signed by it (P-256, ~1 year, serverAuth,
//     SAN DNS:localhost, IP:127.0.0.1, IP:::1 plus extra names);
//   - the Ed25519 token-signing key (access tokens) and job-signing key (jobs;
//     its public half is what customers pin in the agent config).
// Private keys are written atomically with mode 0600.
#include <string>
#include <vector>

#include "common/crypto/ed25519.h"
#include "common/result.h"
#include "hub/store/layout.h"

namespace sa::hub::pki {

inline constexpr int kCaValidityDays = 3650;
inline constexpr int kServerValidityDays = 365;
// A server certificate closer than this to expiry is re-issued at start.
inline constexpr int kServerRenewDays = 30;

struct Material {
    store::Layout layout;
    crypto::Ed25519PrivateKey token_key;
    crypto::Ed25519PrivateKey job_key;
    std::vector<std::string> created;  // files written by this call, for the log
};

// Creates dir (0700) and whatever of the material is missing; loads the
// rest. The server certificate is re-issued when it is missing, expires
// soon, or does not cover every name in extra_sans (DNS names or IP
// addresses). Errors: io for file problems, integrity when a half of a key
// pair is missing or the files do not parse.
Result<Material> ensure(const std::string& dir, const std::vector<std::string>& extra_sans);

struct JobKeyRotation {
    std::string previous_kid;
    std::string new_kid;
    std::string public_key_path;           // job-signing.pub.pem, now the new key
    std::string previous_public_key_path;  // job-signing.previous.pub.pem
};

struct PreparedJobKey {
    std::string kid;
    std::string public_key_path;  // job-signing.next.pub.pem: what customers pin now
};

// Step 1 of a rotation: creates the next job-signing key
// (job-signing.next.key, 0600, and job-signing.next.pub.pem) without using
// it, so customers can pin it first. Idempotent: an existing next key is
// kept and returned. Errors: not_found when dir has no job-signing key yet,
// integrity when the next key does not parse, io.
Result<PreparedJobKey> prepare_job_key(const std::string& dir);

// Step 2: makes the prepared next key (or, when none was prepared, a new
// one) the job-signing key. The old public key is kept as
// job-signing.previous.pub.pem (replacing an older one), then the new
// private key (0600) and public key are written atomically and the next-key
// files removed. A running `serve` signs with the new key from its next
// lease (JobSigner::watching). Agents must pin the new public key BEFORE
// this runs (docs/protocol.md section 7). Errors: not_found when dir has no
// job-signing key yet, integrity when a key does not parse, io.
Result<JobKeyRotation> rotate_job_key(const std::string& dir);

// Checks that the certificate in cert_pem chains to the CA in ca_pem
// (X509_verify_cert with the serverAuth purpose). For tests and diagnostics.
Status verify_server_certificate(const std::string& ca_pem, const std::string& cert_pem);

}  // namespace sa::hub::pki
