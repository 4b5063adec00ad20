#include "hub/pki/pki.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "common/crypto/openssl_ptr.h"
#include "common/crypto/random.h"
#include "common/util/files.h"

namespace sa::hub::pki {
namespace {

using crypto::BioPtr;
using crypto::EvpPkeyCtxPtr;
using crypto::EvpPkeyPtr;
using crypto::openssl_error;
using crypto::X509Ptr;

struct X509NameFree {
    void operator()(X509_NAME* p) const { X509_NAME_free(p); }
};
struct X509ExtFree {
    void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
};
struct X509StoreFree {
    void operator()(X509_STORE* p) const { X509_STORE_free(p); }
};
struct X509StoreCtxFree {
    void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
};
struct BnFree {
    void operator()(BIGNUM* p) const { BN_free(p); }
};

const std::vector<std::string> kDefaultSans = {"localhost", "127.0.0.1", "::1"};

bool file_exists(const std::string& path) {
    std::error_code ec;
    return std::filesystem::exists(path, ec);
}

bool is_ip_address(const std::string& name) {
    unsigned char buf[16];
    return inet_pton(AF_INET, name.c_str(), buf) == 1 ||
           inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

// Names end up in an OpenSSL configuration string, where ',' and ':' have
// meaning: only plain host names (optionally a leading wildcard label) pass.
bool is_dns_name(const std::string& name) {
    if (name.empty() || name.size() > 253) return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '*';
    });
}

Result<EvpPkeyPtr> generate_p256() {
    EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
    if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
        EVP_PKEY_CTX_set_group_name(ctx.get(), "P-256") != 1) {
        return fail(ErrorCode::internal, "cannot set up P-256 key generation: " + openssl_error());
    }
    EVP_PKEY* key = nullptr;
    if (EVP_PKEY_generate(ctx.get(), &key) != 1) {
        return fail(ErrorCode::internal, "P-256 key generation failed: " + openssl_error());
    }
    return EvpPkeyPtr(key);
}

std::string bio_text(BIO* bio) {
    char* data = nullptr;
    long len = BIO_get_mem_data(bio, &data);
    return std::string(data, static_cast<size_t>(len));
}

Result<std::string> private_key_pem(EVP_PKEY* key) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio ||
        PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
        return fail(ErrorCode::internal, "cannot encode private key: " + openssl_error());
    }
    return bio_text(bio.get());
}

Result<std::string> certificate_pem(X509* cert) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
        return fail(ErrorCode::internal, "cannot encode certificate: " + openssl_error());
    }
    return bio_text(bio.get());
}

Result<X509Ptr> parse_certificate(const std::string& pem, const std::string& what) {
    BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    X509* cert = bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr;
    if (cert == nullptr) {
        return fail(ErrorCode::integrity, what + " is not a PEM certificate: " + openssl_error());
    }
    return X509Ptr(cert);
}

Result<X509Ptr> load_certificate(const std::string& path) {
    auto pem = util::read_file(path);
    if (!pem) return std::unexpected(pem.error());
    return parse_certificate(*pem, path);
}

Result<EvpPkeyPtr> load_private_key(const std::string& path) {
    auto pem = util::read_file(path);
    if (!pem) return std::unexpected(pem.error());
    BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
    EVP_PKEY* key = bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr;
    if (key == nullptr) {
        return fail(ErrorCode::integrity, path + " is not a PEM private key: " + openssl_error());
    }
    return EvpPkeyPtr(key);
}

Status set_common_name(X509* cert, const std::string& cn, X509_NAME* issuer) {
    std::unique_ptr<X509_NAME, X509NameFree> name(X509_NAME_new());
    if (!name ||
        X509_NAME_add_entry_by_txt(name.get(), "O", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>("agent-hub"), -1, -1,
                                   0) != 1 ||
        X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                   0) != 1 ||
        X509_set_subject_name(cert, name.get()) != 1 ||
        X509_set_issuer_name(cert, issuer != nullptr ? issuer : name.get()) != 1) {
        return fail(ErrorCode::internal, "cannot set certificate names: " + openssl_error());
    }
    return {};
}

Status add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    std::unique_ptr<X509_EXTENSION, X509ExtFree> ext(
        X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
    if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
        return fail(ErrorCode::internal,
                    "cannot add certificate extension " + value + ": " + openssl_error());
    }
    return {};
}

