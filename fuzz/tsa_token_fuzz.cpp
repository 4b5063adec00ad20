// Fuzz target: RFC 3161 tokens stored next to checkpoints come back from an
// exported log, so for a verifier their DER is untrusted bytes.
#include <cstdint>
#include <string_view>

#include "agent/timestamp/tsa_client.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    auto claims = sa::agent::timestamp::read_token_claims(input);
    // Only a SHA-256 imprint is accepted, so a token that reads has 32 bytes.
    if (claims && claims->imprint.size() != 32) __builtin_trap();
    return 0;
}
