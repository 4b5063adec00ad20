#pragma once
// Mutual TLS to a SIEM: the agent presents a client certificate whose chain
// is a PEM file (not secret) and whose private key lives in a secret store.
//
// The key is read just in time for each connection (so a rotated key is used
// on the next one), parsed in place from the SecretValue
// (secrets::load_private_key_pem), checked against the certificate and handed
// to the connection's SSL_CTX; the SecretValue and the parsed key are released
// as soon as the context holds it. Errors never quote the key.
#include <optional>
#include <string>

#include "agent/secrets/secret_store.h"
#include "common/crypto/openssl_ptr.h"
#include "common/result.h"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX

namespace sa::agent::siem {

struct ClientCertificate {
    std::string cert_file;             // PEM: the client certificate first, then intermediates
    secrets::SecretRef key;            // PEM private key (unencrypted PKCS#8 or traditional)
    secrets::CredentialReader reader;  // reads `key`; audits each read (SecretStores::reader)
};

// Installs the chain from cert_file and key into ctx and checks that they
// match (SSL_CTX_check_private_key). Errors: invalid_argument naming
// cert_file ("cannot read a PEM certificate chain", "the private key does not
// match the certificate").
Status install_client_certificate(ssl_ctx_st* ctx, const std::string& cert_file, EVP_PKEY* key);

// Reads the key through cert.reader now and parses it. Errors: what the
// store reports (unavailable, not_found, ...) or invalid_argument for a key
// that is not an unencrypted PEM private key, prefixed with the reference.
Result<crypto::EvpPkeyPtr> read_client_key(const ClientCertificate& cert);

// Installs chain and key into a scratch context: an unreadable chain or a
// key that does not belong to the certificate is found without connecting.
// Errors as install_client_certificate.
Status check_client_certificate(const std::string& cert_file, EVP_PKEY* key);

// For `secure-agent doctor` and tests: reads the key (read_client_key), then
// checks it against the chain as above.
Status check_client_certificate(const ClientCertificate& cert);

}  // namespace sa::agent::siem
