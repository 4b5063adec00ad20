#include "agent/auth/client_credentials.h"

#include <gtest/gtest.h>

namespace sa::agent::auth {
namespace {

TEST(ClientCredentialsTest, FormUrlEncoding) {
    EXPECT_EQ(form_urlencode("s6BhdRkqt3"), "s6BhdRkqt3");
    EXPECT_EQ(form_urlencode("a b+c%d:e/f"), "a+b%2Bc%25d%3Ae%2Ff");
    EXPECT_EQ(form_urlencode("*-._~"), "*-._%7E");
    EXPECT_EQ(form_urlencode("\xc3\xa9"), "%C3%A9");
    EXPECT_EQ(form_urlencode(""), "");
}

// RFC 6749 section 2.3.1: client_id "s6BhdRkqt3", secret "gX1fBat3bV".
TEST(ClientCredentialsTest, BasicHeaderMatchesRfc6749Example) {
    const auto secret = secrets::SecretValue::copy_of("gX1fBat3bV");
    EXPECT_EQ(basic_credentials("s6BhdRkqt3", secret).reveal(), "czZCaGRSa3F0MzpnWDFmQmF0M2JW");
}

TEST(ClientCredentialsTest, BasicHeaderEncodesBeforeJoining) {
    // "id:x" / "p w:%" -> "id%3Ax:p+w%3A%25" so the server can split on ':'.
    const auto secret = secrets::SecretValue::copy_of("p w:%");
    EXPECT_EQ(basic_credentials("id:x", secret).reveal(), "aWQlM0F4OnArdyUzQSUyNQ==");
}

}  // namespace
}  // namespace sa::agent::auth
