#pragma once
// client_secret_basic (RFC 6749 section 2.3.1): the client id and secret are
// each form-url-encoded (application/x-www-form-urlencoded, Appendix B)
// BEFORE being joined with ':' and base64-encoded. Servers form-decode them,
// so skipping the encoding breaks secrets containing ':', '%', '+' or spaces.
#include <string>
#include <string_view>

#include "agent/secrets/secret_value.h"

namespace sa::agent::auth {

// application/x-www-form-urlencoded: ALPHA / DIGIT / "*-._" stay, space
// becomes '+', every other byte %XX (upper-case hex).
std::string form_urlencode(std::string_view text);
// The same, appended to out (which the caller reserves when text is secret,
// so that no reallocation leaves a copy behind).
void append_form_urlencoded(std::string& out, std::string_view text);

// base64(form_urlencode(client_id) ":" form_urlencode(secret)): the token
// after "Basic ". Intermediate copies are wiped.
secrets::SecretValue basic_credentials(std::string_view client_id,
                                       const secrets::SecretValue& client_secret);

}  // namespace sa::agent::auth
