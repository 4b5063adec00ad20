#include "agent/secrets/vault/vault_secret_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "agent/egress/http_client.h"
#include "agent/egress/policy.h"
#include "agent/egress/testing/test_pki.h"
#include "agent/secrets/http_store.h"
#include "agent/secrets/vault/testing/fake_vault.h"
#include "common/testing/temp_dir.h"

namespace sa::agent::secrets::vault {
namespace {

using json = nlohmann::json;
using testing::FakeVault;
using testing::ManualClock;

// Test credentials: fake, but still never printed (assertions compare with
// EXPECT_TRUE so a failure does not echo them).
constexpr const char* kToken = "hvs.static-agent-token-0001";
constexpr const char* kOtherToken = "hvs.rotated-agent-token-0002";
constexpr const char* kRoleId = "db9c7a2e-role-id";
constexpr const char* kSecretId = "6a174c20-f6de-a53c-74d2-6018fcceff64";
constexpr const char* kJwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJl";

const SecretRef kTokenRef{"files", "vault-token", ""};
const SecretRef kSecretIdRef{"files", "vault-secret-id", ""};

// Delegates to the real HttpClient and records each request's timeout.
class TimeoutRecorder final : public egress::Transport {
  public:
    TimeoutRecorder(std::unique_ptr<egress::Transport> inner,
                    std::vector<std::chrono::milliseconds>& seen)
        : inner_(std::move(inner)), seen_(seen) {}
    Result<egress::HttpResponse> send(const egress::HttpRequest& request) override {
        seen_.push_back(request.timeout);
        return inner_->send(request);
    }

  private:
    std::unique_ptr<egress::Transport> inner_;
    std::vector<std::chrono::milliseconds>& seen_;
};

class VaultSecretStoreTest : public ::testing::Test {
  protected:
    void SetUp() override {
        ca_file_ = sa::agent::testing::write_test_file(dir_.file("ca.pem"),
                                                       sa::agent::testing::pki().ca.cert_pem);
        jwt_file_ = dir_.file("sa-token");
        write_jwt(std::string(kJwt) + "\n");
    }

    FakeVault& start_vault(FakeVault::Options options = {}) {
        vault_ = std::make_unique<FakeVault>(*clock_, std::move(options));
        vault_->start();
        return *vault_;
    }

    std::unique_ptr<egress::Transport> transport(const egress::EgressPolicy* policy = nullptr) {
        egress::HttpClient::Options options;
        options.ca_file = ca_file_;
        options.policy = policy;
        options.connect_timeout = std::chrono::milliseconds(5000);
        auto client = egress::HttpClient::create(options);
        EXPECT_TRUE(client) << client.error().describe();
        return std::make_unique<egress::HttpClient>(std::move(*client));
    }

    // The agent's own credential store, as the lead wires it (SecretStores::read).
    CredentialReader reader() {
        return [this](const SecretRef& ref) -> Result<SecretValue> {
            std::lock_guard lock(mutex_);
            ++credential_reads_[ref.to_string()];
            auto it = credentials_.find(ref.to_string());
            if (it == credentials_.end() || it->second.empty()) {
                return fail(ErrorCode::not_found,
                            store_where(ref.store, ref.path) + ": no such file");
            }
            std::string value = it->second.front();
            if (it->second.size() > 1) it->second.erase(it->second.begin());
            return SecretValue::from(std::move(value));
        };
    }
    // The credential reads return these values in turn, then the last one forever.
    void set_credential(const SecretRef& ref, std::vector<std::string> values) {
        std::lock_guard lock(mutex_);
        credentials_[ref.to_string()] = std::move(values);
    }
    int credential_reads(const SecretRef& ref) {
        std::lock_guard lock(mutex_);
        return credential_reads_[ref.to_string()];
    }

    VaultSettings token_settings() {
        VaultSettings settings;
        settings.address = vault_->address();
        settings.auth.method = "token";
        settings.auth.token = kTokenRef;
        set_credential(kTokenRef, {kToken});
        return settings;
    }
    VaultSettings approle_settings() {
        VaultSettings settings;
        settings.address = vault_->address();
        settings.auth.method = "approle";
        settings.auth.role_id = kRoleId;
        settings.auth.secret_id = kSecretIdRef;
        set_credential(kSecretIdRef, {kSecretId});
        return settings;
    }
    VaultSettings kubernetes_settings() {
        VaultSettings settings;
        settings.address = vault_->address();
        settings.auth.method = "kubernetes";
        settings.auth.role = "agent";
        settings.auth.jwt_file = jwt_file_;
        return settings;
    }

    std::unique_ptr<VaultSecretStore> make(VaultSettings settings,
                                           std::unique_ptr<egress::Transport> t = nullptr) {
        auto store = VaultSecretStore::create("vault", std::move(settings),
                                              t ? std::move(t) : transport(), reader(), clock_);
        EXPECT_TRUE(store) << store.error().describe();
        return store ? std::move(*store) : nullptr;
    }

    static Result<SecretValue> read(VaultSecretStore& store, std::string_view ref_text) {
        auto ref = parse_secret_ref(ref_text);
        if (!ref) return std::unexpected(ref.error());
        return store.read(*ref);
    }

