#include "agent/secrets/secret_stores.h"

#include "agent/secrets/env_secret_store.h"
#include "agent/secrets/file_secret_store.h"

namespace sa::agent::secrets {

const std::vector<std::string>& supported_store_types() {
    static const std::vector<std::string> types{"file", "env"};
    return types;
}

Result<SecretStores> SecretStores::create(const std::vector<StoreSpec>& specs) {
    SecretStores stores;
    for (const StoreSpec& spec : specs) {
        if (stores.has(spec.name)) {
            return fail(ErrorCode::invalid_argument,
                        "duplicate secret store \"" + spec.name + "\"");
        }
        if (spec.type == "file") {
            stores.add(spec.name, std::make_unique<FileSecretStore>(spec.name, spec.path));
        } else if (spec.type == "env") {
            stores.add(spec.name, std::make_unique<EnvSecretStore>(spec.name, spec.prefix));
        } else {
            return fail(
                ErrorCode::invalid_argument,
                "secret store \"" + spec.name + "\" has unknown type \"" + spec.type + "\"");
        }
    }
    return stores;
}

void SecretStores::add(const std::string& name, SecretStorePtr store) {
    stores_[name] = std::move(store);
}

Result<SecretValue> SecretStores::read(const SecretRef& ref) const {
    auto it = stores_.find(ref.store);
    if (it == stores_.end()) {
        return fail(ErrorCode::not_found, "unknown secret store \"" + ref.store + "\"");
    }
    return it->second->read(ref);
}

}  // namespace sa::agent::secrets
