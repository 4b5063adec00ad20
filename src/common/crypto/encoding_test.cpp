#include "common/crypto/encoding.h"

#include <gtest/gtest.h>

#include "common/crypto/digest.h"

namespace sa::crypto {
namespace {

// RFC 4648 section 10 test vectors.
TEST(PercentEncode, UnreservedStayEverythingElseIsUpperHex) {
    EXPECT_EQ(percent_encode("AZaz09-._~"), "AZaz09-._~");
    EXPECT_EQ(percent_encode("a/b c?#%+="), "a%2Fb%20c%3F%23%25%2B%3D");
    EXPECT_EQ(percent_encode("\xC3\xA9"), "%C3%A9");
    EXPECT_EQ(percent_encode(std::string(1, '\0')), "%00");
    EXPECT_EQ(percent_encode(""), "");
}

TEST(Base64, Rfc4648Vectors) {
    const std::pair<const char*, const char*> vectors[] = {{"", ""},
                                                           {"f", "Zg=="},
                                                           {"fo", "Zm8="},
                                                           {"foo", "Zm9v"},
                                                           {"foob", "Zm9vYg=="},
                                                           {"fooba", "Zm9vYmE="},
                                                           {"foobar", "Zm9vYmFy"}};
    for (auto [plain, encoded] : vectors) {
        EXPECT_EQ(base64_encode(plain), encoded);
        EXPECT_EQ(base64_decode(encoded), plain);
    }
}

TEST(Base64Url, RoundTripAllBytes) {
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    std::string enc = base64url_encode(all);
    EXPECT_EQ(enc.find_first_of("+/="), std::string::npos);
    EXPECT_EQ(base64url_decode(enc), all);
}

TEST(Base64Url, RejectsBadInput) {
    EXPECT_FALSE(base64url_decode("Zg=="));  // padding is not base64url
    EXPECT_FALSE(base64url_decode("Z"));     // impossible length
    EXPECT_FALSE(base64url_decode("Zh"));    // non-zero trailing bits
    EXPECT_FALSE(base64url_decode("a+b/"));  // standard alphabet
    EXPECT_FALSE(base64_decode("Zm9"));      // missing padding
}

// FIPS 180-2 / NIST example vectors.
TEST(Sha256, NistVectors) {
    EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha256_hex("abc"),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    Sha256 h;
    h.update("ab");
    h.update("c");
    EXPECT_EQ(hex_encode(h.finish()), sha256_hex("abc"));
}

TEST(ConstantTime, Compare) {
    EXPECT_TRUE(equal_constant_time("abc", "abc"));
    EXPECT_FALSE(equal_constant_time("abc", "abd"));
    EXPECT_FALSE(equal_constant_time("abc", "ab"));
}

}  // namespace
}  // namespace sa::crypto
