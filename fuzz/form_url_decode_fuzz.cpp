// Fuzz target: the hub decodes client credentials and token request bodies.
#include <cstdint>
#include <string_view>

#include "hub/server/api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    auto decoded = sa::hub::server::form_url_decode(input);
    if (decoded && decoded->size() > input.size()) __builtin_trap();
    return 0;
}
