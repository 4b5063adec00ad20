#include "agent/secrets/gcp/crc32c.h"

#include <gtest/gtest.h>

#include <string>

namespace sa::agent::secrets::gcp {
namespace {

TEST(Crc32cTest, StandardCheckValue) {
    EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
}

TEST(Crc32cTest, Rfc3720TestVectors) {
    // RFC 3720 (iSCSI) appendix B.4.
    EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);
    EXPECT_EQ(crc32c(std::string(32, '\xFF')), 0x62A8AB43u);
    std::string ascending;
    for (int i = 0; i < 32; ++i) ascending += static_cast<char>(i);
    EXPECT_EQ(crc32c(ascending), 0x46DD794Eu);
}

TEST(Crc32cTest, EmptyInputIsZero) {
    EXPECT_EQ(crc32c(""), 0u);
}

}  // namespace
}  // namespace sa::agent::secrets::gcp
