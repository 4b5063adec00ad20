// Fuzz target: the hub parses the Content-Digest header of chunk uploads.
#include <cstdint>
#include <string_view>

#include "common/protocol/content_digest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    auto digest = sa::protocol::parse_content_digest_sha256(input);
    if (digest && digest->size() != 32) __builtin_trap();
    return 0;
}
