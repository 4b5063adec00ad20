#pragma once
// The public key an app authenticates with under private_key_jwt (RFC 7523
// sections 2.2 and 3): the agent signs each client assertion with the private
// half; the hub keeps only this public half.
//
// Contract:
// - from_pem accepts exactly one PEM SubjectPublicKeyInfo ("PUBLIC KEY") of
//   type Ed25519, EC P-256 or RSA with a modulus of at least 2048 bits.
//   Anything else (a private key, a certificate, another curve, a short RSA
//   key, garbage) is invalid_argument with a message saying why.
// - The algorithm follows the key type (RFC 7518 section 3, RFC 8037):
//   Ed25519 -> EdDSA, P-256 -> ES256, RSA -> RS256. verify() refuses any other
//   algorithm name for the key, so "none", HS256 (a MAC keyed with the public
//   key) or RS256 with an EC key never verify.
// - thumbprint() is the RFC 7638 JWK thumbprint (SHA-256, base64url): a
//   stable, public name of the key, used as its kid.
//
// Thread safety: const methods are safe from any thread.
#include <memory>
#include <string>
#include <string_view>

#include "common/crypto/openssl_ptr.h"
#include "common/result.h"

namespace sa::hub::identity {

class ClientPublicKey final {
  public:
    static Result<ClientPublicKey> from_pem(std::string_view pem);

    // "EdDSA" | "ES256" | "RS256".
    const std::string& algorithm() const { return algorithm_; }
    // "Ed25519" | "EC P-256" | "RSA 3072" (bits): for operator output.
    const std::string& description() const { return description_; }
    const std::string& thumbprint() const { return thumbprint_; }
    // The key re-encoded as PEM SubjectPublicKeyInfo (what the store keeps).
    const std::string& pem() const { return pem_; }

    // Checks a JWS signature (RFC 7515) over signing_input, the raw
    // (base64url-decoded) signature: ES256 is r||s, 64 bytes (RFC 7518
    // section 3.4). False for any other algorithm than algorithm().
    bool verify(std::string_view algorithm, std::string_view signing_input,
                std::string_view signature) const;

  private:
    ClientPublicKey() = default;
    // Shared: the key is immutable after parsing, and copies are cheap.
    std::shared_ptr<EVP_PKEY> key_;
    std::string algorithm_;
    std::string description_;
    std::string thumbprint_;
    std::string pem_;
};

}  // namespace sa::hub::identity