// A new certificate with version, random serial, validity and public key set.
Result<X509Ptr> new_certificate(EVP_PKEY* subject_key, int validity_days) {
    X509Ptr cert(X509_new());
    if (!cert) return fail(ErrorCode::internal, "X509_new failed");
    // 159 random bits: positive and unique (RFC 5280 section 4.1.2.2).
    std::string serial = crypto::random_bytes(20);
    serial[0] = static_cast<char>(serial[0] & 0x7f);
    std::unique_ptr<BIGNUM, BnFree> bn(
        BN_bin2bn(reinterpret_cast<const unsigned char*>(serial.data()),
                  static_cast<int>(serial.size()), nullptr));
    // Backdated five minutes so that a client with a slightly slow clock accepts it.
    if (X509_set_version(cert.get(), X509_VERSION_3) != 1 || !bn ||
        BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())) == nullptr ||
        X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300) == nullptr ||
        X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400L * validity_days) == nullptr ||
        X509_set_pubkey(cert.get(), subject_key) != 1) {
        return fail(ErrorCode::internal, "cannot fill certificate: " + openssl_error());
    }
    return cert;
}

Result<X509Ptr> issue_ca(EVP_PKEY* ca_key) {
    auto cert = new_certificate(ca_key, kCaValidityDays);
    if (!cert) return cert;
    X509* c = cert->get();
    if (auto s = set_common_name(c, "agent-hub local CA", nullptr); !s)
        return std::unexpected(s.error());
    for (auto [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                              std::pair{NID_key_usage, "critical,keyCertSign,cRLSign"},
                              std::pair{NID_subject_key_identifier, "hash"},
                              std::pair{NID_authority_key_identifier, "keyid:always"}}) {
        if (auto s = add_extension(c, c, nid, value); !s) return std::unexpected(s.error());
    }
    if (X509_sign(c, ca_key, EVP_sha256()) == 0) {
        return fail(ErrorCode::internal, "cannot sign CA certificate: " + openssl_error());
    }
    return cert;
}

std::vector<std::string> all_sans(const std::vector<std::string>& extra) {
    std::vector<std::string> out = kDefaultSans;
    for (const auto& name : extra) {
        if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
    }
    return out;
}

Result<X509Ptr> issue_server(X509* ca_cert, EVP_PKEY* ca_key, EVP_PKEY* server_key,
                             const std::vector<std::string>& sans) {
    auto cert = new_certificate(server_key, kServerValidityDays);
    if (!cert) return cert;
    X509* c = cert->get();
    if (auto s = set_common_name(c, "localhost", X509_get_subject_name(ca_cert)); !s) {
        return std::unexpected(s.error());
    }
    std::string san;
    for (const auto& name : sans) {
        if (!san.empty()) san += ",";
        san += (is_ip_address(name) ? "IP:" : "DNS:") + name;
    }
    for (auto [nid, value] : {std::pair{NID_basic_constraints, std::string("critical,CA:FALSE")},
                              std::pair{NID_key_usage, std::string("critical,digitalSignature")},
                              std::pair{NID_ext_key_usage, std::string("serverAuth")},
                              std::pair{NID_subject_alt_name, san},
                              std::pair{NID_subject_key_identifier, std::string("hash")},
                              std::pair{NID_authority_key_identifier, std::string("keyid")}}) {
        if (auto s = add_extension(c, ca_cert, nid, value); !s) return std::unexpected(s.error());
    }
    if (X509_sign(c, ca_key, EVP_sha256()) == 0) {
        return fail(ErrorCode::internal, "cannot sign server certificate: " + openssl_error());
    }
    return cert;
}

bool covers(X509* cert, const std::string& name) {
    if (is_ip_address(name)) return X509_check_ip_asc(cert, name.c_str(), 0) == 1;
    return X509_check_host(cert, name.c_str(), name.size(), 0, nullptr) == 1;
}

bool expires_within(X509* cert, int days) {
    int d = 0;
    int s = 0;
    if (ASN1_TIME_diff(&d, &s, nullptr, X509_get0_notAfter(cert)) != 1) return true;
    return d < days;
}

Status verify_chain(X509* ca, X509* cert) {
    std::unique_ptr<X509_STORE, X509StoreFree> store(X509_STORE_new());
    std::unique_ptr<X509_STORE_CTX, X509StoreCtxFree> ctx(X509_STORE_CTX_new());
    if (!store || !ctx || X509_STORE_add_cert(store.get(), ca) != 1 ||
        X509_STORE_CTX_init(ctx.get(), store.get(), cert, nullptr) != 1 ||
        X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_SERVER) != 1) {
        return fail(ErrorCode::internal,
                    "cannot set up certificate verification: " + openssl_error());
    }
    if (X509_verify_cert(ctx.get()) != 1) {
        int err = X509_STORE_CTX_get_error(ctx.get());
        ERR_clear_error();
        return fail(ErrorCode::integrity,
                    std::string("certificate does not verify against the CA: ") +
                        X509_verify_cert_error_string(err));
    }
    return {};
}

Status write_pem(const std::string& path, const std::string& pem, unsigned mode,
                 std::vector<std::string>& created) {
    if (auto s = util::write_file_atomic(path, pem, mode); !s) return s;
    created.push_back(path);
    return {};
}

