#include "agent/secrets/gcp/crc32c.h"

#include <array>

namespace sa::agent::secrets::gcp {
namespace {

// Byte-at-a-time table: payloads are at most 64 KiB, so speed is no concern.
constexpr std::array<uint32_t, 256> make_table() {
    std::array<uint32_t, 256> table{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t crc = i;
        for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) ? 0x82F63B78u : 0u);
        table[i] = crc;
    }
    return table;
}

constexpr std::array<uint32_t, 256> kTable = make_table();

}  // namespace

uint32_t crc32c(std::string_view bytes) {
    uint32_t crc = 0xFFFFFFFFu;
    for (unsigned char c : bytes) crc = (crc >> 8) ^ kTable[(crc ^ c) & 0xFFu];
    return crc ^ 0xFFFFFFFFu;
}

}  // namespace sa::agent::secrets::gcp