    void write_jwt(const std::string& text) { std::ofstream(jwt_file_, std::ios::trunc) << text; }

    // No credential, token or secret value in an error message.
    static void expect_clean(const Error& error) {
        for (const char* secret : {kToken, kOtherToken, kSecretId, kJwt, "hvs.", "pw-"}) {
            EXPECT_EQ(error.message.find(secret), std::string::npos)
                << "error message leaks a credential or value";
        }
    }

    sa::testing::TempDir dir_{"sa-vault-"};
    std::string ca_file_;
    std::string jwt_file_;
    std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
    std::unique_ptr<FakeVault> vault_;
    std::mutex mutex_;
    std::map<std::string, std::vector<std::string>> credentials_;
    std::map<std::string, int> credential_reads_;
};

const json kDbSecret = {
    {"username", "app"}, {"password", "pw-1"}, {"tls", {{"client", {{"key", "pw-key-1"}}}}}};

// --- reads, reference mapping, documented request shape ---

TEST_F(VaultSecretStoreTest, TokenMethodReadsWholeSecretKeyAndDottedKey) {
    start_vault().put("db/prod", kDbSecret);
    vault_->add_token(kToken, {});
    auto store = make(token_settings());

    auto whole = read(*store, "vault/db/prod");
    ASSERT_TRUE(whole) << whole.error().describe();
    EXPECT_TRUE(json::parse(whole->reveal()) == kDbSecret);

    auto password = read(*store, "vault/db/prod#password");
    ASSERT_TRUE(password) << password.error().describe();
    EXPECT_TRUE(password->reveal() == "pw-1");

    auto nested = read(*store, "vault/db/prod#tls.client.key");
    ASSERT_TRUE(nested) << nested.error().describe();
    EXPECT_TRUE(nested->reveal() == "pw-key-1");
}

TEST_F(VaultSecretStoreTest, SendsTheDocumentedKvReadWithTokenAndNoNamespace) {
    start_vault().put("db/prod", kDbSecret);
    vault_->add_token(kToken, {});
    auto store = make(token_settings());
    ASSERT_TRUE(read(*store, "vault/db/prod#password"));

    const auto requests = vault_->requests();
    ASSERT_EQ(requests.size(), 1u);
    EXPECT_EQ(requests[0].method, "GET");
    EXPECT_EQ(requests[0].target, "/v1/secret/data/db/prod");
    EXPECT_EQ(requests[0].token_header, "authorization");
    EXPECT_TRUE(requests[0].token == kToken);
    EXPECT_FALSE(requests[0].has_namespace);
    EXPECT_EQ(credential_reads(kTokenRef), 1);
}

TEST_F(VaultSecretStoreTest, VersionSuffixReadsThatVersion) {
    start_vault().put("db/prod", {{"password", "pw-old"}});
    vault_->put("db/prod", {{"password", "pw-new"}});
    vault_->add_token(kToken, {});
    auto store = make(token_settings());

    auto old_value = read(*store, "vault/db/prod@1#password");
    ASSERT_TRUE(old_value) << old_value.error().describe();
    EXPECT_TRUE(old_value->reveal() == "pw-old");
    auto current = read(*store, "vault/db/prod#password");
    ASSERT_TRUE(current) << current.error().describe();
    EXPECT_TRUE(current->reveal() == "pw-new");

    const auto requests = vault_->requests();
    ASSERT_EQ(requests.size(), 2u);
    EXPECT_EQ(requests[0].target, "/v1/secret/data/db/prod?version=1");
    EXPECT_EQ(requests[1].target, "/v1/secret/data/db/prod");
}

TEST_F(VaultSecretStoreTest, CustomMountAndEncodedPathSegments) {
    start_vault({.kv_mount = "kv/team-a"}).put("apps/my app", {{"password", "pw-2"}});
    vault_->add_token(kToken, {});
    VaultSettings settings = token_settings();
    settings.mount = "/kv/team-a/";
    settings.address += "/";
    auto store = make(settings);

    auto value = read(*store, "vault/apps/my app#password");
    ASSERT_TRUE(value) << value.error().describe();
    EXPECT_TRUE(value->reveal() == "pw-2");
    ASSERT_EQ(vault_->requests().size(), 1u);
    EXPECT_EQ(vault_->requests()[0].target, "/v1/kv/team-a/data/apps/my%20app");
}

TEST_F(VaultSecretStoreTest, BadPathsAreRefusedWithoutARequest) {
    start_vault();
    vault_->add_token(kToken, {});
    auto store = make(token_settings());
    for (const char* ref : {"vault/../sys/seal", "vault/db/../../sys", "vault/db/./x",
                            "vault/db//x", "vault/db/", "vault/db@0"}) {
        auto value = read(*store, ref);
        ASSERT_FALSE(value) << ref;
        EXPECT_EQ(value.error().code, ErrorCode::invalid_argument) << ref;
        EXPECT_TRUE(value.error().message.starts_with("secret store \"vault\" path \""))
            << value.error().message;
    }
    EXPECT_TRUE(vault_->requests().empty());
}

// --- not found ---

TEST_F(VaultSecretStoreTest, MissingSecretKeyOrVersionIsNotFound) {
    start_vault().put("db/prod", kDbSecret);
    vault_->add_token(kToken, {});
    auto store = make(token_settings());

    auto missing = read(*store, "vault/db/staging#password");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::not_found);
    EXPECT_EQ(missing.error().message, store_where("vault", "db/staging") + ": HTTP 404");