struct Ca {
    X509Ptr cert;
    EvpPkeyPtr key;
};

Result<Ca> ensure_ca(const store::Layout& l, std::vector<std::string>& created) {
    bool have_cert = file_exists(l.ca_cert);
    bool have_key = file_exists(l.ca_key);
    if (have_cert != have_key) {
        return fail(ErrorCode::integrity,
                    "the local CA is incomplete: " + (have_cert ? l.ca_key : l.ca_cert) +
                        " is missing; restore it, or remove " + (have_cert ? l.ca_cert : l.ca_key) +
                        " to create a new CA (agents must then trust the new ca.pem)");
    }
    if (have_cert) {
        auto cert = load_certificate(l.ca_cert);
        if (!cert) return std::unexpected(cert.error());
        auto key = load_private_key(l.ca_key);
        if (!key) return std::unexpected(key.error());
        if (X509_check_private_key(cert->get(), key->get()) != 1) {
            ERR_clear_error();
            return fail(ErrorCode::integrity, l.ca_key + " does not belong to " + l.ca_cert);
        }
        return Ca{std::move(*cert), std::move(*key)};
    }
    auto key = generate_p256();
    if (!key) return std::unexpected(key.error());
    auto cert = issue_ca(key->get());
    if (!cert) return std::unexpected(cert.error());
    auto key_pem = private_key_pem(key->get());
    if (!key_pem) return std::unexpected(key_pem.error());
    auto cert_pem = certificate_pem(cert->get());
    if (!cert_pem) return std::unexpected(cert_pem.error());
    if (auto s = write_pem(l.ca_key, *key_pem, 0600, created); !s)
        return std::unexpected(s.error());
    if (auto s = write_pem(l.ca_cert, *cert_pem, 0644, created); !s)
        return std::unexpected(s.error());
    return Ca{std::move(*cert), std::move(*key)};
}

// True when the existing server certificate and key can be used as they are.
bool server_certificate_usable(const store::Layout& l, X509* ca,
                               const std::vector<std::string>& sans) {
    if (!file_exists(l.server_cert) || !file_exists(l.server_key)) return false;
    auto cert = load_certificate(l.server_cert);
    auto key = load_private_key(l.server_key);
    if (!cert || !key) return false;
    if (X509_check_private_key(cert->get(), key->get()) != 1) {
        ERR_clear_error();
        return false;
    }
    if (!verify_chain(ca, cert->get())) return false;
    if (expires_within(cert->get(), kServerRenewDays)) return false;
    return std::all_of(sans.begin(), sans.end(),
                       [&](const std::string& n) { return covers(cert->get(), n); });
}

Status ensure_server(const store::Layout& l, const Ca& ca, const std::vector<std::string>& sans,
                     std::vector<std::string>& created) {
    if (server_certificate_usable(l, ca.cert.get(), sans)) return {};
    auto key = generate_p256();
    if (!key) return std::unexpected(key.error());
    auto cert = issue_server(ca.cert.get(), ca.key.get(), key->get(), sans);
    if (!cert) return std::unexpected(cert.error());
    auto key_pem = private_key_pem(key->get());
    if (!key_pem) return std::unexpected(key_pem.error());
    auto cert_pem = certificate_pem(cert->get());
    if (!cert_pem) return std::unexpected(cert_pem.error());
    // Key first: a crash in between leaves a mismatched pair, which the next
    // start detects and replaces.
    if (auto s = write_pem(l.server_key, *key_pem, 0600, created); !s) return s;
    return write_pem(l.server_cert, *cert_pem, 0644, created);
}

Result<crypto::Ed25519PrivateKey> ensure_signing_key(const std::string& key_path,
                                                     const std::string& pub_path,
                                                     std::vector<std::string>& created) {
    if (!file_exists(key_path)) {
        if (file_exists(pub_path)) {
            // Someone may have pinned this public key; silently replacing the
            // private key would break them in a confusing way.
            return fail(ErrorCode::integrity, key_path + " is missing but " + pub_path +
                                                  " exists; restore the key, or remove both "
                                                  "to create a new one");
        }
        auto key = crypto::Ed25519PrivateKey::generate();
        auto pem = private_key_pem(key.native());
        if (!pem) return std::unexpected(pem.error());
        if (auto s = write_pem(key_path, *pem, 0600, created); !s)
            return std::unexpected(s.error());
    }
    auto key = crypto::Ed25519PrivateKey::from_pem_file(key_path);
    if (!key) return fail(ErrorCode::integrity, key_path + ": " + key.error().message);
    std::string pub_pem = key->public_key().pem();
    auto existing = util::read_file(pub_path);
    if (!existing || *existing != pub_pem) {
        if (auto s = write_pem(pub_path, pub_pem, 0644, created); !s)
            return std::unexpected(s.error());
    }
    return std::move(*key);
}

}  // namespace

