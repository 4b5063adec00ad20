#pragma once
// Secret references and the SecretStore interface.
//
// A reference names a secret without containing it: "STORE/PATH" or
// "STORE/PATH#KEY", where STORE is a store configured under secret_stores,
// PATH is the store-specific location and KEY (optional) selects a string
// field of a JSON secret; a dotted KEY ("a.b") walks nested objects.
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "agent/secrets/secret_value.h"
#include "common/result.h"

namespace sa::agent::secrets {

struct SecretRef {
    std::string store;
    std::string path;
    std::string key;  // empty: the whole secret

    // "STORE/PATH#KEY": safe to log, contains no secret.
    std::string to_string() const;
    bool operator==(const SecretRef&) const = default;
};

// Errors: invalid_argument naming what is wrong (never echoing more than the
// reference text itself).
Result<SecretRef> parse_secret_ref(std::string_view text);

class SecretStore {
  public:
    virtual ~SecretStore() = default;
    // Reads the secret just in time; nothing is cached. Errors name the store
    // and path but never the value: not_found, permission_denied,
    // invalid_argument (bad reference or content), io.
    virtual Result<SecretValue> read(const SecretRef& ref) = 0;
};

using SecretStorePtr = std::unique_ptr<SecretStore>;

// Reads a credential that a component needs for itself (a Vault token, AWS
// keys, an OAuth client secret, ...) through a reference, usually
// SecretStores::read of the agent's registry. A std::function so that a
// store can be built before the registry that will hold it.
using CredentialReader = std::function<Result<SecretValue>(const SecretRef&)>;

// The secret a reference names inside a store's raw content: the whole
// content when ref.key is empty, else the string at ref.key (dotted keys walk
// nested objects) of the content parsed as JSON. content is wiped either way;
// where ("store \"files\" path \"x\"") prefixes errors, which never quote
// the content: invalid_argument (not JSON, not a string), not_found (no key).
Result<SecretValue> select_secret(std::string&& content, const SecretRef& ref,
                                  const std::string& where);

}  // namespace sa::agent::secrets