    auto no_key = read(*store, "vault/db/prod#nope");
    ASSERT_FALSE(no_key);
    EXPECT_EQ(no_key.error().code, ErrorCode::not_found);
    EXPECT_NE(no_key.error().message.find("nope"), std::string::npos);
    expect_clean(no_key.error());

    auto no_version = read(*store, "vault/db/prod@7");
    ASSERT_FALSE(no_version);
    EXPECT_EQ(no_version.error().code, ErrorCode::not_found);
}

TEST_F(VaultSecretStoreTest, DeletedAndDestroyedVersionsAreNotFound) {
    start_vault().put("db/prod", {{"password", "pw-1"}});
    vault_->put("db/prod", {{"password", "pw-2"}});
    vault_->put("db/prod", {{"password", "pw-3"}});
    vault_->delete_version("db/prod", 3);
    vault_->destroy_version("db/prod", 1);
    vault_->add_token(kToken, {});
    auto store = make(token_settings());

    auto deleted = read(*store, "vault/db/prod#password");
    ASSERT_FALSE(deleted);
    EXPECT_EQ(deleted.error().code, ErrorCode::not_found);
    EXPECT_EQ(deleted.error().message,
              store_where("vault", "db/prod") + ": HTTP 404: version 3 is deleted");

    auto destroyed = read(*store, "vault/db/prod@1#password");
    ASSERT_FALSE(destroyed);
    EXPECT_EQ(destroyed.error().code, ErrorCode::not_found);
    EXPECT_EQ(destroyed.error().message,
              store_where("vault", "db/prod@1") + ": HTTP 404: version 1 is destroyed");

    auto live = read(*store, "vault/db/prod@2#password");
    ASSERT_TRUE(live) << live.error().describe();
    EXPECT_TRUE(live->reveal() == "pw-2");
}

// --- token method: permission denied, rotation ---

TEST_F(VaultSecretStoreTest, TokenWithoutPolicyIsPermissionDeniedAfterOneReread) {
    start_vault().put("db/prod", kDbSecret);
    vault_->add_token(kToken, {.readable = {"other/*"}});
    auto store = make(token_settings());

    auto value = read(*store, "vault/db/prod#password");
    ASSERT_FALSE(value);
    EXPECT_EQ(value.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(value.error().message, store_where("vault", "db/prod") +
                                         ": HTTP 403: 1 error occurred:  * permission denied");
    expect_clean(value.error());
    // The token reference was read again, but it had not changed: no retry.
    EXPECT_EQ(credential_reads(kTokenRef), 2);
    EXPECT_EQ(vault_->kv_reads(), 1);
}

TEST_F(VaultSecretStoreTest, RotatedTokenIsPickedUpAfterA403) {
    start_vault().put("db/prod", kDbSecret);
    vault_->add_token(kToken, {});
    vault_->add_token(kOtherToken, {});
    vault_->revoke(kToken);
    VaultSettings settings = token_settings();
    set_credential(kTokenRef, {kToken, kOtherToken});
    auto store = make(settings);

    auto value = read(*store, "vault/db/prod#password");
    ASSERT_TRUE(value) << value.error().describe();
    EXPECT_TRUE(value->reveal() == "pw-1");
    const auto requests = vault_->requests();
    ASSERT_EQ(requests.size(), 2u);
    EXPECT_TRUE(requests[0].token == kToken);
    EXPECT_TRUE(requests[1].token == kOtherToken);
}

TEST_F(VaultSecretStoreTest, UnreadableTokenReferenceIsPermissionDenied) {
    start_vault();
    VaultSettings settings = token_settings();
    set_credential(kTokenRef, {});
    auto store = make(settings);
    auto value = read(*store, "vault/db/prod");
    ASSERT_FALSE(value);
    EXPECT_EQ(value.error().code, ErrorCode::permission_denied);
    EXPECT_TRUE(value.error().message.starts_with(store_where("vault", "db/prod") +
                                                  ": cannot read auth.token files/vault-token"))
        << value.error().message;
    EXPECT_TRUE(vault_->requests().empty());
}

// --- unavailable, error bodies, malformed answers ---

TEST_F(VaultSecretStoreTest, SealedStandbyRateLimitedAndServerErrorsAreUnavailable) {
    start_vault().put("db/prod", kDbSecret);
    vault_->add_token(kToken, {});
    auto store = make(token_settings());
    const std::string where = store_where("vault", "db/prod");
    const std::vector<std::tuple<int, std::string, std::string>> cases = {
        {503, R"({"errors":["Vault is sealed"]})", where + ": HTTP 503: Vault is sealed"},
        {412, R"({"errors":["required index state not present"]})",
         where + ": HTTP 412: required index state not present"},
        {429, R"({"errors":["request path \"secret/data/db/prod\": rate limit quota exceeded"]})",
         where + ": HTTP 429: request path \"secret/data/db/prod\": rate limit quota exceeded"},
        {500, R"({"errors":["internal error","storage unreachable"]})",
         where + ": HTTP 500: internal error; storage unreachable"},
        {502, "<html>Bad Gateway</html>", where + ": HTTP 502: <html>Bad Gateway</html>"},
    };
    for (const auto& [status, body, message] : cases) {
        vault_->set_outage(std::pair{status, body});
        auto value = read(*store, "vault/db/prod#password");
        ASSERT_FALSE(value) << status;
        EXPECT_EQ(value.error().code, ErrorCode::unavailable) << status;
        EXPECT_EQ(value.error().message, message);
        expect_clean(value.error());
    }
    vault_->set_outage(std::nullopt);
    EXPECT_TRUE(read(*store, "vault/db/prod#password"));
}

