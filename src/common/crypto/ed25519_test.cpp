#include "common/crypto/ed25519.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "common/crypto/random.h"

namespace sa::crypto {
namespace {

TEST(Ed25519, PemRoundTripAndFileMode) {
    auto dir = std::filesystem::temp_directory_path() / ("sa-ed25519-" + random_token(6));
    std::filesystem::create_directories(dir);
    auto key = Ed25519PrivateKey::generate();
    std::string path = (dir / "key.pem").string();
    ASSERT_TRUE(key.save_pem_file(path));
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    auto loaded = Ed25519PrivateKey::from_pem_file(path);
    ASSERT_TRUE(loaded);
    EXPECT_EQ(loaded->public_key().raw(), key.public_key().raw());
    auto pub = Ed25519PublicKey::from_pem(key.public_key().pem());
    ASSERT_TRUE(pub);
    EXPECT_TRUE(pub->verify("m", key.sign("m")));
    EXPECT_FALSE(pub->verify("n", key.sign("m")));
    EXPECT_EQ(pub->key_id(), key.public_key().key_id());
    std::filesystem::remove_all(dir);
}

TEST(Ed25519, BadInputsAreNamed) {
    auto missing = Ed25519PublicKey::from_pem_file("/nonexistent/key.pem");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::not_found);
    auto garbage = Ed25519PublicKey::from_pem("not a key");
    ASSERT_FALSE(garbage);
    EXPECT_EQ(garbage.error().code, ErrorCode::invalid_argument);
    EXPECT_FALSE(Ed25519PublicKey::from_raw("short"));
}

TEST(Random, UuidShape) {
    std::string u = uuid_v4();
    ASSERT_EQ(u.size(), 36u);
    EXPECT_EQ(u[14], '4');
    EXPECT_NE(uuid_v4(), u);
}

}  // namespace
}  // namespace sa::crypto
