#pragma once
// What the HTTP secret-store backends (vault/, aws/, azure/, gcp/, dapr/)
// share: the store-error contract for HTTP answers and transport failures.
// (CredentialReader is in secret_store.h; URL encoding is
// crypto::percent_encode in common/crypto/encoding.h.)
//
// Every backend reports one of three kinds a caller acts on:
//   not_found          the secret (or its key) does not exist: fix the reference
//   permission_denied  the store refused the agent's identity: fix the grant
//   unavailable        no usable answer right now: the only kind worth a retry
// plus invalid_argument for what no retry can fix (a malformed answer, a
// request the store calls bad). Messages name the store and path, never a
// value; an error body is quoted only through error_detail().
#include <string>
#include <string_view>

#include "agent/egress/http.h"
#include "agent/secrets/secret_store.h"
#include "common/crypto/encoding.h"

namespace sa::agent::secrets {

// "secret store \"NAME\" path \"PATH\"": the prefix of every error about one
// reference (the KEY is named by select_secret where it matters).
std::string store_where(std::string_view store_name, std::string_view path);

// The error for a non-2xx answer: 404 (and 410) -> not_found; 401, 403 ->
// permission_denied; 408, 425, 429 and 5xx -> unavailable; anything else ->
// invalid_argument. Message: "WHERE: HTTP STATUS" plus ": DETAIL" when
// detail is not empty (pass the vendor's error text through error_detail).
Error http_store_error(std::string_view where, long status, std::string_view detail = {});

// The error for a request that got no answer (what Transport::send
// returned): an egress policy refusal stays permission_denied (a retry
// cannot fix configuration), everything else becomes unavailable.
Error transport_store_error(std::string_view where, const Error& error);

// A vendor error text made safe to quote: at most max_chars bytes, control
// characters replaced by spaces, trimmed. Error bodies of secret managers
// carry messages, never secret values.
std::string error_detail(std::string_view text, size_t max_chars = 200);

}  // namespace sa::agent::secrets
