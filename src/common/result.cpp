#include "common/result.h"

namespace sa {

const char* to_string(ErrorCode code) {
    switch (code) {
        case ErrorCode::invalid_argument:
            return "invalid_argument";
        case ErrorCode::not_found:
            return "not_found";
        case ErrorCode::permission_denied:
            return "permission_denied";
        case ErrorCode::unauthenticated:
            return "unauthenticated";
        case ErrorCode::unavailable:
            return "unavailable";
        case ErrorCode::integrity:
            return "integrity";
        case ErrorCode::expired:
            return "expired";
        case ErrorCode::conflict:
            return "conflict";
        case ErrorCode::io:
            return "io";
        case ErrorCode::internal:
            return "internal";
    }
    return "unknown";
}

}  // namespace sa
