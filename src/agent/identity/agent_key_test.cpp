#include "agent/identity/agent_key.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "common/crypto/random.h"
#include "common/util/files.h"

namespace sa::agent::identity {
namespace {

namespace fs = std::filesystem;

class AgentKeyTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("sa-identity-" + crypto::random_token(8));
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string state() const { return (dir_ / "state").string(); }
    fs::path dir_;
};

unsigned mode_of(const fs::path& p) {
    struct stat sb {};
    EXPECT_EQ(::stat(p.c_str(), &sb), 0);
    return sb.st_mode & 0777u;
}

TEST_F(AgentKeyTest, CreatesKeyOnFirstStartAndReloadsIt) {
    auto first = AgentKey::load_or_create(state());
    ASSERT_TRUE(first) << first.error().describe();
    EXPECT_EQ(mode_of(fs::path(state()) / kPrivateKeyFile), 0600u);
    EXPECT_EQ(mode_of(fs::path(state()) / kPublicKeyFile), 0644u);
    EXPECT_EQ(mode_of(state()), 0700u);

    auto second = AgentKey::load_or_create(state());
    ASSERT_TRUE(second) << second.error().describe();
    EXPECT_EQ(first->key_id(), second->key_id());
    EXPECT_EQ(first->public_key().raw(), second->public_key().raw());
}

TEST_F(AgentKeyTest, PublishedPublicKeyVerifiesSignatures) {
    auto key = AgentKey::load_or_create(state());
    ASSERT_TRUE(key);
    auto pub =
        crypto::Ed25519PublicKey::from_pem_file((fs::path(state()) / kPublicKeyFile).string());
    ASSERT_TRUE(pub) << pub.error().describe();
    std::string sig = key->sign("checkpoint");
    EXPECT_EQ(sig.size(), 64u);
    EXPECT_TRUE(pub->verify("checkpoint", sig));
    EXPECT_FALSE(pub->verify("checkpoinT", sig));
    EXPECT_EQ(pub->key_id(), key->key_id());
}

TEST_F(AgentKeyTest, RefusesKeyReadableByOthers) {
    ASSERT_TRUE(AgentKey::load_or_create(state()));
    fs::path key_path = fs::path(state()) / kPrivateKeyFile;
    ASSERT_EQ(::chmod(key_path.c_str(), 0644), 0);
    auto again = AgentKey::load_or_create(state());
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, ErrorCode::permission_denied);
    EXPECT_NE(again.error().message.find(key_path.string()), std::string::npos);
    EXPECT_NE(again.error().message.find("0644"), std::string::npos);
}

TEST_F(AgentKeyTest, RewritesMissingPublicKey) {
    auto key = AgentKey::load_or_create(state());
    ASSERT_TRUE(key);
    fs::remove(fs::path(state()) / kPublicKeyFile);
    ASSERT_TRUE(AgentKey::load_or_create(state()));
    auto pem = util::read_file((fs::path(state()) / kPublicKeyFile).string());
    ASSERT_TRUE(pem);
    EXPECT_EQ(*pem, key->public_key().pem());
}

TEST_F(AgentKeyTest, RejectsGarbageKeyFile) {
    ASSERT_TRUE(util::make_dirs(state(), 0700));
    ASSERT_TRUE(
        util::write_file_atomic((fs::path(state()) / kPrivateKeyFile).string(), "not a key", 0600));
    auto key = AgentKey::load_or_create(state());
    ASSERT_FALSE(key);
    EXPECT_NE(key.error().message.find(kPrivateKeyFile), std::string::npos);
}

TEST_F(AgentKeyTest, KeyFromTheSecretStoreIsUsedAndNeverWrittenToState) {
    const auto stored = crypto::Ed25519PrivateKey::generate();
    fs::create_directories(dir_);
    const std::string pem_file = (dir_ / "key-from-store.pem").string();
    ASSERT_TRUE(stored.save_pem_file(pem_file));
    auto pem = util::read_file(pem_file);
    ASSERT_TRUE(pem);

    auto key = AgentKey::from_pem(*pem, state());
    ASSERT_TRUE(key) << key.error().describe();
    EXPECT_EQ(key->public_key().raw(), stored.public_key().raw());
    EXPECT_FALSE(fs::exists(fs::path(state()) / kPrivateKeyFile));
    auto pub =
        crypto::Ed25519PublicKey::from_pem_file((fs::path(state()) / kPublicKeyFile).string());
    ASSERT_TRUE(pub);
    EXPECT_TRUE(pub->verify("checkpoint", key->sign("checkpoint")));
}

TEST_F(AgentKeyTest, BadKeyFromTheSecretStoreIsRefusedWithoutQuotingIt) {
    const std::string not_a_key =
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END PRIVATE KEY-----\n";
    auto key = AgentKey::from_pem(not_a_key, state());
    ASSERT_FALSE(key);
    EXPECT_EQ(key.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(key.error().message.find("c2VjcmV0"), std::string::npos);
    EXPECT_NE(key.error().message.find("not an Ed25519 private key"), std::string::npos);
}

}  // namespace
}  // namespace sa::agent::identity
