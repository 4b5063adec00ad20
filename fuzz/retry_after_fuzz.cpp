// Fuzz target: Retry-After comes from the hub (or anything in between).
#include <cstdint>
#include <string_view>

#include "agent/control/backoff.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    auto delay = sa::agent::control::parse_retry_after(input, 1764403200);
    if (delay && (delay->count() < 0 || delay->count() > 300)) __builtin_trap();
    return 0;
}
