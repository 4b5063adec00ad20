#include "agent/audit/field_hasher.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/stat.h>

#include "agent/audit/test_support.h"
#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"

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

namespace sa::agent::audit {
namespace {

using namespace testing;

const std::string kSalt = "0123456789abcdef0123456789ABCDEF+salt";  // 37 bytes

std::string expected_hmac(std::string_view salt, std::string_view value) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), salt.data(), static_cast<int>(salt.size()),
         reinterpret_cast<const unsigned char*>(value.data()), value.size(), out, &len);
    return std::string(kHmacPrefix) +
           crypto::base64_encode(std::string_view(reinterpret_cast<char*>(out), len));
}

secrets::SecretValue salt_text(std::string_view raw, std::string_view around = "") {
    return secrets::SecretValue::from(std::string(around) + crypto::base64_encode(raw) +
                                      std::string(around));
}

FieldHasher from_store(std::string_view raw, std::string_view reference = "files/audit-salt") {
    auto h = FieldHasher::from_secret(salt_text(raw), reference);
    if (!h) throw std::runtime_error(h.error().describe());
    return std::move(*h);
}

TEST(FieldHasherSecretTest, SaltFromTheStoreIsTheDecodedBase64) {
    auto h = FieldHasher::from_secret(salt_text(kSalt, "\n "), "files/audit-salt");
    ASSERT_TRUE(h) << h.error().describe();
    EXPECT_EQ(h->hash("alice@db-prod-01"), expected_hmac(kSalt, "alice@db-prod-01"));
    EXPECT_EQ(h->source(), "secret-store:" + crypto::sha256_hex("files/audit-salt"));
    // The same reference and salt on another agent: the same HMACs.
    EXPECT_EQ(from_store(kSalt).hash("x"), h->hash("x"));
}

TEST(FieldHasherSecretTest, RefusesWeakOrMalformedSaltsWithoutQuotingThem) {
    auto check = [](secrets::SecretValue text, std::string_view needle) {
        auto h = FieldHasher::from_secret(text, "files/audit-salt");
        EXPECT_FALSE(h);
        if (h) return std::string();
        EXPECT_EQ(h.error().code, ErrorCode::invalid_argument);
        EXPECT_EQ(h.error().message.rfind("audit.hmac_salt files/audit-salt: ", 0), 0u);
        if (!needle.empty()) {
            EXPECT_EQ(h.error().message.find(needle), std::string::npos);
        }
        return h.error().message;
    };
    EXPECT_NE(check(secrets::SecretValue::from(std::string("not base64 at all! qwerty")), "qwerty")
                  .find("not standard base64"),
              std::string::npos);
    EXPECT_NE(check(salt_text(std::string(31, 'k')), "").find("at least 32 bytes (it has 31)"),
              std::string::npos);
    EXPECT_NE(check(salt_text(std::string(48, '\0')), "").find("no entropy"), std::string::npos);
    EXPECT_FALSE(FieldHasher::from_secret(secrets::SecretValue{}, "files/audit-salt"));
}

TEST(FieldHasherSecretTest, DirectoryIsBoundToItsSaltSource) {
    TempDir dir;
    auto store = from_store(kSalt);
    ASSERT_TRUE(bind_salt_source(dir.str(), store, /*record=*/true));
    EXPECT_TRUE(fs::exists(dir.path() / kSaltSourceFile));
    EXPECT_FALSE(fs::exists(dir.path() / kSaltFile));
    const std::string recorded = read_all(dir.path() / kSaltSourceFile);
    EXPECT_NE(recorded.find(store.source()), std::string::npos);
    EXPECT_EQ(recorded.find(crypto::base64_encode(kSalt)), std::string::npos);
    EXPECT_TRUE(bind_salt_source(dir.str(), from_store(kSalt), true));

    auto other_ref = bind_salt_source(dir.str(), from_store(kSalt, "files/other-salt"), true);
    ASSERT_FALSE(other_ref);
    EXPECT_EQ(other_ref.error().code, ErrorCode::conflict);
    EXPECT_NE(other_ref.error().message.find("start a new audit directory"), std::string::npos)
        << other_ref.error().message;

    auto rotated = bind_salt_source(dir.str(), from_store(kSalt + "2"), true);
    ASSERT_FALSE(rotated);
    EXPECT_EQ(rotated.error().code, ErrorCode::conflict);
    EXPECT_NE(rotated.error().message.find("now holds a different salt"), std::string::npos)
        << rotated.error().message;

    // Back to the file salt: refused too (load_or_create made hmac.salt, but
    // the directory's HMACs were made with the store's salt).
    auto file = FieldHasher::load_or_create(dir.str());
    ASSERT_TRUE(file);
    auto back = bind_salt_source(dir.str(), *file, true);
    ASSERT_FALSE(back);
    EXPECT_NE(back.error().message.find("was written with the secret-store reference"),
              std::string::npos)
        << back.error().message;
}

TEST(FieldHasherSecretTest, ADirectoryWithTheFileSaltRefusesTheStoreSalt) {
    TempDir dir;
    auto file = FieldHasher::load_or_create(dir.str());
    ASSERT_TRUE(file);
    // Before salt sources were recorded: hmac.salt alone marks the file source.
    auto legacy = bind_salt_source(dir.str(), from_store(kSalt), /*record=*/false);
    ASSERT_FALSE(legacy);
    EXPECT_EQ(legacy.error().code, ErrorCode::conflict);
    EXPECT_NE(legacy.error().message.find("was written with the salt file hmac.salt"),
              std::string::npos)
        << legacy.error().message;
    EXPECT_FALSE(fs::exists(dir.path() / kSaltSourceFile));
    ASSERT_TRUE(bind_salt_source(dir.str(), *file, true));
    EXPECT_TRUE(fs::exists(dir.path() / kSaltSourceFile));
    EXPECT_FALSE(bind_salt_source(dir.str(), from_store(kSalt), true));
}

TEST(FieldHasherSecretTest, AuditLogWithAStoreSaltHashesWithItAndCreatesNoSaltFile) {
    TempDir tmp;
    auto key = make_key(tmp.path() / "state");
    const std::string dir = (tmp.path() / "audit").string();
    {
        auto o = test_options();
        o.hasher = std::make_shared<const FieldHasher>(from_store(kSalt));
        auto opened = AuditLog::open(dir, std::move(o), key);
        ASSERT_TRUE(opened) << opened.error().describe();
        EXPECT_EQ(opened->log->hmac("db-prod-01.internal"),
                  expected_hmac(kSalt, "db-prod-01.internal"));
        ASSERT_TRUE(opened->log->append_durable("test.event", {{"n", 1}}));
        ASSERT_TRUE(opened->log->close());
    }
    EXPECT_FALSE(fs::exists(fs::path(dir) / kSaltFile));
    // Reopened without the store salt: refused, nothing created.
    auto file_salt = AuditLog::open(dir, test_options(), key);
    ASSERT_FALSE(file_salt);
    EXPECT_EQ(file_salt.error().code, ErrorCode::conflict);
    auto o = test_options();
    o.hasher = std::make_shared<const FieldHasher>(from_store(kSalt, "files/elsewhere"));
    auto other = AuditLog::open(dir, std::move(o), key);
    ASSERT_FALSE(other);
    EXPECT_EQ(other.error().code, ErrorCode::conflict);
}

}  // namespace
}  // namespace sa::agent::audit
