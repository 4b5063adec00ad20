#pragma once
// JSON and secrets: wiping the strings of a parsed document, and escaping
// secret text into a JSON string without leaving copies behind.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "agent/secrets/secret_value.h"

namespace sa::agent::secrets {

// Wipes every string of a parsed JSON document (values, recursively) before
// it is freed, for documents that carried secrets (token responses, JSON
// secret bundles). The parser's own scratch buffers are beyond reach.
inline void wipe_json(nlohmann::json& value) {
    if (value.is_string()) {
        wipe(*value.get_ptr<std::string*>());
    } else if (value.is_structured()) {
        for (auto& child : value) wipe_json(child);
    }
}

namespace detail {
// The short escape of c (\" \\ \b \f \n \r \t), or 0.
inline char json_short_escape(unsigned char c) {
    switch (c) {
        case '"':
            return '"';
        case '\\':
            return '\\';
        case '\b':
            return 'b';
        case '\f':
            return 'f';
        case '\n':
            return 'n';
        case '\r':
            return 'r';
        case '\t':
            return 't';
        default:
            return 0;
    }
}
}  // namespace detail

// How many bytes append_json_escaped adds for text.
inline size_t json_escaped_size(std::string_view text) {
    size_t size = 0;
    for (unsigned char c : text) {
        size += detail::json_short_escape(c) != 0 ? 2 : c < 0x20 ? 6 : 1;
    }
    return size;
}

// Appends text escaped for the inside of a JSON string, exactly as
// nlohmann::json::dump writes it (short escapes, other control characters
// as \u00xx, everything else as is). Reserve json_escaped_size(text) in out
// first: then no reallocation leaves a copy of a secret behind (json::dump
// would copy it through its own buffers).
inline void append_json_escaped(std::string& out, std::string_view text) {
    static constexpr char kHex[] = "0123456789abcdef";
    for (unsigned char c : text) {
        if (const char e = detail::json_short_escape(c); e != 0) {
            out += '\\';
            out += e;
        } else if (c < 0x20) {
            out += "\\u00";
            out += kHex[c >> 4];
            out += kHex[c & 0xF];
        } else {
            out += static_cast<char>(c);
        }
    }
}

}  // namespace sa::agent::secrets
