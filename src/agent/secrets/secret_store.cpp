#include "agent/secrets/secret_store.h"

namespace sa::agent::secrets {

std::string SecretRef::to_string() const {
    std::string out = store + "/" + path;
    if (!key.empty()) out += "#" + key;
    return out;
}

Result<SecretRef> parse_secret_ref(std::string_view text) {
    const size_t slash = text.find('/');
    if (slash == std::string_view::npos || slash == 0) {
        return fail(ErrorCode::invalid_argument,
                    "secret reference must look like STORE/PATH or STORE/PATH#KEY");
    }
    SecretRef ref;
    ref.store = std::string(text.substr(0, slash));
    std::string_view rest = text.substr(slash + 1);
    const size_t hash = rest.find('#');
    ref.path = std::string(rest.substr(0, hash));
    if (hash != std::string_view::npos) {
        ref.key = std::string(rest.substr(hash + 1));
        if (ref.key.empty()) {
            return fail(ErrorCode::invalid_argument, "secret reference has an empty KEY after '#'");
        }
        if (ref.key.front() == '.' || ref.key.back() == '.' ||
            ref.key.find("..") != std::string::npos) {
            return fail(ErrorCode::invalid_argument,
                        "secret reference KEY must be dot-separated names");
        }
    }
    if (ref.path.empty()) {
        return fail(ErrorCode::invalid_argument, "secret reference has an empty PATH");
    }
    return ref;
}

}  // namespace sa::agent::secrets
