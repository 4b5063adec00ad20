// Fuzz target: the hub parses metadata chunks uploaded by agents.
#include <cstdint>
#include <string_view>

#include "common/metadata/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    auto tables = sa::metadata::parse_chunk(input);
    if (tables) {
        // Whatever parses must serialise and parse back to the same thing.
        for (const auto& t : *tables) {
            auto again = sa::metadata::table_from_json(sa::metadata::to_json(t));
            if (!again || sa::metadata::to_json(*again) != sa::metadata::to_json(t))
                __builtin_trap();
        }
    }
    return 0;
}
