#pragma once
// SecretStores: the registry of configured secret stores, keyed by the store
// name that references use ("STORE/PATH#KEY"). Built once at startup from the
// config; stores are wired explicitly here, not by static registration.
#include <map>
#include <string>
#include <vector>

#include "agent/secrets/secret_store.h"

namespace sa::agent::secrets {

// One entry of the config's secret_stores section.
struct StoreSpec {
    std::string name;
    std::string type;    // "file" | "env"
    std::string path;    // type file: the directory
    std::string prefix;  // type env: prepended to each reference's PATH
};

// Store types this build supports, for config validation and error messages.
const std::vector<std::string>& supported_store_types();

class SecretStores final {
  public:
    // Errors: invalid_argument for an unknown type or a duplicate name. Does no I/O.
    static Result<SecretStores> create(const std::vector<StoreSpec>& specs);

    // Adds (or replaces) a store; for tests and future backends.
    void add(const std::string& name, SecretStorePtr store);
    bool has(const std::string& name) const { return stores_.contains(name); }

    // Reads from the store ref.store names. Errors: not_found for an unknown
    // store, otherwise whatever the store reports.
    Result<SecretValue> read(const SecretRef& ref) const;

  private:
    std::map<std::string, SecretStorePtr> stores_;
};

}  // namespace sa::agent::secrets
