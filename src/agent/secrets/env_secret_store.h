#pragma once
// EnvSecretStore: secrets from the agent's own environment, for platforms that
// inject them as variables (container env, systemd credentials exported as
// variables). A reference's PATH is the variable name after the store's
// prefix: with prefix "SA_", {secret: "env/HUB_SECRET"} reads SA_HUB_SECRET.
// KEY selects a field of a JSON value, as for every store.
//
// The variable is read just in time, so a value changed by the process
// itself (or a test) is picked up on the next read. SECURITY NOTE: the
// environment keeps its own copy for the life of the process and passes it
// to children unless cleared; the file and vault stores avoid that, so
// prefer them where the platform offers a choice (docs/security.md).
#include <string>

#include "agent/secrets/secret_store.h"

namespace sa::agent::secrets {

class EnvSecretStore final : public SecretStore {
  public:
    // prefix: prepended to every PATH; [A-Za-z0-9_]*, checked by the config.
    EnvSecretStore(std::string name, std::string prefix);

    // Errors: invalid_argument for a PATH that is not a variable name
    // ([A-Za-z_][A-Za-z0-9_]*), not_found for an unset variable, and
    // select_secret's errors for KEY.
    Result<SecretValue> read(const SecretRef& ref) override;

  private:
    std::string name_;
    std::string prefix_;
};

}  // namespace sa::agent::secrets
