#include "common/crypto/password_hash.h"

#include <gtest/gtest.h>

namespace sa::crypto {
namespace {

TEST(PasswordHash, VerifiesOnlyTheRightSecret) {
    ScryptParams fast{.n = 1 << 10, .r = 8, .p = 1};
    std::string stored = hash_password("s3cret", fast);
    EXPECT_EQ(stored.rfind("scrypt$1024$8$1$", 0), 0u);
    EXPECT_EQ(stored.find("s3cret"), std::string::npos);
    EXPECT_TRUE(verify_password("s3cret", stored));
    EXPECT_FALSE(verify_password("s3cret!", stored));
    EXPECT_NE(hash_password("s3cret", fast), stored);  // salted
}

TEST(PasswordHash, MalformedStoredHashNeverVerifies) {
    for (const char* bad : {"", "scrypt", "scrypt$1024$8$1$AAAA", "bcrypt$1$2$3$AAAA$AAAA",
                            "scrypt$x$8$1$AAAA$AAAA", "scrypt$1099511627776$8$1$AAAA$AAAA"}) {
        EXPECT_FALSE(verify_password("s3cret", bad)) << bad;
    }
}

}  // namespace
}  // namespace sa::crypto
