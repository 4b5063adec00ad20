#pragma once
// FileSecretStore: secrets as files under one directory, the layout of a
// Kubernetes mounted Secret (DIR/NAME -> ..data/NAME -> ..TIMESTAMP/NAME,
// where the kubelet rotates by swapping the ..data symlink atomically).
//
// read(ref) reads DIR/ref.path on every call (no caching, so a rotated value
// is picked up on the next read), trims ONE trailing newline, and, when
// ref.key is set, parses the content as JSON and returns that (dotted) string
// field.
// SECURITY NOTE: ref.path must be relative and free of ".." components, and
// the fully resolved file must still lie inside the store directory, so a
// reference (or a planted symlink) cannot read arbitrary files.
#include <string>

#include "agent/secrets/secret_store.h"

namespace sa::agent::secrets {

class FileSecretStore final : public SecretStore {
  public:
    // Secrets larger than this are refused (a secret is never megabytes).
    static constexpr size_t kMaxSecretBytes = 1024 * 1024;

    // name is used in error messages; dir is the store directory. Does no I/O.
    FileSecretStore(std::string name, std::string dir);

    Result<SecretValue> read(const SecretRef& ref) override;

  private:
    std::string name_;
    std::string dir_;
};

}  // namespace sa::agent::secrets
