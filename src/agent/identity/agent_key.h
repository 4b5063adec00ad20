#pragma once
// AgentKey: the agent's own Ed25519 identity key, used to sign audit
// checkpoints. The private key lives in STATE/agent.key (PKCS#8 PEM, 0600) and
// is created on first start; its public half is published as
// STATE/agent.pub.pem (0644) for verifiers. The private key bytes are never
// exposed: callers can only ask for signatures.
//
// Alternatively the key comes from the customer's secret store (config
// `agent.key`): from_pem() takes the PEM at the point of use and keeps only
// the parsed key; nothing is written to the state directory except the
// public half. Callers only depend on sign()/public_key()/key_id().
#include <string>
#include <string_view>

#include "common/crypto/ed25519.h"
#include "common/result.h"

namespace sa::agent::identity {

inline constexpr const char* kPrivateKeyFile = "agent.key";
inline constexpr const char* kPublicKeyFile = "agent.pub.pem";

class AgentKey final {
  public:
    // Loads STATE/agent.key, or generates it when absent (creating STATE with
    // mode 0700 if needed). Errors: permission_denied when the key file is
    // readable or writable by group/other (the message names file and mode),
    // invalid_argument when it is not an Ed25519 PEM key, io otherwise.
    static Result<AgentKey> load_or_create(const std::string& state_dir);

    // Uses a PKCS#8 PEM Ed25519 private key held elsewhere (the secret store)
    // and publishes STATE/agent.pub.pem. A STATE/agent.key left from earlier
    // is not used. Errors: invalid_argument when the PEM is not an Ed25519
    // private key (the message never quotes it), io.
    static Result<AgentKey> from_pem(std::string_view private_key_pem,
                                     const std::string& state_dir);

    AgentKey(AgentKey&&) = default;
    AgentKey& operator=(AgentKey&&) = default;
    AgentKey(const AgentKey&) = delete;
    AgentKey& operator=(const AgentKey&) = delete;

    // 64-byte Ed25519 signature over message. Thread-safe.
    std::string sign(std::string_view message) const { return key_.sign(message); }
    const crypto::Ed25519PublicKey& public_key() const { return public_key_; }
    std::string key_id() const { return public_key_.key_id(); }

  private:
    AgentKey(crypto::Ed25519PrivateKey key, crypto::Ed25519PublicKey pub)
        : key_(std::move(key)), public_key_(std::move(pub)) {}

    crypto::Ed25519PrivateKey key_;
    crypto::Ed25519PublicKey public_key_;
};

}  // namespace sa::agent::identity
