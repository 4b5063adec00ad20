#include "agent/secrets/secret_store.h"

#include <nlohmann/json.hpp>

#include "agent/secrets/json_wipe.h"

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

Result<SecretValue> select_secret(std::string&& content, const SecretRef& ref,
                                  const std::string& where) {
    if (ref.key.empty()) return SecretValue::from(std::move(content));

    nlohmann::json doc = nlohmann::json::parse(content, nullptr, /*allow_exceptions=*/false);
    wipe(content);
    if (doc.is_discarded()) {
        return fail(ErrorCode::invalid_argument,
                    where + ": not valid JSON (needed for key \"" + ref.key + "\")");
    }
    const nlohmann::json* node = &doc;
    size_t start = 0;
    while (start <= ref.key.size()) {
        size_t end = ref.key.find('.', start);
        if (end == std::string::npos) end = ref.key.size();
        const std::string part = ref.key.substr(start, end - start);
        if (!node->is_object() || !node->contains(part)) {
            wipe_json(doc);
            return fail(ErrorCode::not_found, where + ": no key \"" + ref.key + "\"");
        }
        node = &node->at(part);
        start = end + 1;
    }
    if (!node->is_string()) {
        wipe_json(doc);
        return fail(ErrorCode::invalid_argument,
                    where + ": key \"" + ref.key + "\" is not a string");
    }
    SecretValue value = SecretValue::copy_of(node->get_ref<const std::string&>());
    wipe_json(doc);
    return value;
}

}  // namespace sa::agent::secrets
