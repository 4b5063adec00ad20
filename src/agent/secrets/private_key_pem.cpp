#include "agent/secrets/private_key_pem.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <climits>

namespace sa::agent::secrets {
namespace {

// Refuses to prompt for a passphrase: an encrypted key simply fails to load.
int no_passphrase(char*, int, int, void*) {
    return -1;
}

}  // namespace

Result<crypto::EvpPkeyPtr> load_private_key_pem(const SecretValue& pem) {
    const std::string_view text = pem.reveal();
    if (text.empty() || text.size() > INT_MAX) {
        return fail(ErrorCode::invalid_argument, "private key is empty or too large");
    }
    crypto::BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
    if (!bio) return fail(ErrorCode::internal, "cannot allocate a memory BIO");
    crypto::EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
    // The OpenSSL error queue says little and must not linger for the next caller.
    ERR_clear_error();
    if (!key) {
        return fail(ErrorCode::invalid_argument,
                    "private key is not an unencrypted PEM private key (PKCS#8 or traditional)");
    }
    return key;
}

}  // namespace sa::agent::secrets
