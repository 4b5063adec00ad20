#include "agent/secrets/file_secret_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agent/secrets/secret_stores.h"
#include "common/crypto/random.h"

namespace sa::agent::secrets {
namespace {

namespace fs = std::filesystem;

class FileSecretStoreTest : public ::testing::Test {
  protected:
    void SetUp() override {
        root_ = fs::temp_directory_path() / ("sa-secrets-" + crypto::random_token(8));
        dir_ = root_ / "store";
        fs::create_directories(dir_);
    }
    void TearDown() override {
        std::error_code ec;
        fs::permissions(dir_ / "locked", fs::perms::owner_all, ec);
        fs::remove_all(root_, ec);
    }
    void write(const fs::path& path, const std::string& content) {
        fs::create_directories(path.parent_path());
        std::ofstream(path, std::ios::binary) << content;
    }
    Result<SecretValue> read(const std::string& ref_text) {
        auto ref = parse_secret_ref(ref_text);
        if (!ref) return std::unexpected(ref.error());
        return store().read(*ref);
    }
    FileSecretStore store() { return FileSecretStore("files", dir_.string()); }

    fs::path root_;
    fs::path dir_;
};

TEST(SecretRefTest, ParsesStorePathAndKey) {
    auto ref = parse_secret_ref("files/hub/client#auth.secret");
    ASSERT_TRUE(ref) << ref.error().describe();
    EXPECT_EQ(ref->store, "files");
    EXPECT_EQ(ref->path, "hub/client");
    EXPECT_EQ(ref->key, "auth.secret");
    EXPECT_EQ(ref->to_string(), "files/hub/client#auth.secret");

    auto plain = parse_secret_ref("files/x");
    ASSERT_TRUE(plain);
    EXPECT_EQ(plain->key, "");
}

TEST(SecretRefTest, RejectsMalformedReferences) {
    for (const char* bad :
         {"", "nostore", "/path", "files/", "files/x#", "files/x#a..b", "files/x#.a"}) {
        auto ref = parse_secret_ref(bad);
        EXPECT_FALSE(ref) << bad;
        if (!ref) {
            EXPECT_EQ(ref.error().code, ErrorCode::invalid_argument);
        }
    }
}

TEST_F(FileSecretStoreTest, ReadsFileAndTrimsOneNewline) {
    write(dir_ / "hub-client-secret", "s3cr3t\n\n");
    auto v = read("files/hub-client-secret");
    ASSERT_TRUE(v) << v.error().describe();
    EXPECT_EQ(v->reveal(), "s3cr3t\n");
}

TEST_F(FileSecretStoreTest, ReadsNestedPath) {
    write(dir_ / "db" / "password", "pw");
    auto v = read("files/db/password");
    ASSERT_TRUE(v) << v.error().describe();
    EXPECT_EQ(v->reveal(), "pw");
}

TEST_F(FileSecretStoreTest, ExtractsDottedJsonKey) {
    write(dir_ / "bundle.json", R"({"db": {"password": "pw1", "port": 5432}, "token": "t"})"
                                "\n");
    auto v = read("files/bundle.json#db.password");
    ASSERT_TRUE(v) << v.error().describe();
    EXPECT_EQ(v->reveal(), "pw1");
    auto top = read("files/bundle.json#token");
    ASSERT_TRUE(top);
    EXPECT_EQ(top->reveal(), "t");

    auto missing = read("files/bundle.json#db.user");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::not_found);

