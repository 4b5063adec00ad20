#pragma once
// Wipes every string of a parsed JSON document (values, recursively) before
// it is freed, for documents that carried secrets (token responses, JSON
// secret bundles). The parser's own scratch buffers are beyond reach.
#include <nlohmann/json.hpp>

#include "agent/secrets/secret_value.h"

namespace sa::agent::secrets {

inline void wipe_json(nlohmann::json& value) {
    if (value.is_string()) {
        wipe(*value.get_ptr<std::string*>());
    } else if (value.is_structured()) {
        for (auto& child : value) wipe_json(child);
    }
}

}  // namespace sa::agent::secrets