TEST_F(VaultSecretStoreTest, ConnectionRefusedIsUnavailable) {
    start_vault();
    VaultSettings settings = token_settings();
    vault_->stop();  // the port is closed now
    auto store = make(settings);
    auto value = read(*store, "vault/db/prod#password");
    ASSERT_FALSE(value);
    EXPECT_EQ(value.error().code, ErrorCode::unavailable);
    EXPECT_TRUE(value.error().message.starts_with(store_where("vault", "db/prod") + ": "))
        << value.error().message;
    expect_clean(value.error());
}

TEST_F(VaultSecretStoreTest, ErrorBodiesAreQuotedOnlyThroughErrorDetail) {
    start_vault();
    vault_->add_token(kToken, {});
    auto store = make(token_settings());
    const std::string long_text = "first line\r\n\tsecond line " + std::string(1000, 'x');
    vault_->set_outage(std::pair{500, json{{"errors", {long_text}}}.dump()});
    auto value = read(*store, "vault/db/prod");
    ASSERT_FALSE(value);
    const std::string prefix = store_where("vault", "db/prod") + ": HTTP 500: ";
    EXPECT_EQ(value.error().message, prefix + error_detail(long_text));
    EXPECT_EQ(value.error().message.find_first_of("\r\n\t"), std::string::npos);
    EXPECT_LE(value.error().message.size(), prefix.size() + 200);
}

TEST_F(VaultSecretStoreTest, MalformedAnswersAreInvalidArgument) {
    start_vault();
    vault_->add_token(kToken, {});
    auto store = make(token_settings());
    for (const char* body :
         {"not json", "[]", R"({"data":null})", R"({"data":{"data":"pw-plain"}})",
          R"({"data":{"metadata":{}}})", R"({"data":{"data":{"password":42}}})"}) {
        vault_->set_kv_answer(std::pair{200, std::string(body)});
        auto value = read(*store, "vault/db/prod#password");
        ASSERT_FALSE(value) << body;
        EXPECT_EQ(value.error().code, ErrorCode::invalid_argument)
            << body << ": " << value.error().message;
        expect_clean(value.error());
    }
    vault_->set_kv_answer(std::pair{418, std::string("\x01\x02 teapot")});
    auto odd = read(*store, "vault/db/prod");
    ASSERT_FALSE(odd);
    EXPECT_EQ(odd.error().code, ErrorCode::invalid_argument);
}

// --- AppRole ---

TEST_F(VaultSecretStoreTest, ApproleLogsInOnceWithTheDocumentedBody) {
    start_vault().put("db/prod", kDbSecret);
    vault_->set_approle(kRoleId, kSecretId, {.ttl = 3600, .renewable = true});
    auto store = make(approle_settings());

    for (int i = 0; i < 3; ++i) {
        auto value = read(*store, "vault/db/prod#password");
        ASSERT_TRUE(value) << value.error().describe();
        EXPECT_TRUE(value->reveal() == "pw-1");
    }
    EXPECT_EQ(vault_->logins(), 1);
    EXPECT_EQ(credential_reads(kSecretIdRef), 1);

    const auto requests = vault_->requests();
    ASSERT_EQ(requests.size(), 4u);
    EXPECT_EQ(requests[0].method, "POST");
    EXPECT_EQ(requests[0].target, "/v1/auth/approle/login");
    EXPECT_EQ(requests[0].token_header, "");
    EXPECT_TRUE(json::parse(requests[0].body) ==
                (json{{"role_id", kRoleId}, {"secret_id", kSecretId}}));
    for (size_t i = 1; i < requests.size(); ++i) {
        EXPECT_EQ(requests[i].target, "/v1/secret/data/db/prod");
        EXPECT_EQ(requests[i].token_header, "authorization");
        EXPECT_TRUE(requests[i].token.starts_with("hvs."));
        EXPECT_TRUE(requests[i].token == requests[1].token);
    }
}

