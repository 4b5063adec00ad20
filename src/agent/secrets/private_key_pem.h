#pragma once
// A private key from a SecretValue holding its PEM text (a TLS client key, a
// JWT-assertion signing key), parsed in place: the PEM is read through a
// read-only memory BIO over the SecretValue's own (locked, wiped) bytes, so
// no other copy of the text is made. Whatever OpenSSL keeps of the key lives
// in the returned EVP_PKEY; free it as soon as it is handed over.
#include "agent/secrets/secret_value.h"
#include "common/crypto/openssl_ptr.h"
#include "common/result.h"

namespace sa::agent::secrets {

// An unencrypted PEM private key (PKCS#8 or traditional). An encrypted key
// fails (there is never a passphrase prompt). Errors: invalid_argument,
// which never quotes the key; the OpenSSL error queue is left empty.
Result<crypto::EvpPkeyPtr> load_private_key_pem(const SecretValue& pem);

}  // namespace sa::agent::secrets
