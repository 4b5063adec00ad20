#include "agent/secrets/gcp/gcp_secret_store.h"

#include <gtest/gtest.h>

#include <thread>

#include "agent/secrets/gcp/testing/gcp_test_server.h"
#include "agent/secrets/http_store.h"
#include "common/util/time.h"

namespace sa::agent::secrets::gcp {
namespace {

using testing::FakeClock;
using testing::FakeMetadataServer;
using testing::FakeSecretManager;
using testing::RecordingTransport;
using testing::TestNetwork;
using testing::TestServiceAccount;

constexpr const char* kValue = "db-p4ssw0rd-value";
constexpr const char* kJson =
    R"({"username":"reader","password":"json-p4ssw0rd","tls":{"key":"nested-s3cret"}})";

const TestServiceAccount& account() {
    static const TestServiceAccount a = TestServiceAccount::generate();
    return a;
}

// An error must name store and path and never carry a secret value.
void expect_safe(const Error& error, const std::string& path) {
    EXPECT_TRUE(error.message.starts_with(store_where("gsm", path))) << error.message;
    for (const char* value : {kValue, "json-p4ssw0rd", "nested-s3cret", "ya29."}) {
        EXPECT_EQ(error.message.find(value), std::string::npos) << error.message;
    }
}

class GcpSecretStoreTest : public ::testing::Test {
  protected:
    void SetUp() override {
        api_.add_version("db-password", "old-value");
        api_.add_version("db-password", kValue);
        api_.add_version("db-json", kJson);
        api_.start();
        metadata_.attach("agent@test-project.iam.gserviceaccount.com");
        metadata_.issue_to(&api_);
        metadata_.start();
        network_ = std::make_unique<TestNetwork>(api_.port(), metadata_.port());
    }
    void TearDown() override {
        api_.stop();
        metadata_.stop();
        EXPECT_TRUE(api_.problems().empty()) << api_.problems().front();
        EXPECT_TRUE(metadata_.problems().empty()) << metadata_.problems().front();
    }

    GcpSecretManagerSettings settings() const {
        GcpSecretManagerSettings s;
        s.project = "test-project";
        s.endpoint = api_.url();
        s.auth.metadata_url = metadata_.url();
        return s;
    }

    std::unique_ptr<GcpSecretManagerStore> store(GcpSecretManagerSettings s,
                                                 RecordingTransport** recorder = nullptr) {
        auto tokens = make_gcp_token_source(s, network_->transport(), nullptr, clock_);
        EXPECT_TRUE(tokens) << tokens.error().describe();
        std::unique_ptr<egress::Transport> transport = network_->transport();
        if (recorder != nullptr) {
            auto recording = std::make_unique<RecordingTransport>(std::move(transport));
            *recorder = recording.get();
            transport = std::move(recording);
        }
        auto made = GcpSecretManagerStore::create("gsm", std::move(s), std::move(transport),
                                                  std::move(*tokens));
        EXPECT_TRUE(made) << made.error().describe();
        return std::move(*made);
    }
    std::unique_ptr<GcpSecretManagerStore> store() { return store(settings()); }

    static Result<SecretValue> read(SecretStore& store, const std::string& path,
                                    const std::string& key = "") {
        return store.read(SecretRef{.store = "gsm", .path = path, .key = key});
    }

