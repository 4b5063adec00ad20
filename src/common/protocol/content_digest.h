#pragma once
// RFC 9530 Content-Digest with sha-256: "sha-256=:BASE64:".
#include <optional>
#include <string>
#include <string_view>

namespace sa::protocol {

std::string content_digest_sha256(std::string_view body);
// Returns the 32 raw SHA-256 bytes named by a Content-Digest field value, or
// nullopt when the value has no well-formed sha-256 member. Other algorithms
// in the same field are ignored.
std::optional<std::string> parse_content_digest_sha256(std::string_view field);

}  // namespace sa::protocol
