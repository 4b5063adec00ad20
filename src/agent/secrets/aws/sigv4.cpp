#include "agent/secrets/aws/sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <ctime>
#include <map>

#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"

namespace sa::agent::secrets::aws {
namespace {

using Key = std::array<unsigned char, 32>;

// Wipes the intermediate keys of the HMAC chain however sign() leaves.
struct KeyChain {
    Key a{};
    Key b{};
    ~KeyChain() {
        OPENSSL_cleanse(a.data(), a.size());
        OPENSSL_cleanse(b.data(), b.size());
    }
};

bool hmac(std::string_view key, std::string_view data, Key& out) {
    unsigned int length = 0;
    const unsigned char* result =
        HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
             reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &length);
    return result != nullptr && length == out.size();
}

std::string_view view(const Key& key) {
    return {reinterpret_cast<const char*>(key.data()), key.size()};
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Percent-decoding for query components; a malformed escape stays literal
// (it is then encoded, so the signature still covers exactly what was sent).
std::string percent_decode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '%' && i + 2 < text.size()) {
            const int hi = hex_value(text[i + 1]);
            const int lo = hex_value(text[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out += static_cast<char>(hi * 16 + lo);
                i += 2;
                continue;
            }
        }
        out += text[i];
    }
    return out;
}

std::string lower(std::string_view text) {
    std::string out(text);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

// Trims and collapses runs of blanks to one space (AWS: "Trimall").
std::string trim_all(std::string_view value) {
    std::string out;
    bool blank = false;
    for (char c : value) {
        if (c == ' ' || c == '\t') {
            blank = true;
            continue;
        }
        if (blank && !out.empty()) out += ' ';
        blank = false;
        out += c;
    }
    return out;
}

bool valid_amz_date(std::string_view d) {
    if (d.size() != 16 || d[8] != 'T' || d[15] != 'Z') return false;
    for (size_t i = 0; i < 15; ++i) {
        if (i != 8 && !std::isdigit(static_cast<unsigned char>(d[i]))) return false;
    }
    return true;
}

}  // namespace

std::string sigv4_canonical_uri(std::string_view path) {
    std::vector<std::string_view> segments;
    bool trailing_slash = false;
    size_t start = 0;
    while (start <= path.size()) {
        size_t end = path.find('/', start);
        if (end == std::string_view::npos) end = path.size();
        const std::string_view segment = path.substr(start, end - start);
        const bool last = end == path.size();
        if (segment == "..") {
            if (!segments.empty()) segments.pop_back();
        } else if (!segment.empty() && segment != ".") {
            segments.push_back(segment);
        }
        // "a/", "a/." and "a/.." all name a directory.
        if (last) trailing_slash = segment.empty() || segment == "." || segment == "..";
        start = end + 1;
    }
    std::string out;
    for (const auto& segment : segments) out += "/" + crypto::percent_encode(segment);
    if (out.empty() || trailing_slash) out += '/';
    return out;
}

std::string sigv4_canonical_query(std::string_view query) {
    std::vector<std::pair<std::string, std::string>> pairs;
    size_t start = 0;
    while (start < query.size()) {
        size_t end = query.find('&', start);
        if (end == std::string_view::npos) end = query.size();
        const std::string_view pair = query.substr(start, end - start);
        if (!pair.empty()) {
            const size_t eq = pair.find('=');
            const std::string_view name = pair.substr(0, eq);
            const std::string_view value =
                eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
            pairs.emplace_back(crypto::percent_encode(percent_decode(name)),
                               crypto::percent_encode(percent_decode(value)));
        }
        start = end + 1;
    }
    std::sort(pairs.begin(), pairs.end());
    std::string out;
    for (const auto& [name, value] : pairs) {
        if (!out.empty()) out += '&';
        out += name + "=" + value;
    }
    return out;
}

std::string sigv4_amz_date(int64_t unix_seconds) {
    const std::time_t t = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buffer[32];
    std::strftime(buffer, sizeof buffer, "%Y%m%dT%H%M%SZ", &tm);
    return buffer;
}

