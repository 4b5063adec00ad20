// Fuzz target: the agent verifies job JWS from the hub; the hub verifies
// bearer tokens from agents.
#include <cstdint>
#include <string_view>

#include "common/jose/jws.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const auto key = sa::crypto::Ed25519PrivateKey::generate();
    static const auto pub = key.public_key();
    std::string_view input(reinterpret_cast<const char*>(data), size);
    (void)sa::jose::decode_unverified(input);
    auto verified = sa::jose::verify(input, pub);
    if (verified) __builtin_trap();  // nothing but our own signature may verify
    if (auto decoded = sa::jose::decode_unverified(input)) {
        (void)sa::jose::check_claims(
            *decoded, {.issuer = "agent-hub", .audience = "a", .type = "t", .now = 1});
    }
    return 0;
}
