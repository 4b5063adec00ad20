// Fuzz target: the agent's YAML config parser must turn any input into a
// Config or an error naming a key, never an exception or a crash.
#include <cstdint>
#include <string_view>

#include "agent/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    auto config = sa::agent::config::parse_config(input);
    if (!config && config.error().message.empty()) __builtin_trap();
    return 0;
}
