#include "agent/secrets/http_store.h"

#include <cctype>

namespace sa::agent::secrets {

std::string store_where(std::string_view store_name, std::string_view path) {
    return "secret store \"" + std::string(store_name) + "\" path \"" + std::string(path) + "\"";
}

Error http_store_error(std::string_view where, long status, std::string_view detail) {
    ErrorCode code = ErrorCode::invalid_argument;
    if (status == 404 || status == 410) {
        code = ErrorCode::not_found;
    } else if (status == 401 || status == 403) {
        code = ErrorCode::permission_denied;
    } else if (status == 408 || status == 425 || status == 429 || (status >= 500 && status < 600)) {
        code = ErrorCode::unavailable;
    }
    std::string message = std::string(where) + ": HTTP " + std::to_string(status);
    if (!detail.empty()) message += ": " + std::string(detail);
    return Error{code, std::move(message)};
}

Error transport_store_error(std::string_view where, const Error& error) {
    const ErrorCode code = error.code == ErrorCode::permission_denied ? ErrorCode::permission_denied
                                                                      : ErrorCode::unavailable;
    return Error{code, std::string(where) + ": " + error.message};
}

std::string error_detail(std::string_view text, size_t max_chars) {
    std::string out;
    out.reserve(std::min(text.size(), max_chars));
    for (char c : text.substr(0, max_chars)) {
        out += std::iscntrl(static_cast<unsigned char>(c)) ? ' ' : c;
    }
    const size_t first = out.find_first_not_of(' ');
    if (first == std::string::npos) return {};
    const size_t last = out.find_last_not_of(' ');
    return out.substr(first, last - first + 1);
}

}  // namespace sa::agent::secrets