Result<Material> ensure(const std::string& dir, const std::vector<std::string>& extra_sans) {
    for (const auto& name : extra_sans) {
        if (!is_ip_address(name) && !is_dns_name(name)) {
            return fail(ErrorCode::invalid_argument,
                        "--san '" + name + "' is neither a DNS name nor an IP address");
        }
    }
    if (auto s = util::make_dirs(dir, 0700); !s) return std::unexpected(s.error());
    store::Layout layout = store::Layout::of(dir);
    if (!file_exists(layout.ca_key)) {
        // First start in an existing directory: it is about to hold private
        // keys, so it gets the same 0700 a new directory would have.
        if (::chmod(dir.c_str(), 0700) != 0) {
            return fail(ErrorCode::io, "cannot restrict " + dir + " to mode 0700");
        }
    }
    std::vector<std::string> created;
    auto ca = ensure_ca(layout, created);
    if (!ca) return std::unexpected(ca.error());
    if (auto s = ensure_server(layout, *ca, all_sans(extra_sans), created); !s) {
        return std::unexpected(s.error());
    }
    auto token_key = ensure_signing_key(layout.token_key, layout.token_public, created);
    if (!token_key) return std::unexpected(token_key.error());
    auto job_key = ensure_signing_key(layout.job_key, layout.job_public, created);
    if (!job_key) return std::unexpected(job_key.error());
    return Material{std::move(layout), std::move(*token_key), std::move(*job_key),
                    std::move(created)};
}

Result<PreparedJobKey> prepare_job_key(const std::string& dir) {
    store::Layout l = store::Layout::of(dir);
    if (!file_exists(l.job_key)) {
        return fail(ErrorCode::not_found, "no job-signing key in " + dir +
                                              " (start `agent-hub serve --data " + dir +
                                              "` once to create the key material)");
    }
    std::vector<std::string> written;
    // ensure_signing_key creates the next key when missing and re-derives
    // its public half, exactly as for the live keys.
    auto next = ensure_signing_key(l.job_next_key, l.job_next_public, written);
    if (!next) return std::unexpected(next.error());
    return PreparedJobKey{next->public_key().key_id(), l.job_next_public};
}

Result<JobKeyRotation> rotate_job_key(const std::string& dir) {
    store::Layout l = store::Layout::of(dir);
    if (!file_exists(l.job_key)) {
        return fail(ErrorCode::not_found, "no job-signing key in " + dir +
                                              " (start `agent-hub serve --data " + dir +
                                              "` once to create the key material)");
    }
    auto old_key = crypto::Ed25519PrivateKey::from_pem_file(l.job_key);
    if (!old_key) return fail(ErrorCode::integrity, l.job_key + ": " + old_key.error().message);
    auto old_public = old_key->public_key();
    crypto::Ed25519PrivateKey new_key = crypto::Ed25519PrivateKey::generate();
    const bool prepared = file_exists(l.job_next_key);
    if (prepared) {
        auto next = crypto::Ed25519PrivateKey::from_pem_file(l.job_next_key);
        if (!next) return fail(ErrorCode::integrity, l.job_next_key + ": " + next.error().message);
        new_key = std::move(*next);
    }
    auto new_pem = private_key_pem(new_key.native());
    if (!new_pem) return std::unexpected(new_pem.error());
    std::vector<std::string> written;
    // Order matters for a crash in between: the previous public key first
    // (nothing depends on it), then the private key (from which `serve`
    // signs, and from which the next start re-derives job-signing.pub.pem).
    if (auto s = write_pem(l.job_previous_public, old_public.pem(), 0644, written); !s) {
        return std::unexpected(s.error());
    }
    if (auto s = write_pem(l.job_key, *new_pem, 0600, written); !s) {
        return std::unexpected(s.error());
    }
    auto new_public = new_key.public_key();
    if (auto s = write_pem(l.job_public, new_public.pem(), 0644, written); !s) {
        return std::unexpected(s.error());
    }
    // The prepared key is live now; a leftover would be "prepared" again.
    if (prepared) {
        std::remove(l.job_next_key.c_str());
        std::remove(l.job_next_public.c_str());
    }
    return JobKeyRotation{old_public.key_id(), new_public.key_id(), l.job_public,
                          l.job_previous_public};
}

Status verify_server_certificate(const std::string& ca_pem, const std::string& cert_pem) {
    auto ca = parse_certificate(ca_pem, "CA certificate");
    if (!ca) return std::unexpected(ca.error());
    auto cert = parse_certificate(cert_pem, "server certificate");
    if (!cert) return std::unexpected(cert.error());
    return verify_chain(ca->get(), cert->get());
}

}  // namespace sa::hub::pki
