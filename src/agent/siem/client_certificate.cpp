#include "agent/siem/client_certificate.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "agent/secrets/private_key_pem.h"

namespace sa::agent::siem {

Status install_client_certificate(SSL_CTX* ctx, const std::string& cert_file, EVP_PKEY* key) {
    // The OpenSSL error queue would only say "PEM lib" or "key values
    // mismatch"; the messages below say which file and what to do.
    const bool chain = SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) == 1;
    ERR_clear_error();
    if (!chain) {
        return fail(ErrorCode::invalid_argument,
                    "client_cert " + cert_file + ": cannot read a PEM certificate chain");
    }
    const bool used = SSL_CTX_use_PrivateKey(ctx, key) == 1;
    const bool matches = used && SSL_CTX_check_private_key(ctx) == 1;
    ERR_clear_error();
    if (!matches) {
        return fail(ErrorCode::invalid_argument,
                    "client_key: the private key does not match the certificate in " + cert_file);
    }
    return {};
}

Result<crypto::EvpPkeyPtr> read_client_key(const ClientCertificate& cert) {
    if (!cert.reader) return fail(ErrorCode::internal, "no secret reader for the SIEM client key");
    const std::string where = "client_key " + cert.key.to_string() + ": ";
    auto pem = cert.reader(cert.key);
    if (!pem) return fail(pem.error().code, where + pem.error().message);
    auto key = secrets::load_private_key_pem(*pem);  // the PEM is wiped when pem goes
    if (!key) return fail(key.error().code, where + key.error().message);
    return key;
}

Status check_client_certificate(const std::string& cert_file, EVP_PKEY* key) {
    std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                          &SSL_CTX_free);
    if (!ctx) return fail(ErrorCode::internal, "cannot allocate an SSL_CTX");
    return install_client_certificate(ctx.get(), cert_file, key);
}

Status check_client_certificate(const ClientCertificate& cert) {
    auto key = read_client_key(cert);
    if (!key) return std::unexpected(key.error());
    return check_client_certificate(cert.cert_file, key->get());
}

}  // namespace sa::agent::siem
