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

// Checks that the certificate in cert_pem chains to the CA in ca_pem
// (X509_verify_cert with the serverAuth purpose). For tests and diagnostics.
Status verify_server_certificate(const std::string& ca_pem, const std::string& cert_pem);

}  // namespace sa::hub::pki