TEST_F(VaultSecretStoreTest, NamespaceAndCustomAuthMountOnEveryRequest) {
    start_vault({.approle_mount = "agents/approle", .namespace_ = "admin/team-a"})
        .put("db/prod", kDbSecret);
    vault_->set_approle(kRoleId, kSecretId, {.ttl = 300, .renewable = true});
    VaultSettings settings = approle_settings();
    settings.namespace_ = "admin/team-a";
    settings.auth.mount = "agents/approle";
    auto store = make(settings);

    ASSERT_TRUE(read(*store, "vault/db/prod#password"));
    clock_->advance(250);  // into the last third: renew-self
    ASSERT_TRUE(read(*store, "vault/db/prod#password"));

    const auto requests = vault_->requests();
    ASSERT_EQ(requests.size(), 4u);
    EXPECT_EQ(requests[0].target, "/v1/auth/agents/approle/login");
    EXPECT_EQ(requests[2].target, "/v1/auth/token/renew-self");
    for (const auto& seen : requests) {
        EXPECT_TRUE(seen.has_namespace) << seen.target;
        EXPECT_EQ(seen.namespace_, "admin/team-a") << seen.target;
    }
}

TEST_F(VaultSecretStoreTest, WrongNamespaceIsPermissionDenied) {
    start_vault({.namespace_ = "admin/team-a"});
    vault_->add_token(kToken, {});
    VaultSettings settings = token_settings();
    settings.namespace_ = "admin/team-b";
    auto store = make(settings);
    auto value = read(*store, "vault/db/prod");
    ASSERT_FALSE(value);
    EXPECT_EQ(value.error().code, ErrorCode::permission_denied);
}