    auto not_string = read("files/bundle.json#db.port");
    ASSERT_FALSE(not_string);
    EXPECT_EQ(not_string.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(not_string.error().message.find("5432"), std::string::npos);

    auto object = read("files/bundle.json#db");
    ASSERT_FALSE(object);
    EXPECT_EQ(object.error().message.find("pw1"), std::string::npos);
}

TEST_F(FileSecretStoreTest, InvalidJsonDoesNotLeakContent) {
    write(dir_ / "notjson", "hunter2-not-json");
    auto v = read("files/notjson#key");
    ASSERT_FALSE(v);
    EXPECT_EQ(v.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(v.error().message.find("hunter2"), std::string::npos);
}

TEST_F(FileSecretStoreTest, MissingFileIsNotFoundNamingStoreAndPath) {
    auto v = read("files/nope");
    ASSERT_FALSE(v);
    EXPECT_EQ(v.error().code, ErrorCode::not_found);
    EXPECT_NE(v.error().message.find("\"files\""), std::string::npos);
    EXPECT_NE(v.error().message.find("nope"), std::string::npos);
}

TEST_F(FileSecretStoreTest, RefusesEscapingPaths) {
    write(root_ / "outside", "not-yours");
    for (const char* path : {"../outside", "a/../../outside", "/etc/passwd"}) {
        auto v = store().read(SecretRef{"files", path, ""});
        ASSERT_FALSE(v) << path;
        EXPECT_EQ(v.error().code, ErrorCode::invalid_argument) << path;
    }
}

TEST_F(FileSecretStoreTest, RefusesSymlinkOutOfStore) {
    write(root_ / "outside", "not-yours");
    fs::create_symlink(root_ / "outside", dir_ / "link");
    auto v = read("files/link");
    ASSERT_FALSE(v);
    EXPECT_EQ(v.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(v.error().message.find("not-yours"), std::string::npos);
}

TEST_F(FileSecretStoreTest, UnreadableFileIsPermissionDenied) {
    write(dir_ / "locked" / "s", "x");
    fs::permissions(dir_ / "locked", fs::perms::none);
    if (::geteuid() != 0) {
        auto v = read("files/locked/s");
        ASSERT_FALSE(v);
        EXPECT_EQ(v.error().code, ErrorCode::permission_denied);
        return;
    }
    // Root reads files regardless of mode: check as "nobody" in a child,
    // reporting through the exit code (0 = permission_denied as expected).
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(10);
        auto v = read("files/locked/s");
        ::_exit(v ? 1 : (v.error().code == ErrorCode::permission_denied ? 0 : 2));
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(FileSecretStoreTest, DirectoryIsNotASecret) {
    fs::create_directories(dir_ / "sub");
    auto v = read("files/sub");
    ASSERT_FALSE(v);
    EXPECT_EQ(v.error().code, ErrorCode::invalid_argument);
}

// The Kubernetes layout: NAME -> ..data/NAME, ..data -> ..TIMESTAMP. The
// kubelet rotates by creating a new timestamped directory and renaming a new
// ..data symlink over the old one.
TEST_F(FileSecretStoreTest, FollowsKubernetesDataSymlinkSwap) {
    write(dir_ / "..2024_01_01" / "client-secret", "v1\n");
    fs::create_directory_symlink("..2024_01_01", dir_ / "..data");
    fs::create_symlink("..data/client-secret", dir_ / "client-secret");

    auto first = read("files/client-secret");
    ASSERT_TRUE(first) << first.error().describe();
    EXPECT_EQ(first->reveal(), "v1");

    write(dir_ / "..2024_02_01" / "client-secret", "v2\n");
    fs::create_directory_symlink("..2024_02_01", dir_ / "..data_tmp");
    fs::rename(dir_ / "..data_tmp", dir_ / "..data");
    fs::remove_all(dir_ / "..2024_01_01");

    auto second = read("files/client-secret");
    ASSERT_TRUE(second) << second.error().describe();
    EXPECT_EQ(second->reveal(), "v2");
}

TEST_F(FileSecretStoreTest, RegistryDispatchesByStoreName) {
    write(dir_ / "k", "value");
    SecretStores stores;
    stores.add("files", std::make_unique<FileSecretStore>("files", dir_.string()));
    EXPECT_TRUE(stores.has("files"));
    auto v = stores.read(SecretRef{"files", "k", ""});
    ASSERT_TRUE(v);
    EXPECT_EQ(v->reveal(), "value");

    auto unknown = stores.read(SecretRef{"vault", "k", ""});
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, ErrorCode::not_found);
}

}  // namespace
}  // namespace sa::agent::secrets