Result<SigV4Signature> sigv4_sign(const SigV4Request& request, const SigV4Scope& scope,
                                  std::string_view access_key_id,
                                  const SecretValue& secret_access_key) {
    if (!valid_amz_date(scope.amz_date)) {
        return fail(ErrorCode::invalid_argument, "sigv4: amz date must be YYYYMMDDTHHMMSSZ");
    }
    if (scope.region.empty() || scope.service.empty()) {
        return fail(ErrorCode::invalid_argument, "sigv4: region and service are required");
    }
    if (access_key_id.empty() || secret_access_key.empty()) {
        return fail(ErrorCode::invalid_argument, "sigv4: empty access key id or secret key");
    }
    if (request.method.empty()) return fail(ErrorCode::invalid_argument, "sigv4: no method");

    // Repeated names keep their request order (std::map groups, the vector keeps order).
    std::map<std::string, std::vector<std::string>> headers;
    std::string canonical_headers;
    // Header values may include the session token (a credential): wipe the
    // working copies however this function returns.
    struct WipeOnExit {
        std::map<std::string, std::vector<std::string>>& headers;
        std::string& canonical;
        ~WipeOnExit() {
            for (auto& [name, values] : headers) {
                for (auto& value : values) wipe(value);
            }
            wipe(canonical);
        }
    } wipe_on_exit{headers, canonical_headers};
    for (const auto& [name, value] : request.headers) {
        headers[lower(name)].push_back(trim_all(value));
    }
    if (!headers.contains("host") || !headers.contains("x-amz-date")) {
        return fail(ErrorCode::invalid_argument,
                    "sigv4: the host and x-amz-date headers must be signed");
    }
    if (headers.at("x-amz-date").size() != 1 || headers.at("x-amz-date")[0] != scope.amz_date) {
        return fail(ErrorCode::invalid_argument,
                    "sigv4: the x-amz-date header differs from the scope's date");
    }

    // Sized up front: a reallocation would leave an unwiped copy behind.
    size_t headers_size = 0;
    for (const auto& [name, values] : headers) {
        headers_size += name.size() + 2 + values.size();
        for (const auto& value : values) headers_size += value.size();
    }
    canonical_headers.reserve(headers_size);
    SigV4Signature out;
    for (const auto& [name, values] : headers) {
        canonical_headers.append(name).append(":");
        for (size_t i = 0; i < values.size(); ++i) {
            if (i > 0) canonical_headers += ',';
            canonical_headers += values[i];
        }
        canonical_headers += '\n';
        if (!out.signed_headers.empty()) out.signed_headers += ';';
        out.signed_headers += name;
    }

    const std::string uri = sigv4_canonical_uri(request.path);
    const std::string query = sigv4_canonical_query(request.query);
    const std::string payload_hash = crypto::sha256_hex(request.payload);
    std::string& creq = out.canonical_request;
    creq.reserve(request.method.size() + uri.size() + query.size() + canonical_headers.size() +
                 out.signed_headers.size() + payload_hash.size() + 5);
    for (std::string_view part :
         {std::string_view(request.method), std::string_view("\n"), std::string_view(uri),
          std::string_view("\n"), std::string_view(query), std::string_view("\n"),
          std::string_view(canonical_headers), std::string_view("\n"),
          std::string_view(out.signed_headers), std::string_view("\n"),
          std::string_view(payload_hash)}) {
        creq.append(part);
    }

    const std::string date = scope.amz_date.substr(0, 8);
    const std::string credential_scope =
        date + "/" + scope.region + "/" + scope.service + "/aws4_request";
    out.string_to_sign = "AWS4-HMAC-SHA256\n" + scope.amz_date + "\n" + credential_scope + "\n" +
                         crypto::sha256_hex(out.canonical_request);

    // kDate = HMAC("AWS4" + secret, date); kRegion; kService; kSigning.
    KeyChain keys;
    Key signature{};
    {
        std::string first_key;
        first_key.reserve(4 + secret_access_key.size());  // no reallocation leaves a copy behind
        first_key = "AWS4";
        first_key += secret_access_key.reveal();
        const bool ok = hmac(first_key, date, keys.a);
        wipe(first_key);
        if (!ok) return fail(ErrorCode::internal, "sigv4: HMAC failed");
    }
    if (!hmac(view(keys.a), scope.region, keys.b) || !hmac(view(keys.b), scope.service, keys.a) ||
        !hmac(view(keys.a), "aws4_request", keys.b) ||
        !hmac(view(keys.b), out.string_to_sign, signature)) {
        return fail(ErrorCode::internal, "sigv4: HMAC failed");
    }
    out.signature = crypto::hex_encode(view(signature));
    out.authorization = "AWS4-HMAC-SHA256 Credential=" + std::string(access_key_id) + "/" +
                        credential_scope + ", SignedHeaders=" + out.signed_headers +
                        ", Signature=" + out.signature;
    return out;
}

}  // namespace sa::agent::secrets::aws