TEST_F(VaultSecretStoreTest, RefusedApproleLoginIsPermissionDenied) {
    start_vault().put("db/prod", kDbSecret);
    vault_->set_approle(kRoleId, "another-secret-id", {.ttl = 300});
    auto store = make(approle_settings());
    auto value = read(*store, "vault/db/prod#password");
    ASSERT_FALSE(value);
    EXPECT_EQ(value.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(value.error().message,
              store_where("vault", "db/prod") + ": login: HTTP 400: invalid role or secret ID");
    expect_clean(value.error());
    EXPECT_EQ(vault_->kv_reads(), 0);
}

TEST_F(VaultSecretStoreTest, MalformedLoginAnswerIsInvalidArgument) {
    start_vault();
    VaultSettings settings = approle_settings();
    vault_->set_outage(std::pair{200, R"({"auth":{"lease_duration":300}})"});
    auto store = make(settings);
    auto value = read(*store, "vault/db/prod");
    ASSERT_FALSE(value);
    EXPECT_EQ(value.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(value.error().message.find("auth.client_token"), std::string::npos);
}

// --- Kubernetes ---

TEST_F(VaultSecretStoreTest, KubernetesLoginReadsTheJwtFileAtEachLogin) {
    start_vault().put("db/prod", kDbSecret);
    vault_->set_kubernetes_role("agent", kJwt, {.ttl = 3600, .renewable = true});
    auto store = make(kubernetes_settings());
    ASSERT_TRUE(read(*store, "vault/db/prod#password"));

    // The kubelet rotated the projected token, and the Vault token was revoked.
    const std::string rotated = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyb3RhdGVkIn0.c2ln";
    write_jwt(rotated);
    vault_->set_kubernetes_role("agent", rotated, {.ttl = 3600, .renewable = true});
    vault_->revoke_all();
    auto value = read(*store, "vault/db/prod#password");
    ASSERT_TRUE(value) << value.error().describe();
    EXPECT_TRUE(value->reveal() == "pw-1");

    const auto requests = vault_->requests();
    ASSERT_EQ(requests.size(), 5u);  // login, read, read (403), login, read
    EXPECT_EQ(requests[0].target, "/v1/auth/kubernetes/login");
    EXPECT_EQ(requests[0].content_type, "application/json");
    EXPECT_TRUE(json::parse(requests[0].body) == (json{{"role", "agent"}, {"jwt", kJwt}}));
    EXPECT_EQ(requests[3].target, "/v1/auth/kubernetes/login");
    EXPECT_TRUE(json::parse(requests[3].body) == (json{{"role", "agent"}, {"jwt", rotated}}));
    EXPECT_FALSE(requests[4].token == requests[1].token);
}

TEST_F(VaultSecretStoreTest, KubernetesRefusalsArePermissionDenied) {
    start_vault();
    vault_->set_kubernetes_role("agent", "some-other-jwt", {.ttl = 300});
    auto store = make(kubernetes_settings());
    auto bad_jwt = read(*store, "vault/db/prod");
    ASSERT_FALSE(bad_jwt);
    EXPECT_EQ(bad_jwt.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(bad_jwt.error().message,
              store_where("vault", "db/prod") + ": login: HTTP 403: permission denied");
    expect_clean(bad_jwt.error());

    VaultSettings wrong_role = kubernetes_settings();
    wrong_role.auth.role = "nobody";
    auto store2 = make(wrong_role);
    auto bad_role = read(*store2, "vault/db/prod");
    ASSERT_FALSE(bad_role);
    EXPECT_EQ(bad_role.error().code, ErrorCode::permission_denied);
    EXPECT_NE(bad_role.error().message.find("invalid role name"), std::string::npos);

    VaultSettings no_file = kubernetes_settings();
    no_file.auth.jwt_file = dir_.file("missing-token");
    auto store3 = make(no_file);
    auto missing = read(*store3, "vault/db/prod");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::permission_denied);
    EXPECT_NE(missing.error().message.find("auth.jwt_file"), std::string::npos);
}

// --- token lifecycle ---

TEST_F(VaultSecretStoreTest, RenewsOnceLessThanAThirdOfTheLeaseRemains) {
    start_vault().put("db/prod", kDbSecret);
    vault_->set_approle(kRoleId, kSecretId, {.ttl = 300, .renewable = true});
    auto store = make(approle_settings());

    ASSERT_TRUE(read(*store, "vault/db/prod"));  // t=0: login, lease 300
    clock_->advance(150);                        // 150 left: nothing to do
    ASSERT_TRUE(read(*store, "vault/db/prod"));
    EXPECT_EQ(vault_->renewals(), 0);
    clock_->advance(40);  // 110 left: still more than a third
    ASSERT_TRUE(read(*store, "vault/db/prod"));
    EXPECT_EQ(vault_->renewals(), 0);
    clock_->advance(20);  // 90 left < 100: renew
    ASSERT_TRUE(read(*store, "vault/db/prod"));
    EXPECT_EQ(vault_->renewals(), 1);
    clock_->advance(250);  // renewed at t=210 until t=510; now t=460: renew again
    ASSERT_TRUE(read(*store, "vault/db/prod"));
    EXPECT_EQ(vault_->renewals(), 2);
    EXPECT_EQ(vault_->logins(), 1);
    EXPECT_EQ(credential_reads(kSecretIdRef), 1);

    for (const auto& seen : vault_->requests()) {
        if (seen.path != "/v1/auth/token/renew-self") continue;
        EXPECT_EQ(seen.method, "POST");
        EXPECT_EQ(seen.token_header, "authorization");
        EXPECT_TRUE(seen.token.starts_with("hvs."));
        EXPECT_EQ(seen.body, "{}");
    }
}

TEST_F(VaultSecretStoreTest, NonRenewableTokenIsReplacedByALogin) {
    start_vault().put("db/prod", kDbSecret);
    vault_->set_approle(kRoleId, kSecretId, {.ttl = 300, .renewable = false});
    auto store = make(approle_settings());
    ASSERT_TRUE(read(*store, "vault/db/prod"));
    clock_->advance(210);
    ASSERT_TRUE(read(*store, "vault/db/prod"));
    EXPECT_EQ(vault_->renewals(), 0);
    EXPECT_EQ(vault_->logins(), 2);
    EXPECT_EQ(credential_reads(kSecretIdRef), 2);  // read just in time for each login
}

TEST_F(VaultSecretStoreTest, FailedRenewalIsFollowedByALogin) {
    start_vault().put("db/prod", kDbSecret);
    vault_->set_approle(kRoleId, kSecretId, {.ttl = 300, .renewable = true});
    auto store = make(approle_settings());
    ASSERT_TRUE(read(*store, "vault/db/prod"));
    vault_->set_renewal_allowed(false);
    clock_->advance(210);
    ASSERT_TRUE(read(*store, "vault/db/prod"));
    EXPECT_EQ(vault_->renewals(), 1);
    EXPECT_EQ(vault_->logins(), 2);
}

TEST_F(VaultSecretStoreTest, TokenAtItsMaxTtlIsReplacedByALogin) {
    start_vault().put("db/prod", kDbSecret);
    vault_->set_approle(kRoleId, kSecretId, {.ttl = 300, .renewable = true, .max_ttl = 400});
    auto store = make(approle_settings());
    ASSERT_TRUE(read(*store, "vault/db/prod"));
    clock_->advance(210);  // renewal grants 190 (capped by max_ttl): enough
    ASSERT_TRUE(read(*store, "vault/db/prod"));
    EXPECT_EQ(vault_->renewals(), 1);
    EXPECT_EQ(vault_->logins(), 1);
    clock_->advance(150);  // t=360: renewal grants 40, not enough: log in
    ASSERT_TRUE(read(*store, "vault/db/prod"));
    EXPECT_EQ(vault_->renewals(), 2);
    EXPECT_EQ(vault_->logins(), 2);
}

TEST_F(VaultSecretStoreTest, ExpiredTokenIsReplacedByALoginWithoutRenewal) {
    start_vault().put("db/prod", kDbSecret);
    vault_->set_approle(kRoleId, kSecretId, {.ttl = 300, .renewable = true});
    auto store = make(approle_settings());
    ASSERT_TRUE(read(*store, "vault/db/prod"));
    clock_->advance(300);
    ASSERT_TRUE(read(*store, "vault/db/prod"));
    EXPECT_EQ(vault_->renewals(), 0);
    EXPECT_EQ(vault_->logins(), 2);
    EXPECT_EQ(vault_->kv_reads(), 2);  // the expired token was never sent
}

TEST_F(VaultSecretStoreTest, FailedRefreshKeepsUsingTheUnexpiredToken) {
    start_vault().put("db/prod", kDbSecret);
    vault_->set_approle(kRoleId, kSecretId, {.ttl = 300, .renewable = false});
    auto store = make(approle_settings());
    ASSERT_TRUE(read(*store, "vault/db/prod"));
    vault_->set_approle(kRoleId, "rotated-on-the-server", {.ttl = 300});
    clock_->advance(210);
    auto value = read(*store, "vault/db/prod#password");
    ASSERT_TRUE(value) << value.error().describe();
    EXPECT_EQ(vault_->logins(), 2);  // tried, refused, old token still good
    clock_->advance(90);             // now it has expired: the login error surfaces
    auto expired = read(*store, "vault/db/prod#password");
    ASSERT_FALSE(expired);
    EXPECT_EQ(expired.error().code, ErrorCode::permission_denied);
}

TEST_F(VaultSecretStoreTest, RevokedTokenLeadsToOneLoginAndOneRetry) {
    start_vault().put("db/prod", kDbSecret);
    vault_->set_approle(kRoleId, kSecretId, {.ttl = 3600, .renewable = true});
    auto store = make(approle_settings());
    ASSERT_TRUE(read(*store, "vault/db/prod"));
    vault_->revoke_all();
    auto value = read(*store, "vault/db/prod#password");
    ASSERT_TRUE(value) << value.error().describe();
    EXPECT_TRUE(value->reveal() == "pw-1");
    EXPECT_EQ(vault_->logins(), 2);
    EXPECT_EQ(vault_->kv_reads(), 3);
}

TEST_F(VaultSecretStoreTest, PolicyRefusalWithLoginTokenIsRetriedAtMostOnce) {
    start_vault().put("db/prod", kDbSecret);
    vault_->set_approle(kRoleId, kSecretId, {.readable = {"other"}, .ttl = 3600});
    auto store = make(approle_settings());
    // A 403 with a token fresh from a login: no second login.
    auto first = read(*store, "vault/db/prod");
    ASSERT_FALSE(first);
    EXPECT_EQ(first.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(vault_->logins(), 1);
    EXPECT_EQ(vault_->kv_reads(), 1);
    // A 403 with an older token: one login, one retry, then the answer stands.
    auto second = read(*store, "vault/db/prod");
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, ErrorCode::permission_denied);
    expect_clean(second.error());
    EXPECT_EQ(vault_->logins(), 2);
    EXPECT_EQ(vault_->kv_reads(), 3);
}

// --- egress policy ---

TEST_F(VaultSecretStoreTest, ReachesVaultThroughTheEgressPolicy) {
    start_vault().put("db/prod", kDbSecret);
    vault_->add_token(kToken, {});
    egress::PolicyOptions options;
    options.allow.push_back(egress::AllowRule{.host = "127.0.0.1", .port = vault_->port()});
    const egress::EgressPolicy policy(options);
    auto store = make(token_settings(), transport(&policy));
    auto value = read(*store, "vault/db/prod#password");
    ASSERT_TRUE(value) << value.error().describe();
    EXPECT_TRUE(value->reveal() == "pw-1");
}

TEST_F(VaultSecretStoreTest, EgressDenialIsPermissionDenied) {
    start_vault().put("db/prod", kDbSecret);
    vault_->add_token(kToken, {});
    egress::PolicyOptions options;
    options.allow.push_back(egress::AllowRule{.host = "127.0.0.1", .port = vault_->port() + 1});
    const egress::EgressPolicy policy(options);
    auto store = make(token_settings(), transport(&policy));
    auto value = read(*store, "vault/db/prod#password");
    ASSERT_FALSE(value);
    EXPECT_EQ(value.error().code, ErrorCode::permission_denied);
    EXPECT_TRUE(value.error().message.starts_with(store_where("vault", "db/prod") + ": egress: "))
        << value.error().message;
    EXPECT_TRUE(vault_->requests().empty());
}

TEST_F(VaultSecretStoreTest, PlainHttpVaultNeedsAPlaintextRule) {
    start_vault({.plaintext = true}).put("db/prod", kDbSecret);
    vault_->add_token(kToken, {});
    EXPECT_TRUE(vault_->address().starts_with("http://127.0.0.1:"));

    egress::PolicyOptions plaintext;
    plaintext.allow.push_back(
        egress::AllowRule{.host = "127.0.0.1", .port = vault_->port(), .plaintext_http = true});
    const egress::EgressPolicy allowing(plaintext);
    auto store = make(token_settings(), transport(&allowing));
    auto value = read(*store, "vault/db/prod#password");
    ASSERT_TRUE(value) << value.error().describe();
    EXPECT_TRUE(value->reveal() == "pw-1");
    ASSERT_EQ(vault_->requests().size(), 1u);
    EXPECT_EQ(vault_->requests()[0].token_header, "authorization");

    egress::PolicyOptions tls_only;
    tls_only.allow.push_back(egress::AllowRule{.host = "127.0.0.1", .port = vault_->port()});
    const egress::EgressPolicy refusing(tls_only);
    auto refused_store = make(token_settings(), transport(&refusing));
    auto refused = read(*refused_store, "vault/db/prod#password");
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.error().code, ErrorCode::not_found);
    EXPECT_EQ(vault_->requests().size(), 1u);  // nothing was sent in plain text
}

// --- rotation, concurrency, timeouts, settings ---

TEST_F(VaultSecretStoreTest, RotatedValueIsReturnedByTheNextRead) {
    start_vault().put("db/prod", {{"password", "pw-1"}});
    vault_->add_token(kToken, {});
    auto store = make(token_settings());
    auto before = read(*store, "vault/db/prod#password");
    ASSERT_TRUE(before);
    EXPECT_TRUE(before->reveal() == "pw-1");
    vault_->put("db/prod", {{"password", "pw-2"}});
    auto after = read(*store, "vault/db/prod#password");
    ASSERT_TRUE(after);
    EXPECT_TRUE(after->reveal() == "pw-2");
}

TEST_F(VaultSecretStoreTest, ConcurrentReadsFromFourThreads) {
    start_vault().put("db/prod", kDbSecret);
    vault_->put("db/other", {{"password", "pw-other"}});
    vault_->set_approle(kRoleId, kSecretId, {.ttl = 3600, .renewable = true});
    auto store = make(approle_settings());
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            const bool other = t % 2 == 1;
            for (int i = 0; i < 10; ++i) {
                auto value =
                    read(*store, other ? "vault/db/other#password" : "vault/db/prod#password");
                if (value && value->reveal() == (other ? "pw-other" : "pw-1")) ++ok;
            }
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(ok.load(), 40);
    EXPECT_EQ(vault_->logins(), 1);
}

TEST_F(VaultSecretStoreTest, EveryRequestCarriesTheConfiguredTimeout) {
    start_vault().put("db/prod", kDbSecret);
    vault_->set_approle(kRoleId, kSecretId, {.ttl = 300, .renewable = true});
    VaultSettings settings = approle_settings();
    settings.timeout_seconds = 7;
    std::vector<std::chrono::milliseconds> timeouts;
    auto store = make(settings, std::make_unique<TimeoutRecorder>(transport(), timeouts));
    ASSERT_TRUE(read(*store, "vault/db/prod"));
    clock_->advance(250);
    ASSERT_TRUE(read(*store, "vault/db/prod"));
    ASSERT_EQ(timeouts.size(), 4u);  // login, read, renew, read
    for (auto timeout : timeouts) EXPECT_EQ(timeout, std::chrono::milliseconds(7000));
}

TEST_F(VaultSecretStoreTest, InvalidSettingsNameTheField) {
    auto base = [] {
        VaultSettings s;
        s.address = "https://vault.example.com:8200";
        s.auth.token = kTokenRef;
        return s;
    };
    struct Case {
        VaultSettings settings;
        std::string field;
    };
    std::vector<Case> cases;
    auto add = [&](std::string field, auto change) {
        VaultSettings s = base();
        change(s);
        cases.push_back({std::move(s), std::move(field)});
    };
    add("address", [](VaultSettings& s) { s.address = ""; });
    add("address", [](VaultSettings& s) { s.address = "ftp://vault"; });
    add("address", [](VaultSettings& s) { s.address = "https://vault/x?y=1"; });
    add("address", [](VaultSettings& s) { s.address = "https://user@vault"; });
    add("mount", [](VaultSettings& s) { s.mount = ""; });
    add("mount", [](VaultSettings& s) { s.mount = "kv/../sys"; });
    add("namespace", [](VaultSettings& s) { s.namespace_ = "a\r\nX-Evil: 1"; });
    add("timeout_seconds", [](VaultSettings& s) { s.timeout_seconds = 0; });
    add("auth.method", [](VaultSettings& s) { s.auth.method = "userpass"; });
    add("auth.token", [](VaultSettings& s) { s.auth.token = {}; });
    add("auth.role_id", [](VaultSettings& s) {
        s.auth.method = "approle";
        s.auth.secret_id = kSecretIdRef;
    });
    add("auth.secret_id", [](VaultSettings& s) {
        s.auth.method = "approle";
        s.auth.role_id = kRoleId;
    });
    add("auth.role", [](VaultSettings& s) { s.auth.method = "kubernetes"; });
    add("auth.mount", [](VaultSettings& s) {
        s.auth.method = "kubernetes";
        s.auth.role = "agent";
        s.auth.mount = "..";
    });
    for (auto& c : cases) {
        auto store = VaultSecretStore::create("vault", c.settings, transport(), reader(), clock_);
        ASSERT_FALSE(store) << c.field;
        EXPECT_EQ(store.error().code, ErrorCode::invalid_argument);
        EXPECT_TRUE(store.error().message.starts_with("secret store \"vault\": " + c.field))
            << store.error().message;
    }
    auto good = VaultSecretStore::create("vault", base(), transport(), reader(), clock_);
    EXPECT_TRUE(good) << good.error().describe();
}

}  // namespace
}  // namespace sa::agent::secrets::vault
