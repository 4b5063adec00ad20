#pragma once
// One result type for errors a caller is expected to handle. Exceptions are
// reserved for broken invariants (bugs) and are caught at module edges.
#include <expected>
#include <string>
#include <utility>

namespace sa {

// Error codes a caller can act on. Messages are for humans and must never
// contain secret values.
enum class ErrorCode {
    invalid_argument,   // input was malformed (config, CLI, wire data)
    not_found,          // the thing named does not exist
    permission_denied,  // authenticated but not allowed, or refused by policy
    unauthenticated,    // credentials missing or wrong
    unavailable,        // transient: network, peer down; worth retrying
    integrity,          // digest, signature or chain check failed
    expired,            // token, lease or job past its lifetime
    conflict,           // state does not allow the operation (e.g. lease lost)
    io,                 // local file system or database failure
    internal,           // unexpected failure in a library call
};

const char* to_string(ErrorCode code);

struct Error {
    ErrorCode code;
    std::string message;

    // "code: message", for logs and CLI output.
    std::string describe() const { return std::string(to_string(code)) + ": " + message; }
};

template <class T>
using Result = std::expected<T, Error>;

// Result of an operation that only succeeds or fails.
using Status = std::expected<void, Error>;

inline std::unexpected<Error> fail(ErrorCode code, std::string message) {
    return std::unexpected<Error>(Error{code, std::move(message)});
}

}  // namespace sa
