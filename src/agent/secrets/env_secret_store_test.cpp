#include "agent/secrets/env_secret_store.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "agent/secrets/secret_stores.h"

namespace sa::agent::secrets {
namespace {

// Sets one variable for a test and removes it after.
class ScopedVariable final {
  public:
    ScopedVariable(std::string name, const char* value) : name_(std::move(name)) {
        ::setenv(name_.c_str(), value, 1);
    }
    ~ScopedVariable() { ::unsetenv(name_.c_str()); }
    ScopedVariable(const ScopedVariable&) = delete;
    ScopedVariable& operator=(const ScopedVariable&) = delete;

  private:
    std::string name_;
};

SecretRef ref(const std::string& path, const std::string& key = "") {
    return SecretRef{"env", path, key};
}

TEST(EnvSecretStoreTest, ReadsThePrefixedVariableJustInTime) {
    EnvSecretStore store("env", "SA_TEST_");
    {
        const ScopedVariable variable("SA_TEST_HUB_SECRET", "first-value");
        auto value = store.read(ref("HUB_SECRET"));
        ASSERT_TRUE(value) << value.error().describe();
        EXPECT_EQ(value->reveal(), "first-value");
    }
    // Rotated (or removed) values are seen on the next read: nothing is cached.
    auto gone = store.read(ref("HUB_SECRET"));
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, ErrorCode::not_found);
    EXPECT_EQ(gone.error().message, "secret store \"env\" variable SA_TEST_HUB_SECRET: not set");
    const ScopedVariable rotated("SA_TEST_HUB_SECRET", "second-value");
    auto again = store.read(ref("HUB_SECRET"));
    ASSERT_TRUE(again);
    EXPECT_EQ(again->reveal(), "second-value");
}

TEST(EnvSecretStoreTest, JsonBundlesAndDottedKeys) {
    const ScopedVariable bundle("SA_TEST_DB", R"({"user":"reader","auth":{"password":"pw-42"}})");
    EnvSecretStore store("env", "SA_TEST_");
    auto password = store.read(ref("DB", "auth.password"));
    ASSERT_TRUE(password) << password.error().describe();
    EXPECT_EQ(password->reveal(), "pw-42");
    auto missing = store.read(ref("DB", "auth.token"));
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::not_found);
    EXPECT_EQ(missing.error().message.find("pw-42"), std::string::npos);
    auto not_string = store.read(ref("DB", "auth"));
    ASSERT_FALSE(not_string);
    EXPECT_EQ(not_string.error().code, ErrorCode::invalid_argument);

    const ScopedVariable plain("SA_TEST_PLAIN", "not-json-value");
    auto not_json = store.read(ref("PLAIN", "key"));
    ASSERT_FALSE(not_json);
    EXPECT_EQ(not_json.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(not_json.error().message.find("not-json-value"), std::string::npos)
        << not_json.error().message;
}

TEST(EnvSecretStoreTest, PathsThatAreNoVariableNamesAreRefused) {
    EnvSecretStore store("env", "");
    for (const char* bad : {"a/b", "1ABC", "A-B", "A B", "A=B"}) {
        auto value = store.read(ref(bad));
        ASSERT_FALSE(value) << bad;
        EXPECT_EQ(value.error().code, ErrorCode::invalid_argument) << bad;
    }
}

}  // namespace
}  // namespace sa::agent::secrets
