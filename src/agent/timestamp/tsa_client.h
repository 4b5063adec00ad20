#pragma once
// RFC 3161 trusted timestamps: the audit log asks a Time-Stamp Authority to
// vouch that a checkpoint's hash existed at a time, and stores the token so
// that anyone holding the TSA's CA certificate can check it offline.
//
// SECURITY NOTE: the request goes out through the egress layer like every
// other connection (https only, TLS >= 1.2). The reply is checked against the
// request (message imprint, nonce, version) and its signature against the
// TSA CA configured locally; a token that fails any check is never returned.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "agent/egress/http.h"
#include "common/result.h"

namespace sa::agent::timestamp {

struct Token {
    std::string der;            // the TimeStampToken (CMS SignedData), DER
    int64_t gen_time_unix = 0;  // genTime from the TSTInfo, seconds
};

// Something that time-stamps a digest: TsaClient, or a fake in tests.
class Timestamper {
  public:
    virtual ~Timestamper() = default;
    // Time-stamps a SHA-256 digest (32 raw bytes) and returns a token that
    // has been checked against the request. Errors: unavailable (try again
    // later), integrity (a bad reply: never to be stored), invalid_argument.
    virtual Result<Token> timestamp(std::string_view sha256_digest) = 0;
};

class TsaClient final : public Timestamper {
  public:
    // transport and its lifetime belong to the caller. tsa_ca_file: PEM of the
    // CA(s) that issue the TSA's signing certificate. timeout bounds one
    // request (connect, send, TSA work, reply).
    TsaClient(egress::Transport& transport, std::string url, std::string tsa_ca_file,
              std::chrono::milliseconds timeout = std::chrono::seconds(30));

    // Time-stamps a SHA-256 digest (32 raw bytes). Errors: unavailable
    // (network, HTTP status, TSA refused), integrity (reply does not match the
    // request or its signature does not verify), invalid_argument.
    Result<Token> timestamp(std::string_view sha256_digest) override;

  private:
    egress::Transport& transport_;
    std::string url_;
    std::string tsa_ca_file_;
    std::chrono::milliseconds timeout_;
};

// Offline check of a stored token: its imprint must be sha256_digest and its
// signature must chain to a CA in tsa_ca_file with the timeStamping purpose.
// Returns the token's genTime. Errors: integrity, invalid_argument, io.
Result<int64_t> verify_token(std::string_view token_der, std::string_view sha256_digest,
                             const std::string& tsa_ca_file);

// What a token claims, read WITHOUT checking its signature: for structural
// checks when no TSA CA is at hand. Never trust it as proof of time.
struct TokenClaims {
    std::string imprint;        // the time-stamped SHA-256 digest, 32 raw bytes
    int64_t gen_time_unix = 0;  // genTime, seconds
};
// Errors: invalid_argument (not a DER timestamp token, no TSTInfo, an imprint
// that is not SHA-256, an unreadable genTime).
Result<TokenClaims> read_token_claims(std::string_view token_der);

}  // namespace sa::agent::timestamp
