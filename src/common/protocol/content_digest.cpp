#include "common/protocol/content_digest.h"

#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"

namespace sa::protocol {

std::string content_digest_sha256(std::string_view body) {
    return "sha-256=:" + crypto::base64_encode(crypto::sha256(body)) + ":";
}

std::optional<std::string> parse_content_digest_sha256(std::string_view field) {
    // Dictionary of structured-field members separated by commas (RFC 8941).
    while (!field.empty()) {
        size_t comma = field.find(',');
        std::string_view member = field.substr(0, comma);
        field = comma == std::string_view::npos ? std::string_view() : field.substr(comma + 1);
        while (!member.empty() && (member.front() == ' ' || member.front() == '\t'))
            member.remove_prefix(1);
        while (!member.empty() && (member.back() == ' ' || member.back() == '\t'))
            member.remove_suffix(1);
        constexpr std::string_view kKey = "sha-256=:";
        if (member.substr(0, kKey.size()) != kKey || member.size() < kKey.size() + 1 ||
            member.back() != ':')
            continue;
        auto raw =
            crypto::base64_decode(member.substr(kKey.size(), member.size() - kKey.size() - 1));
        if (!raw || raw->size() != 32) return std::nullopt;
        return raw;
    }
    return std::nullopt;
}

}  // namespace sa::protocol
