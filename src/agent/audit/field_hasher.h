#pragma once
// FieldHasher: turns a sensitive value (user name, source host name, secret
// path) into "hmac-sha256:" + base64(HMAC-SHA256(salt, value)), so a known
// value can be searched for in the log (`secure-agent audit hash VALUE`) but
// cannot be read from it. The salt comes from one of two sources:
//
// - file (default): 32 random bytes in DIR/hmac.salt (0600), one per audit
//   directory, created on first start;
// - a secret store (config `audit.hmac_salt: {secret: "STORE/PATH#KEY"}`):
//   the secret is the salt as standard base64 text (RFC 4648 §4, with
//   padding) of at least 32 bytes, e.g. `openssl rand -base64 32`;
//   surrounding whitespace is ignored and the decoded bytes are the HMAC
//   key. Several agents (or a reinstalled one) sharing the reference produce
//   comparable HMACs, and the salt never touches the agent's disk.
//
// Either way the salt is held in a SecretValue (locked, wiped on
// destruction) for the hasher's lifetime.
//
// Salt source binding: an audit directory records which source its HMACs
// were made with in DIR/salt-source.json (kSaltSourceFile):
//   {"salt_check":"hmac-sha256:...","source":"file" | "secret-store:<sha256 hex of the reference>"}
// salt_check is hash("secure-agent audit salt check v1"): it proves the same
// salt without revealing it (it is no more than any other hmac() value in the
// log). bind_salt_source() refuses (conflict) to use a directory with a
// different source or salt, so HMACs are never silently mixed; the operator
// keeps the old source or starts a new audit directory.
#include <string>
#include <string_view>

#include "agent/secrets/secret_value.h"
#include "common/result.h"

namespace sa::agent::audit {

inline constexpr const char* kHmacPrefix = "hmac-sha256:";
inline constexpr size_t kMinSecretSaltBytes = 32;

class FieldHasher final {
  public:
    // Reads DIR/hmac.salt, creating it (and DIR, mode 0700) when absent.
    static Result<FieldHasher> load_or_create(const std::string& dir);
    // Reads DIR/hmac.salt; not_found when absent (the CLI never creates one).
    static Result<FieldHasher> load(const std::string& dir);
    // The salt from a secret store (rules above). reference is the
    // "STORE/PATH#KEY" text; only its SHA-256 is kept (source()). Errors:
    // invalid_argument naming the reference, never quoting the value.
    static Result<FieldHasher> from_secret(const secrets::SecretValue& text,
                                           std::string_view reference);

    FieldHasher(FieldHasher&&) noexcept = default;
    FieldHasher& operator=(FieldHasher&&) = delete;
    FieldHasher(const FieldHasher&) = delete;
    FieldHasher& operator=(const FieldHasher&) = delete;
    ~FieldHasher() = default;  // the SecretValue wipes the salt

    std::string hash(std::string_view value) const;

    // "file" or "secret-store:<sha256 hex of the reference>".
    const std::string& source() const { return source_; }

  private:
    FieldHasher(secrets::SecretValue salt, std::string source)
        : salt_(std::move(salt)), source_(std::move(source)) {}
    secrets::SecretValue salt_;
    std::string source_;
};

// Checks hasher against DIR/salt-source.json (rules above). When the file is
// absent: a directory that already has DIR/hmac.salt or record segments was
// written with the file salt (before sources were recorded), so only a file
// hasher fits it; otherwise the directory is new. With record, a missing
// file is then written (0600, atomically). Errors: conflict (another source
// or salt; the message says what to do), integrity (unreadable file), io.
Status bind_salt_source(const std::string& dir, const FieldHasher& hasher, bool record);

}  // namespace sa::agent::audit
