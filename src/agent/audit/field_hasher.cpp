#include "agent/audit/field_hasher.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "agent/audit/format.h"
#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"
#include "common/crypto/random.h"
#include "common/util/files.h"

namespace sa::agent::audit {
namespace {

constexpr size_t kSaltBytes = 32;
constexpr const char* kFileSource = "file";
constexpr const char* kSecretSourcePrefix = "secret-store:";
constexpr const char* kSaltCheckLabel = "secure-agent audit salt check v1";

std::string salt_path(const std::string& dir) {
    return (std::filesystem::path(dir) / kSaltFile).string();
}

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// How a source reads in an error message.
std::string describe_source(const std::string& source) {
    if (source == kFileSource) return "the salt file hmac.salt";
    return "the secret-store reference with fingerprint " + source.substr(13, 16);
}

}  // namespace

Result<FieldHasher> FieldHasher::load(const std::string& dir) {
    const std::string path = salt_path(dir);
    auto salt = util::read_file(path);
    if (!salt) return std::unexpected(salt.error());
    if (salt->size() != kSaltBytes) {
        secrets::wipe(*salt);
        return fail(ErrorCode::integrity,
                    path + " does not hold " + std::to_string(kSaltBytes) + " bytes");
    }
    return FieldHasher(secrets::SecretValue::from(std::move(*salt)), kFileSource);
}

Result<FieldHasher> FieldHasher::load_or_create(const std::string& dir) {
    if (auto st = util::make_dirs(dir, 0700); !st) return std::unexpected(st.error());
    auto loaded = load(dir);
    if (loaded || loaded.error().code != ErrorCode::not_found) return loaded;
    std::string salt = crypto::random_bytes(kSaltBytes);
    if (auto st = util::write_file_atomic(salt_path(dir), salt, 0600); !st) {
        secrets::wipe(salt);
        return std::unexpected(st.error());
    }
    return FieldHasher(secrets::SecretValue::from(std::move(salt)), kFileSource);
}

Result<FieldHasher> FieldHasher::from_secret(const secrets::SecretValue& text,
                                             std::string_view reference) {
    std::string_view body = text.reveal();
    while (!body.empty() && is_space(body.front())) body.remove_prefix(1);
    while (!body.empty() && is_space(body.back())) body.remove_suffix(1);
    const std::string where = "audit.hmac_salt " + std::string(reference) + ": ";
    auto decoded = crypto::base64_decode(body);
    if (!decoded) {
        return fail(ErrorCode::invalid_argument,
                    where +
                        "the secret is not standard base64 text (e.g. the output of "
                        "`openssl rand -base64 32`)");
    }
    auto salt = secrets::SecretValue::from(std::move(*decoded));  // wipes *decoded
    if (salt.size() < kMinSecretSaltBytes) {
        return fail(ErrorCode::invalid_argument, where + "the salt must decode to at least " +
                                                     std::to_string(kMinSecretSaltBytes) +
                                                     " bytes (it has " +
                                                     std::to_string(salt.size()) + ")");
    }
    const std::string_view bytes = salt.reveal();
    if (std::all_of(bytes.begin(), bytes.end(), [&](char c) { return c == bytes.front(); })) {
        return fail(ErrorCode::invalid_argument,
                    where + "the salt has no entropy (every byte is the same)");
    }
    return FieldHasher(std::move(salt),
                       kSecretSourcePrefix + crypto::sha256_hex(std::string(reference)));
}

std::string FieldHasher::hash(std::string_view value) const {
    const std::string_view salt = salt_.reveal();
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), salt.data(), static_cast<int>(salt.size()),
             reinterpret_cast<const unsigned char*>(value.data()), value.size(), out,
             &len) == nullptr)
        throw std::runtime_error("HMAC-SHA256 failed");  // broken OpenSSL: an invariant
    return std::string(kHmacPrefix) +
           crypto::base64_encode(std::string_view(reinterpret_cast<char*>(out), len));
}

Status bind_salt_source(const std::string& dir, const FieldHasher& hasher, bool record) {
    namespace fs = std::filesystem;
    const std::string path = (fs::path(dir) / kSaltSourceFile).string();
    const std::string check = hasher.hash(kSaltCheckLabel);
    const std::string restart_hint =
        "; HMAC values made with different salts cannot be compared, so the agent will not mix "
        "them in one audit directory. Restore the previous salt source, or start a new audit "
        "directory (audit.dir)";
    auto text = util::read_file(path);
    if (text) {
        nlohmann::json doc = nlohmann::json::parse(*text, nullptr, false);
        if (!doc.is_object() || !doc.contains("source") || !doc["source"].is_string() ||
            !doc.contains("salt_check") || !doc["salt_check"].is_string()) {
            return fail(ErrorCode::integrity, path + " is not a salt source record");
        }
        const std::string recorded = doc["source"].get<std::string>();
        if (recorded != hasher.source()) {
            return fail(ErrorCode::conflict, "audit directory " + dir + " was written with " +
                                                 describe_source(recorded) +
                                                 ", but this configuration gives " +
                                                 describe_source(hasher.source()) + restart_hint);
        }
        if (doc["salt_check"].get<std::string>() != check) {
            return fail(ErrorCode::conflict, "audit directory " + dir + ": " +
                                                 describe_source(recorded) +
                                                 " now holds a different salt than the one "
                                                 "this directory was written with" +
                                                 restart_hint);
        }
        return {};
    }
    if (text.error().code != ErrorCode::not_found) return std::unexpected(text.error());
    if (hasher.source() != kFileSource) {
        std::error_code ec;
        auto segments = list_segments(dir);
        const bool written = fs::exists(salt_path(dir), ec) || (segments && !segments->empty());
        if (written) {
            return fail(ErrorCode::conflict, "audit directory " + dir + " was written with " +
                                                 describe_source(kFileSource) +
                                                 ", but this configuration gives " +
                                                 describe_source(hasher.source()) + restart_hint);
        }
    }
    if (!record) return {};
    const nlohmann::json doc = {{"source", hasher.source()}, {"salt_check", check}};
    return util::write_file_atomic(path, doc.dump() + "\n", 0600);
}

}  // namespace sa::agent::audit
