#include "agent/auth/client_credentials.h"

#include "common/crypto/encoding.h"

namespace sa::agent::auth {

void append_form_urlencoded(std::string& out, std::string_view text) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '*' || c == '-' || c == '.' || c == '_') {
            out.push_back(ch);
        } else if (c == ' ') {
            out.push_back('+');
        } else {
            out.push_back('%');
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 0x0f]);
        }
    }
}

std::string form_urlencode(std::string_view text) {
    std::string out;
    out.reserve(text.size() * 3);
    append_form_urlencoded(out, text);
    return out;
}

secrets::SecretValue basic_credentials(std::string_view client_id,
                                       const secrets::SecretValue& client_secret) {
    // Reserved for the worst case so no reallocation leaves a copy behind.
    std::string joined;
    joined.reserve(client_id.size() * 3 + 1 + client_secret.size() * 3);
    append_form_urlencoded(joined, client_id);
    joined.push_back(':');
    append_form_urlencoded(joined, client_secret.reveal());
    std::string encoded = crypto::base64_encode(joined);
    secrets::wipe(joined);
    return secrets::SecretValue::from(std::move(encoded));
}

}  // namespace sa::agent::auth
