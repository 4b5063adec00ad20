#include "agent/egress/testing/test_pki.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/crypto/openssl_ptr.h"

namespace sa::agent::testing {
namespace {

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "test PKI: %s failed\n", what);
        std::abort();
    }
}

crypto::EvpPkeyPtr new_key() {
    crypto::EvpPkeyPtr key(EVP_EC_gen("P-256"));
    check(key != nullptr, "EVP_EC_gen");
    return key;
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    check(ext != nullptr, "X509V3_EXT_conf_nid");
    check(X509_add_ext(cert, ext, -1) == 1, "X509_add_ext");
    X509_EXTENSION_free(ext);
}

crypto::X509Ptr new_cert(EVP_PKEY* key, const char* cn, long serial) {
    crypto::X509Ptr cert(X509_new());
    check(cert != nullptr, "X509_new");
    X509_set_version(cert.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 7 * 24 * 3600);
    X509_set_pubkey(cert.get(), key);
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn),
                               -1, -1, 0);
    return cert;
}

std::string cert_pem(X509* cert) {
    crypto::BioPtr bio(BIO_new(BIO_s_mem()));
    check(PEM_write_bio_X509(bio.get(), cert) == 1, "PEM_write_bio_X509");
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<size_t>(n));
}

std::string key_pem(EVP_PKEY* key) {
    crypto::BioPtr bio(BIO_new(BIO_s_mem()));
    check(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1,
          "PEM_write_bio_PrivateKey");
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<size_t>(n));
}

}  // namespace

TestPki TestPki::generate(const std::string& ca_name) {
    static long serial = 1;
    auto ca_key = new_key();
    auto ca = new_cert(ca_key.get(), ca_name.c_str(), serial++);
    X509_set_issuer_name(ca.get(), X509_get_subject_name(ca.get()));
    add_ext(ca.get(), ca.get(), NID_basic_constraints, "critical,CA:TRUE");
    add_ext(ca.get(), ca.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
    add_ext(ca.get(), ca.get(), NID_subject_key_identifier, "hash");
    check(X509_sign(ca.get(), ca_key.get(), EVP_sha256()) > 0, "X509_sign CA");

    auto server_key = new_key();
    auto server = new_cert(server_key.get(), "127.0.0.1", serial++);
    X509_set_issuer_name(server.get(), X509_get_subject_name(ca.get()));
    add_ext(server.get(), ca.get(), NID_basic_constraints, "critical,CA:FALSE");
    add_ext(server.get(), ca.get(), NID_key_usage, "critical,digitalSignature");
    add_ext(server.get(), ca.get(), NID_ext_key_usage, "serverAuth");
    add_ext(server.get(), ca.get(), NID_subject_alt_name,
            "IP:127.0.0.1,IP:::1,DNS:localhost,DNS:hub.test");
    add_ext(server.get(), ca.get(), NID_authority_key_identifier, "keyid");
    check(X509_sign(server.get(), ca_key.get(), EVP_sha256()) > 0, "X509_sign server");

    auto client_key = new_key();
    auto client = new_cert(client_key.get(), "secure-agent test client", serial++);
    X509_set_issuer_name(client.get(), X509_get_subject_name(ca.get()));
    add_ext(client.get(), ca.get(), NID_basic_constraints, "critical,CA:FALSE");
    add_ext(client.get(), ca.get(), NID_key_usage, "critical,digitalSignature");
    add_ext(client.get(), ca.get(), NID_ext_key_usage, "clientAuth");
    add_ext(client.get(), ca.get(), NID_authority_key_identifier, "keyid");
    check(X509_sign(client.get(), ca_key.get(), EVP_sha256()) > 0, "X509_sign client");

    return TestPki{TestCert{cert_pem(ca.get()), key_pem(ca_key.get())},
                   TestCert{cert_pem(server.get()), key_pem(server_key.get())},
                   TestCert{cert_pem(client.get()), key_pem(client_key.get())}};
}

const TestPki& pki() {
    static const TestPki value = TestPki::generate();
    return value;
}

const TestPki& other_pki() {
    static const TestPki value = TestPki::generate("some other CA");
    return value;
}

std::string spki_sha256(const std::string& cert_pem) {
    crypto::BioPtr bio(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
    crypto::X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    check(cert != nullptr, "PEM_read_bio_X509");
    unsigned char* der = nullptr;
    const int n = i2d_PUBKEY(X509_get0_pubkey(cert.get()), &der);
    check(n > 0, "i2d_PUBKEY");
    unsigned char digest[32];
    SHA256(der, static_cast<size_t>(n), digest);
    OPENSSL_free(der);
    return std::string(reinterpret_cast<const char*>(digest), sizeof digest);
}

std::string write_test_file(const std::string& path, const std::string& text) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
    return path;
}

}  // namespace sa::agent::testing
