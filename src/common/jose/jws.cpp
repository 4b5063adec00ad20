#include "common/jose/jws.h"

#include "common/crypto/encoding.h"

namespace sa::jose {

using nlohmann::json;

std::string sign_compact(const crypto::Ed25519PrivateKey& key, std::string_view header_json,
                         std::string_view payload_json) {
    std::string input =
        crypto::base64url_encode(header_json) + "." + crypto::base64url_encode(payload_json);
    std::string sig = key.sign(input);
    return input + "." + crypto::base64url_encode(sig);
}

std::string sign(const crypto::Ed25519PrivateKey& key, std::string_view kid, std::string_view typ,
                 const json& payload) {
    json header = {{"alg", "EdDSA"}};
    if (!kid.empty()) header["kid"] = kid;
    if (!typ.empty()) header["typ"] = typ;
    return sign_compact(key, header.dump(), payload.dump());
}

namespace {

struct Parts {
    std::string_view header_b64, payload_b64, signature_b64;
};

Result<Parts> split(std::string_view compact) {
    if (compact.size() > 1 << 20) return fail(ErrorCode::invalid_argument, "JWS larger than 1 MiB");
    size_t a = compact.find('.');
    if (a == std::string_view::npos)
        return fail(ErrorCode::invalid_argument, "JWS must have three parts");
    size_t b = compact.find('.', a + 1);
    if (b == std::string_view::npos || compact.find('.', b + 1) != std::string_view::npos) {
        return fail(ErrorCode::invalid_argument, "JWS must have three parts");
    }
    return Parts{compact.substr(0, a), compact.substr(a + 1, b - a - 1), compact.substr(b + 1)};
}

Result<json> decode_json_part(std::string_view b64, const char* what) {
    auto raw = crypto::base64url_decode(b64);
    if (!raw)
        return fail(ErrorCode::invalid_argument, std::string("JWS ") + what + " is not base64url");
    json j = json::parse(*raw, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
        return fail(ErrorCode::invalid_argument,
                    std::string("JWS ") + what + " is not a JSON object");
    }
    return j;
}

}  // namespace

Result<Jws> decode_unverified(std::string_view compact) {
    auto parts = split(compact);
    if (!parts) return std::unexpected(parts.error());
    auto header = decode_json_part(parts->header_b64, "header");
    if (!header) return std::unexpected(header.error());
    auto payload = decode_json_part(parts->payload_b64, "payload");
    if (!payload) return std::unexpected(payload.error());
    return Jws{std::move(*header), std::move(*payload)};
}

Result<Jws> verify(std::string_view compact, const crypto::Ed25519PublicKey& key) {
    auto parts = split(compact);
    if (!parts) return std::unexpected(parts.error());
    auto header = decode_json_part(parts->header_b64, "header");
    if (!header) return std::unexpected(header.error());
    auto alg = header->find("alg");
    if (alg == header->end() || !alg->is_string() || *alg != "EdDSA") {
        return fail(ErrorCode::integrity, "JWS algorithm must be EdDSA");
    }
    if (header->contains("crit"))
        return fail(ErrorCode::integrity, "JWS critical header parameters are not supported");
    auto sig = crypto::base64url_decode(parts->signature_b64);
    if (!sig) return fail(ErrorCode::invalid_argument, "JWS signature is not base64url");
    std::string_view input =
        compact.substr(0, parts->header_b64.size() + 1 + parts->payload_b64.size());
    if (!key.verify(input, *sig))
        return fail(ErrorCode::integrity, "JWS signature does not verify");
    auto payload = decode_json_part(parts->payload_b64, "payload");
    if (!payload) return std::unexpected(payload.error());
    return Jws{std::move(*header), std::move(*payload)};
}

namespace {

std::optional<int64_t> int_claim(const json& payload, const char* name) {
    auto it = payload.find(name);
    if (it == payload.end() || !it->is_number_integer()) return std::nullopt;
    return it->get<int64_t>();
}

}  // namespace

Status check_claims(const Jws& jws, const ClaimRules& rules) {
    const json& p = jws.payload;
    if (!rules.type.empty()) {
        auto typ = jws.header.find("typ");
        if (typ == jws.header.end() || !typ->is_string() || *typ != rules.type) {
            return fail(ErrorCode::permission_denied, "token type is not " + rules.type);
        }
    }
    auto exp = int_claim(p, "exp");
    if (!exp) return fail(ErrorCode::invalid_argument, "token has no integer exp claim");
    if (rules.now > *exp + rules.leeway_seconds) {
        return fail(ErrorCode::expired,
                    "token expired " + std::to_string(rules.now - *exp) + " s ago");
    }
    if (p.contains("nbf")) {
        auto nbf = int_claim(p, "nbf");
        if (!nbf) return fail(ErrorCode::invalid_argument, "token nbf claim is not an integer");
        if (rules.now + rules.leeway_seconds < *nbf)
            return fail(ErrorCode::expired, "token is not valid yet (nbf)");
    }
    if (p.contains("iat")) {
        auto iat = int_claim(p, "iat");
        if (!iat) return fail(ErrorCode::invalid_argument, "token iat claim is not an integer");
        if (rules.now + rules.leeway_seconds < *iat)
            return fail(ErrorCode::expired, "token was issued in the future (iat)");
    }
    if (!rules.issuer.empty()) {
        auto iss = p.find("iss");
        if (iss == p.end() || !iss->is_string() || *iss != rules.issuer) {
            return fail(ErrorCode::permission_denied, "token issuer is not " + rules.issuer);
        }
    }
    if (!rules.audience.empty()) {
        auto aud = p.find("aud");
        bool ok = false;
        if (aud != p.end() && aud->is_string()) ok = *aud == rules.audience;
        if (aud != p.end() && aud->is_array()) {
            for (const auto& a : *aud) ok = ok || (a.is_string() && a == rules.audience);
        }
        if (!ok)
            return fail(ErrorCode::permission_denied,
                        "token audience does not include " + rules.audience);
    }
    if (rules.require_jti) {
        auto jti = p.find("jti");
        if (jti == p.end() || !jti->is_string() || jti->get<std::string>().empty()) {
            return fail(ErrorCode::invalid_argument, "token has no jti claim");
        }
    }
    return {};
}

}  // namespace sa::jose