    FakeClock clock_{util::unix_seconds()};
    FakeSecretManager api_{"test-project", account()};
    FakeMetadataServer metadata_;
    std::unique_ptr<TestNetwork> network_;
};

TEST_F(GcpSecretStoreTest, ReadsTheLatestVersion) {
    RecordingTransport* recorder = nullptr;
    auto s = settings();
    s.timeout_seconds = 7;
    auto gsm = store(std::move(s), &recorder);
    auto value = read(*gsm, "db-password");
    ASSERT_TRUE(value) << value.error().describe();
    EXPECT_EQ(value->reveal(), kValue);
    const auto sent = recorder->sent();
    ASSERT_EQ(sent.size(), 1u);
    EXPECT_EQ(sent[0].method, "GET");
    EXPECT_EQ(sent[0].url,
              api_.url("/v1/projects/test-project/secrets/db-password/versions/latest:access"));
    EXPECT_EQ(sent[0].timeout, std::chrono::seconds(7));
    EXPECT_TRUE(sent[0].bearer);
    EXPECT_EQ(metadata_.token_requests(), 1);
}

TEST_F(GcpSecretStoreTest, ReadsAPinnedVersion) {
    auto gsm = store();
    auto value = read(*gsm, "db-password@1");
    ASSERT_TRUE(value) << value.error().describe();
    EXPECT_EQ(value->reveal(), "old-value");
    auto latest = read(*gsm, "db-password@latest");
    ASSERT_TRUE(latest);
    EXPECT_EQ(latest->reveal(), kValue);
}

TEST_F(GcpSecretStoreTest, SelectsJsonKeysIncludingDottedOnes) {
    auto gsm = store();
    auto whole = read(*gsm, "db-json");
    ASSERT_TRUE(whole);
    EXPECT_EQ(whole->reveal(), kJson);
    auto password = read(*gsm, "db-json", "password");
    ASSERT_TRUE(password) << password.error().describe();
    EXPECT_EQ(password->reveal(), "json-p4ssw0rd");
    auto nested = read(*gsm, "db-json", "tls.key");
    ASSERT_TRUE(nested) << nested.error().describe();
    EXPECT_EQ(nested->reveal(), "nested-s3cret");
    auto missing = read(*gsm, "db-json", "tls.cert");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::not_found);
    expect_safe(missing.error(), "db-json");
}

TEST_F(GcpSecretStoreTest, MissingSecretOrVersionIsNotFound) {
    auto gsm = store();
    for (const char* path : {"no-such-secret", "db-password@9"}) {
        auto value = read(*gsm, path);
        ASSERT_FALSE(value) << path;
        EXPECT_EQ(value.error().code, ErrorCode::not_found);
        EXPECT_NE(value.error().message.find(": HTTP 404: NOT_FOUND: Secret"), std::string::npos)
            << value.error().message;
        expect_safe(value.error(), path);
    }
}

TEST_F(GcpSecretStoreTest, DisabledOrDestroyedVersionIsNotFound) {
    api_.add_version("rotated", "v1", FakeSecretManager::State::disabled);
    api_.add_version("rotated", "v2", FakeSecretManager::State::destroyed);
    auto gsm = store();
    for (const char* path : {"rotated@1", "rotated"}) {
        auto value = read(*gsm, path);
        ASSERT_FALSE(value) << path;
        EXPECT_EQ(value.error().code, ErrorCode::not_found);
        EXPECT_NE(value.error().message.find("HTTP 400: FAILED_PRECONDITION: Secret Version"),
                  std::string::npos)
            << value.error().message;
        expect_safe(value.error(), path);
    }
}

TEST_F(GcpSecretStoreTest, DeniedSecretIsPermissionDenied) {
    api_.deny("db-password");
    auto gsm = store();
    auto value = read(*gsm, "db-password");
    ASSERT_FALSE(value);
    EXPECT_EQ(value.error().code, ErrorCode::permission_denied);
    EXPECT_NE(value.error().message.find("HTTP 403: PERMISSION_DENIED: Permission "
                                         "'secretmanager.versions.access' denied"),
              std::string::npos)
        << value.error().message;
    expect_safe(value.error(), "db-password");
}

TEST_F(GcpSecretStoreTest, ServerTroubleIsUnavailable) {
    auto gsm = store();
    api_.fail_next(503, R"({"error":{"code":503,"message":"The service is currently unavailable.",)"
                        R"("status":"UNAVAILABLE"}})");
    api_.fail_next(429, R"({"error":{"code":429,"message":"Quota exceeded for quota metric.",)"
                        R"("status":"RESOURCE_EXHAUSTED"}})");
    api_.fail_next(502, "<html>\n<b>Bad\tGateway</b></html>" + std::string(400, 'x'), "text/html");
    for (const char* expected : {"HTTP 503: UNAVAILABLE: The service is currently unavailable.",
                                 "HTTP 429: RESOURCE_EXHAUSTED: Quota exceeded",
                                 "HTTP 502: <html> <b>Bad Gateway</b></html>xxx"}) {
        auto value = read(*gsm, "db-password");
        ASSERT_FALSE(value) << expected;
        EXPECT_EQ(value.error().code, ErrorCode::unavailable);
        EXPECT_NE(value.error().message.find(expected), std::string::npos) << value.error().message;
        // Error bodies are quoted only through error_detail (at most 200 bytes).
        EXPECT_LT(value.error().message.size(), store_where("gsm", "db-password").size() + 220);
        expect_safe(value.error(), "db-password");
    }
    auto value = read(*gsm, "db-password");
    EXPECT_TRUE(value) << value.error().describe();
}

TEST_F(GcpSecretStoreTest, VendorInvalidArgumentIsInvalidArgument) {
    auto gsm = store();
    api_.fail_next(400, R"({"error":{"code":400,"message":"Invalid resource field value.",)"
                        R"("status":"INVALID_ARGUMENT"}})");
    auto value = read(*gsm, "db-password");
    ASSERT_FALSE(value);
    EXPECT_EQ(value.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(value.error().message.find("HTTP 400: INVALID_ARGUMENT: Invalid resource"),
              std::string::npos);
}

TEST_F(GcpSecretStoreTest, ConnectionRefusedIsUnavailable) {
    auto gsm = store();
    ASSERT_TRUE(read(*gsm, "db-password"));  // token cached
    api_.stop();
    auto value = read(*gsm, "db-password");
    ASSERT_FALSE(value);
    EXPECT_EQ(value.error().code, ErrorCode::unavailable);
    expect_safe(value.error(), "db-password");
}

TEST_F(GcpSecretStoreTest, MetadataServerDownIsUnavailable) {
    auto gsm = store();
    metadata_.stop();
    auto value = read(*gsm, "db-password");
    ASSERT_FALSE(value);
    EXPECT_EQ(value.error().code, ErrorCode::unavailable);
    EXPECT_NE(value.error().message.find("no access token: gcp metadata server"), std::string::npos)
        << value.error().message;
    expect_safe(value.error(), "db-password");
}

TEST_F(GcpSecretStoreTest, RevokedTokenIsReplacedOnce) {
    auto gsm = store();
    ASSERT_TRUE(read(*gsm, "db-password"));
    api_.revoke_tokens();
    auto value = read(*gsm, "db-password");
    ASSERT_TRUE(value) << value.error().describe();
    EXPECT_EQ(value->reveal(), kValue);
    EXPECT_EQ(metadata_.token_requests(), 2);
    EXPECT_EQ(api_.access_requests(), 3);
}

TEST_F(GcpSecretStoreTest, TokenRejectedTwiceIsPermissionDenied) {
    metadata_.issue_to(nullptr);  // tokens the API does not know
    auto gsm = store();
    auto value = read(*gsm, "db-password");
    ASSERT_FALSE(value);
    EXPECT_EQ(value.error().code, ErrorCode::permission_denied);
    EXPECT_NE(value.error().message.find("HTTP 401: UNAUTHENTICATED"), std::string::npos)
        << value.error().message;
    EXPECT_EQ(metadata_.token_requests(), 2);
    EXPECT_EQ(api_.access_requests(), 2);
    expect_safe(value.error(), "db-password");
}

TEST_F(GcpSecretStoreTest, TokenIsRefreshedBeforeItExpires) {
    metadata_.set_token_lifetime(3600);
    auto gsm = store();
    ASSERT_TRUE(read(*gsm, "db-password"));
    clock_.advance(3299);
    ASSERT_TRUE(read(*gsm, "db-password"));
    EXPECT_EQ(metadata_.token_requests(), 1);
    clock_.advance(1);
    ASSERT_TRUE(read(*gsm, "db-password"));
    EXPECT_EQ(metadata_.token_requests(), 2);
}

TEST_F(GcpSecretStoreTest, RotatedValueIsReturnedByTheNextRead) {
    auto gsm = store();
    auto before = read(*gsm, "db-password");
    ASSERT_TRUE(before);
    EXPECT_EQ(before->reveal(), kValue);
    api_.add_version("db-password", "rotated-value");
    auto after = read(*gsm, "db-password");
    ASSERT_TRUE(after);
    EXPECT_EQ(after->reveal(), "rotated-value");
}

TEST_F(GcpSecretStoreTest, ChecksumMismatchIsAnIntegrityError) {
    auto gsm = store();
    api_.set_corrupt_crc(true);
    auto value = read(*gsm, "db-password");
    ASSERT_FALSE(value);
    EXPECT_EQ(value.error().code, ErrorCode::integrity);
    expect_safe(value.error(), "db-password");
    api_.set_corrupt_crc(false);
    api_.set_send_crc(false);  // the checksum is optional
    auto unchecked = read(*gsm, "db-password");
    ASSERT_TRUE(unchecked) << unchecked.error().describe();
    EXPECT_EQ(unchecked->reveal(), kValue);
}

TEST_F(GcpSecretStoreTest, MalformedAnswerIsInvalidArgument) {
    auto gsm = store();
    for (const char* body :
         {"not json", "[]", R"({"name":"x"})", R"({"name":"x","payload":{}})",
          R"({"name":"x","payload":{"data":"!!notbase64"}})",
          R"({"name":"x","payload":{"data":"YWJj","dataCrc32c":"-1"}})",
          R"({"name":"x","payload":{"data":"YWJj","dataCrc32c":"99999999999"}})"}) {
        api_.fail_next(200, body);
        auto value = read(*gsm, "db-password");
        ASSERT_FALSE(value) << body;
        EXPECT_EQ(value.error().code, ErrorCode::invalid_argument) << body;
        expect_safe(value.error(), "db-password");
    }
    // dataCrc32c as a JSON number and URL-safe base64 are accepted too.
    api_.fail_next(200, R"({"name":"x","payload":{"data":"YWJj","dataCrc32c":910901175}})");
    auto abc = read(*gsm, "db-password");
    ASSERT_TRUE(abc) << abc.error().describe();
    EXPECT_EQ(abc->reveal(), "abc");
}

TEST_F(GcpSecretStoreTest, ConcurrentReadsFromFourThreads) {
    auto gsm = store();
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 10; ++i) {
                auto value = read(*gsm, i % 2 ? "db-password" : "db-json", i % 2 ? "" : "tls.key");
                if (value && value->reveal() == (i % 2 ? kValue : "nested-s3cret")) ++ok;
            }
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(ok, 40);
    EXPECT_EQ(metadata_.token_requests(), 1);
}

TEST_F(GcpSecretStoreTest, BadPathIsInvalidArgumentWithoutARequest) {
    auto gsm = store();
    for (const char* path : {"a/b", "a@", "@1", "a@1@2", "sp ace", "a@v?x"}) {
        auto value = read(*gsm, path);
        ASSERT_FALSE(value) << path;
        EXPECT_EQ(value.error().code, ErrorCode::invalid_argument) << path;
        expect_safe(value.error(), path);
    }
    EXPECT_EQ(api_.access_requests(), 0);
    EXPECT_EQ(metadata_.token_requests(), 0);
}

TEST_F(GcpSecretStoreTest, MetadataTokenErrorsKeepTheirKind) {
    metadata_.set_impostor(true);
    auto gsm = store();
    auto value = read(*gsm, "db-password");
    ASSERT_FALSE(value);
    EXPECT_EQ(value.error().code, ErrorCode::invalid_argument);
    expect_safe(value.error(), "db-password");
}

TEST_F(GcpSecretStoreTest, WorksWithAServiceAccountKey) {
    const std::string key_json = account().key_json(api_.url("/token"));
    auto s = settings();
    s.auth.method = "service_account_key";
    s.auth.key = SecretRef{.store = "files", .path = "gcp-key.json", .key = ""};
    int key_reads = 0;
    CredentialReader reader = [&](const SecretRef& ref) -> Result<SecretValue> {
        EXPECT_EQ(ref.path, "gcp-key.json");
        ++key_reads;
        return SecretValue::copy_of(key_json);
    };
    auto tokens = make_gcp_token_source(s, network_->transport(), reader, clock_);
    ASSERT_TRUE(tokens) << tokens.error().describe();
    auto gsm = GcpSecretManagerStore::create("gsm", s, network_->transport(), std::move(*tokens));
    ASSERT_TRUE(gsm);
    auto value = read(**gsm, "db-json", "password");
    ASSERT_TRUE(value) << value.error().describe();
    EXPECT_EQ(value->reveal(), "json-p4ssw0rd");
    api_.revoke_tokens();  // re-authentication signs a new assertion
    ASSERT_TRUE(read(**gsm, "db-password"));
    EXPECT_EQ(api_.token_requests(), 2);
    EXPECT_EQ(key_reads, 2);
    EXPECT_EQ(metadata_.token_requests(), 0);
}

TEST_F(GcpSecretStoreTest, RejectsBadSettings) {
    const auto create = [&](GcpSecretManagerSettings s) {
        return GcpSecretManagerStore::create(
            "gsm", std::move(s), network_->transport(),
            std::move(*make_gcp_token_source(settings(), network_->transport(), nullptr, clock_)));
    };
    auto s = settings();
    s.project = "";
    auto a = create(s);
    ASSERT_FALSE(a);
    EXPECT_NE(a.error().message.find("project"), std::string::npos);
    s = settings();
    s.endpoint = "http://secretmanager.googleapis.com";
    auto b = create(s);
    ASSERT_FALSE(b);
    EXPECT_NE(b.error().message.find("endpoint"), std::string::npos);
    s = settings();
    s.timeout_seconds = 0;
    auto c = create(s);
    ASSERT_FALSE(c);
    EXPECT_NE(c.error().message.find("timeout_seconds"), std::string::npos);

    s = settings();
    s.auth.method = "magic";
    auto d = make_gcp_token_source(s, network_->transport(), nullptr, clock_);
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().message.find("auth.method"), std::string::npos);
}

}  // namespace
}  // namespace sa::agent::secrets::gcp
