#include "agent/identity/agent_key.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/util/files.h"

namespace sa::agent::identity {
namespace {

std::string mode_text(unsigned mode) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", mode & 07777u);
    return buf;
}

// Keeps the published public key in step with the private key; rewritten only
// when missing or different so a read-only deployment of an existing pair works.
Status publish_public_key(const std::string& path, const crypto::Ed25519PublicKey& pub) {
    std::string pem = pub.pem();
    auto current = util::read_file(path);
    if (current && *current == pem) return {};
    return util::write_file_atomic(path, pem, 0644);
}

}  // namespace

Result<AgentKey> AgentKey::load_or_create(const std::string& state_dir) {
    if (state_dir.empty()) return fail(ErrorCode::invalid_argument, "state directory is empty");
    if (auto st = util::make_dirs(state_dir, 0700); !st) return std::unexpected(st.error());
    const std::string key_path = (std::filesystem::path(state_dir) / kPrivateKeyFile).string();
    const std::string pub_path = (std::filesystem::path(state_dir) / kPublicKeyFile).string();

    struct stat sb {};
    if (::stat(key_path.c_str(), &sb) == 0) {
        if (!S_ISREG(sb.st_mode))
            return fail(ErrorCode::invalid_argument, key_path + " is not a regular file");
        if ((sb.st_mode & 077) != 0)
            return fail(ErrorCode::permission_denied,
                        key_path + " has mode " + mode_text(sb.st_mode) +
                            "; the agent key must not be accessible by group or other "
                            "(chmod 600)");
        auto key = crypto::Ed25519PrivateKey::from_pem_file(key_path);
        if (!key)
            return fail(key.error().code,
                        "cannot load agent key " + key_path + ": " + key.error().message);
        auto pub = key->public_key();
        if (auto st = publish_public_key(pub_path, pub); !st) return std::unexpected(st.error());
        return AgentKey(std::move(*key), std::move(pub));
    }
    if (errno != ENOENT)
        return fail(ErrorCode::io, "cannot stat " + key_path + ": " + std::strerror(errno));

    auto key = crypto::Ed25519PrivateKey::generate();
    if (auto st = key.save_pem_file(key_path); !st) return std::unexpected(st.error());
    auto pub = key.public_key();
    if (auto st = publish_public_key(pub_path, pub); !st) return std::unexpected(st.error());
    return AgentKey(std::move(key), std::move(pub));
}

Result<AgentKey> AgentKey::from_pem(std::string_view private_key_pem,
                                    const std::string& state_dir) {
    if (state_dir.empty()) return fail(ErrorCode::invalid_argument, "state directory is empty");
    if (auto st = util::make_dirs(state_dir, 0700); !st) return std::unexpected(st.error());
    auto key = crypto::Ed25519PrivateKey::from_pem(private_key_pem);
    if (!key) {
        // The OpenSSL reason only: never any of the PEM's bytes.
        return fail(ErrorCode::invalid_argument,
                    "the agent key from the secret store is not an Ed25519 private key in PEM");
    }
    auto pub = key->public_key();
    const std::string pub_path = (std::filesystem::path(state_dir) / kPublicKeyFile).string();
    if (auto st = publish_public_key(pub_path, pub); !st) return std::unexpected(st.error());
    return AgentKey(std::move(*key), std::move(pub));
}

}  // namespace sa::agent::identity
