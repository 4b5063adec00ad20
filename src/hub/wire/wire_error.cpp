#include "hub/wire/wire_error.h"

#include <string_view>

namespace sa::hub::wire {

int http_status(const std::string& c) {
    std::string_view v = c;
    if (v == code::kInvalidClient || v == code::kInvalidToken) return 401;
    if (v == code::kNotFound) return 404;
    if (v == code::kMethodNotAllowed) return 405;
    if (v == code::kChunkConflict || v == code::kLeaseLost || v == code::kBaselineMismatch) {
        return 409;
    }
    if (v == code::kTooLarge) return 413;
    if (v == code::kServerError) return 500;
    // invalid_request, unsupported_grant_type, invalid_digest, digest_mismatch,
    // missing_chunk, bad_chunk and anything new: the request was at fault.
    return 400;
}

}  // namespace sa::hub::wire
