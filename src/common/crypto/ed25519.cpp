#include "common/crypto/ed25519.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"
#include "common/util/files.h"

namespace sa::crypto {

std::string openssl_error() {
    unsigned long code = ERR_get_error();
    ERR_clear_error();
    if (code == 0) return "unknown OpenSSL error";
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    return buf;
}

namespace {

Result<EvpPkeyPtr> read_pem(std::string_view pem, bool is_private) {
    BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    if (!bio) return fail(ErrorCode::internal, "BIO_new_mem_buf failed");
    EVP_PKEY* raw = is_private ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr)
                               : PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
    if (raw == nullptr) {
        return fail(ErrorCode::invalid_argument, std::string("not a PEM ") +
                                                     (is_private ? "private" : "public") +
                                                     " key (" + openssl_error() + ")");
    }
    EvpPkeyPtr key(raw);
    if (EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519) {
        return fail(ErrorCode::invalid_argument, "key is not an Ed25519 key");
    }
    return key;
}

}  // namespace

Result<Ed25519PublicKey> Ed25519PublicKey::from_pem(std::string_view pem) {
    auto key = read_pem(pem, false);
    if (!key) return std::unexpected(key.error());
    return Ed25519PublicKey(std::move(*key));
}

Result<Ed25519PublicKey> Ed25519PublicKey::from_pem_file(const std::string& path) {
    auto text = util::read_file(path);
    if (!text) return std::unexpected(text.error());
    auto key = from_pem(*text);
    if (!key) return fail(key.error().code, path + ": " + key.error().message);
    return key;
}

Result<Ed25519PublicKey> Ed25519PublicKey::from_raw(std::string_view raw32) {
    if (raw32.size() != 32)
        return fail(ErrorCode::invalid_argument, "Ed25519 public key must be 32 bytes");
    EVP_PKEY* k = EVP_PKEY_new_raw_public_key(
        EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw32.data()), 32);
    if (k == nullptr)
        return fail(ErrorCode::invalid_argument, "bad Ed25519 public key: " + openssl_error());
    return Ed25519PublicKey(EvpPkeyPtr(k));
}

bool Ed25519PublicKey::verify(std::string_view message, std::string_view signature) const {
    if (signature.size() != 64) return false;
    EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1)
        return false;
    int rc = EVP_DigestVerify(
        ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
        reinterpret_cast<const unsigned char*>(message.data()), message.size());
    ERR_clear_error();
    return rc == 1;
}

std::string Ed25519PublicKey::raw() const {
    std::string out(32, '\0');
    size_t len = out.size();
    EVP_PKEY_get_raw_public_key(key_.get(), reinterpret_cast<unsigned char*>(out.data()), &len);
    out.resize(len);
    return out;
}

std::string Ed25519PublicKey::pem() const {
    BioPtr bio(BIO_new(BIO_s_mem()));
    PEM_write_bio_PUBKEY(bio.get(), key_.get());
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<size_t>(len));
}

std::string Ed25519PublicKey::key_id() const {
    return base64url_encode(sha256(raw()).substr(0, 12));
}

Ed25519PrivateKey Ed25519PrivateKey::generate() {
    EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    if (k == nullptr) throw std::runtime_error("Ed25519 key generation failed: " + openssl_error());
    return Ed25519PrivateKey(EvpPkeyPtr(k));
}

Result<Ed25519PrivateKey> Ed25519PrivateKey::from_pem(std::string_view pem) {
    auto key = read_pem(pem, true);
    if (!key) return std::unexpected(key.error());
    return Ed25519PrivateKey(std::move(*key));
}

Result<Ed25519PrivateKey> Ed25519PrivateKey::from_pem_file(const std::string& path) {
    auto text = util::read_file(path);
    if (!text) return std::unexpected(text.error());
    auto key = from_pem(*text);
    if (!key) return fail(key.error().code, path + ": " + key.error().message);
    return key;
}

Result<Ed25519PrivateKey> Ed25519PrivateKey::from_raw(std::string_view seed32) {
    if (seed32.size() != 32)
        return fail(ErrorCode::invalid_argument, "Ed25519 private key must be 32 bytes");
    EVP_PKEY* k = EVP_PKEY_new_raw_private_key(
        EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(seed32.data()), 32);
    if (k == nullptr)
        return fail(ErrorCode::invalid_argument, "bad Ed25519 private key: " + openssl_error());
    return Ed25519PrivateKey(EvpPkeyPtr(k));
}

std::string Ed25519PrivateKey::sign(std::string_view message) const {
    EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    std::string sig(64, '\0');
    size_t len = sig.size();
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1 ||
        EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(message.data()),
                       message.size()) != 1) {
        throw std::runtime_error("Ed25519 signing failed: " + openssl_error());
    }
    sig.resize(len);
    return sig;
}

Ed25519PublicKey Ed25519PrivateKey::public_key() const {
    std::string raw(32, '\0');
    size_t len = raw.size();
    EVP_PKEY_get_raw_public_key(key_.get(), reinterpret_cast<unsigned char*>(raw.data()), &len);
    auto pub = Ed25519PublicKey::from_raw(raw);
    if (!pub) throw std::runtime_error("deriving Ed25519 public key failed");
    return *pub;
}

Status Ed25519PrivateKey::save_pem_file(const std::string& path) const {
    BioPtr bio(BIO_new(BIO_s_mem()));
    if (PEM_write_bio_PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0, nullptr, nullptr) !=
        1) {
        return fail(ErrorCode::internal, "PEM_write_bio_PrivateKey failed: " + openssl_error());
    }
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);
    std::string pem(data, static_cast<size_t>(len));
    auto st = util::write_file_atomic(path, pem, 0600);
    OPENSSL_cleanse(pem.data(), pem.size());
    return st;
}

}  // namespace sa::crypto
