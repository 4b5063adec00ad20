#pragma once
// Byte encodings used on the wire: base64url without padding (JOSE, RFC 7515
// section 2), standard base64 (RFC 9530 Content-Digest), lowercase hex, and
// RFC 3986 percent-encoding.
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

// RFC 3986 percent-encoding: unreserved characters (ALPHA DIGIT - . _ ~)
// stay, every other byte becomes %XX (upper-case hex). Safe for one URL path
// segment and for a query or form value; exactly AWS SigV4's URI encoding.
std::string percent_encode(std::string_view bytes);

}  // namespace sa::crypto
