#pragma once
// Ed25519 keys (RFC 8032) for signing jobs, tokens, manifests and checkpoints.
// Private keys are stored as PKCS#8 PEM with mode 0600; public keys as SPKI PEM.
#include <string>
#include <string_view>

#include "common/crypto/openssl_ptr.h"
#include "common/result.h"

namespace sa::crypto {

class Ed25519PublicKey final {
  public:
    static Result<Ed25519PublicKey> from_pem(std::string_view pem);
    static Result<Ed25519PublicKey> from_pem_file(const std::string& path);
    static Result<Ed25519PublicKey> from_raw(std::string_view raw32);

    bool verify(std::string_view message, std::string_view signature) const;
    std::string raw() const;  // 32 bytes
    std::string pem() const;
    // Stable short identifier: base64url of the first 12 bytes of SHA-256(raw).
    std::string key_id() const;

  private:
    explicit Ed25519PublicKey(EvpPkeyPtr key) : key_(std::move(key)) {}
    std::shared_ptr<EVP_PKEY> key_;  // immutable after construction; shared copies are safe
};

class Ed25519PrivateKey final {
  public:
    static Ed25519PrivateKey generate();
    static Result<Ed25519PrivateKey> from_pem(std::string_view pem);
    static Result<Ed25519PrivateKey> from_pem_file(const std::string& path);
    static Result<Ed25519PrivateKey> from_raw(std::string_view seed32);

    Ed25519PrivateKey(Ed25519PrivateKey&&) = default;
    Ed25519PrivateKey& operator=(Ed25519PrivateKey&&) = default;
    Ed25519PrivateKey(const Ed25519PrivateKey&) = delete;
    Ed25519PrivateKey& operator=(const Ed25519PrivateKey&) = delete;

    std::string sign(std::string_view message) const;  // 64 bytes
    Ed25519PublicKey public_key() const;
    // Writes PKCS#8 PEM to path with mode 0600 (created exclusively when exclusive).
    Status save_pem_file(const std::string& path) const;

    EVP_PKEY* native() const { return key_.get(); }

  private:
    explicit Ed25519PrivateKey(EvpPkeyPtr key) : key_(std::move(key)) {}
    EvpPkeyPtr key_;
};

}  // namespace sa::crypto
