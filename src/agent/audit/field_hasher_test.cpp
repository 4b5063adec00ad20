#include "agent/audit/field_hasher.h"

#include <sys/stat.h>

#include "agent/audit/test_support.h"

namespace sa::agent::audit {
namespace {

using namespace testing;

TEST(FieldHasherTest, SameValueSameOutputAndValueNotVisible) {
    TempDir dir;
    auto h = FieldHasher::load_or_create(dir.str());
    ASSERT_TRUE(h) << h.error().describe();
    std::string a = h->hash("alice@db-prod-01");
    EXPECT_EQ(a, h->hash("alice@db-prod-01"));
    EXPECT_NE(a, h->hash("alice@db-prod-02"));
    EXPECT_TRUE(a.starts_with("hmac-sha256:"));
    EXPECT_EQ(a.find("alice"), std::string::npos);
    EXPECT_EQ(a.find("db-prod"), std::string::npos);

    auto again = FieldHasher::load(dir.str());
    ASSERT_TRUE(again);
    EXPECT_EQ(again->hash("alice@db-prod-01"), a);

    struct stat sb {};
    ASSERT_EQ(::stat((dir.path() / kSaltFile).c_str(), &sb), 0);
    EXPECT_EQ(sb.st_mode & 0777u, 0600u);
    EXPECT_EQ(sb.st_size, 32);
}

TEST(FieldHasherTest, DifferentSaltDirsGiveDifferentOutputs) {
    TempDir one;
    TempDir two;
    auto a = FieldHasher::load_or_create(one.str());
    auto b = FieldHasher::load_or_create(two.str());
    ASSERT_TRUE(a && b);
    EXPECT_NE(a->hash("hostname.internal"), b->hash("hostname.internal"));
}

TEST(FieldHasherTest, LoadDoesNotCreateASalt) {
    TempDir dir;
    auto h = FieldHasher::load(dir.str());
    ASSERT_FALSE(h);
    EXPECT_EQ(h.error().code, ErrorCode::not_found);
    EXPECT_FALSE(fs::exists(dir.path() / kSaltFile));
}

TEST(FieldHasherTest, RejectsWrongSizedSalt) {
    TempDir dir;
    std::ofstream(dir.path() / kSaltFile) << "short";
    auto h = FieldHasher::load(dir.str());
    ASSERT_FALSE(h);
    EXPECT_EQ(h.error().code, ErrorCode::integrity);
}

}  // namespace
}  // namespace sa::agent::audit
