#include "agent/secrets/env_secret_store.h"

#include <cctype>
#include <cstdlib>
#include <utility>

namespace sa::agent::secrets {
namespace {

bool is_variable_name(const std::string& name) {
    if (name.empty() || std::isdigit(static_cast<unsigned char>(name.front()))) return false;
    for (char c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
    }
    return true;
}

}  // namespace

EnvSecretStore::EnvSecretStore(std::string name, std::string prefix)
    : name_(std::move(name)), prefix_(std::move(prefix)) {}

Result<SecretValue> EnvSecretStore::read(const SecretRef& ref) {
    const std::string variable = prefix_ + ref.path;
    const std::string where = "secret store \"" + name_ + "\" variable " + variable;
    if (!is_variable_name(variable)) {
        return fail(ErrorCode::invalid_argument, "secret store \"" + name_ + "\": \"" + ref.path +
                                                     "\" is not an environment variable name");
    }
    const char* value = std::getenv(variable.c_str());
    if (value == nullptr) return fail(ErrorCode::not_found, where + ": not set");
    return select_secret(std::string(value), ref, where);
}

}  // namespace sa::agent::secrets
