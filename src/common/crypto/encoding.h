#pragma once
// Byte encodings used on the wire: base64url without padding (JOSE, RFC 7515
// section 2), standard base64 (RFC 9530 Content-Digest) and lowercase hex.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace sa::crypto {

using Bytes = std::string;  // raw bytes; std::string keeps the API small

std::string base64url_encode(std::string_view bytes);
// nullopt when the text is not valid unpadded base64url.
std::optional<Bytes> base64url_decode(std::string_view text);

std::string base64_encode(std::string_view bytes);
std::optional<Bytes> base64_decode(std::string_view text);

std::string hex_encode(std::string_view bytes);

}  // namespace sa::crypto
