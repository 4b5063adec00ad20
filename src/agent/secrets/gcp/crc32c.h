#pragma once
// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum Secret
// Manager sends with every payload (SecretPayload.dataCrc32c), so a payload
// damaged on the way is refused instead of used.
#include <cstdint>
#include <string_view>

namespace sa::agent::secrets::gcp {

// crc32c("123456789") == 0xE3069283 (the standard check value).
uint32_t crc32c(std::string_view bytes);

}  // namespace sa::agent::secrets::gcp
