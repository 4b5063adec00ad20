// Fuzz target: the hub parses metadata chunks uploaded by agents.
#include <cstdint>
#include <string_view>

#include "common/metadata/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    auto records = sa::metadata::parse_chunk(input);
    if (records) {
        // Whatever parses must serialise and parse back to the same thing,
        // and have a fingerprint and a qualified name.
        for (const auto& r : *records) {
            auto again = sa::metadata::record_from_json(sa::metadata::to_json(r));
            if (!again || *again != r) __builtin_trap();
            if (sa::metadata::fingerprint(r).size() != 64) __builtin_trap();
        }
    }
    return 0;
}
