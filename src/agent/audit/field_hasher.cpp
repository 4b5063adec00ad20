#include "agent/audit/field_hasher.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/stat.h>

#include <filesystem>
#include <stdexcept>

#include "agent/audit/format.h"
#include "common/crypto/encoding.h"
#include "common/crypto/random.h"
#include "common/util/files.h"

namespace sa::agent::audit {
namespace {

constexpr size_t kSaltBytes = 32;

std::string salt_path(const std::string& dir) {
    return (std::filesystem::path(dir) / kSaltFile).string();
}

}  // namespace

Result<FieldHasher> FieldHasher::load(const std::string& dir) {
    const std::string path = salt_path(dir);
    auto salt = util::read_file(path);
    if (!salt) return std::unexpected(salt.error());
    if (salt->size() != kSaltBytes) {
        OPENSSL_cleanse(salt->data(), salt->size());
        return fail(ErrorCode::integrity,
                    path + " does not hold " + std::to_string(kSaltBytes) + " bytes");
    }
    return FieldHasher(std::move(*salt));
}

Result<FieldHasher> FieldHasher::load_or_create(const std::string& dir) {
    if (auto st = util::make_dirs(dir, 0700); !st) return std::unexpected(st.error());
    auto loaded = load(dir);
    if (loaded || loaded.error().code != ErrorCode::not_found) return loaded;
    std::string salt = crypto::random_bytes(kSaltBytes);
    auto st = util::write_file_atomic(salt_path(dir), salt, 0600);
    if (!st) {
        OPENSSL_cleanse(salt.data(), salt.size());
        return std::unexpected(st.error());
    }
    return FieldHasher(std::move(salt));
}

FieldHasher::~FieldHasher() {
    if (!salt_.empty()) OPENSSL_cleanse(salt_.data(), salt_.size());
}

std::string FieldHasher::hash(std::string_view value) const {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), salt_.data(), static_cast<int>(salt_.size()),
             reinterpret_cast<const unsigned char*>(value.data()), value.size(), out,
             &len) == nullptr)
        throw std::runtime_error("HMAC-SHA256 failed");  // broken OpenSSL: an invariant
    return std::string(kHmacPrefix) +
           crypto::base64_encode(std::string_view(reinterpret_cast<char*>(out), len));
}

}  // namespace sa::agent::audit
