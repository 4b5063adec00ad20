#include "common/protocol/content_digest.h"

#include <gtest/gtest.h>

#include "common/crypto/digest.h"

namespace sa::protocol {
namespace {

// RFC 9530 Appendix B.1: {"hello": "world"} with a trailing newline.
TEST(ContentDigest, Rfc9530Example) {
    std::string body = "{\"hello\": \"world\"}\n";
    EXPECT_EQ(content_digest_sha256(body),
              "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:");
}

TEST(ContentDigest, ParsesAmongOtherAlgorithms) {
    std::string body = "x";
    std::string field = "sha-512=:AAAA:, " + content_digest_sha256(body);
    auto raw = parse_content_digest_sha256(field);
    ASSERT_TRUE(raw);
    EXPECT_EQ(*raw, crypto::sha256(body));
}

TEST(ContentDigest, RejectsMalformed) {
    for (const char* bad : {"", "sha-256=abc", "sha-256=:!!:", "sha-256=:AAAA:", "md5=:AAAA:"}) {
        EXPECT_FALSE(parse_content_digest_sha256(bad)) << bad;
    }
}

}  // namespace
}  // namespace sa::protocol
