#include <gtest/gtest.h>

#include "common/crypto/encoding.h"
#include "common/crypto/password_hash.h"
#include "common/jose/jws.h"
#include "common/protocol/protocol.h"
#include "hub/identity/app_registry.h"
#include "hub/identity/test_keys.h"
#include "hub/identity/token_service.h"
#include "hub/testing/test_support.h"

namespace sa::hub::identity {
namespace {

class IdentityTest : public ::testing::Test {
  protected:
    void SetUp() override {
        auto s = store::Store::open(tmp.file("hub.db"));
        ASSERT_TRUE(s.has_value()) << s.error().describe();
        store = std::move(*s);
        apps = std::make_unique<AppRegistry>(*store, clock, testing::fast_scrypt());
        tokens = std::make_unique<TokenService>(crypto::Ed25519PrivateKey::generate(), clock);
    }

    std::string stored_hash(const std::string& name) {
        return store->with([&](sqlite::Database& db) {
            auto st = store::prepare(db, "SELECT secret_hash FROM apps WHERE name = ?", name);
            EXPECT_TRUE(st.has_value());
            (void)st->step();
            return st->text(0);
        });
    }

    testing::TempDir tmp;
    clock::ManualClock clock{1'764'403'200'000};
    std::unique_ptr<store::Store> store;
    std::unique_ptr<AppRegistry> apps;
    std::unique_ptr<TokenService> tokens;
};

TEST_F(IdentityTest, CreateStoresOnlyAnScryptHashOfTheSecret) {
    auto created = apps->create("billing");
    ASSERT_TRUE(created.has_value()) << created.error().describe();
    EXPECT_EQ(created->app.name, "billing");
    EXPECT_EQ(created->app.client_id.rfind("cid_", 0), 0u);
    // 32 random bytes, base64url without padding.
    EXPECT_EQ(created->client_secret.size(), 43u);
    auto raw = crypto::base64url_decode(created->client_secret);
    ASSERT_TRUE(raw.has_value());
    EXPECT_EQ(raw->size(), 32u);

    std::string hash = stored_hash("billing");
    EXPECT_EQ(hash.rfind("scrypt$", 0), 0u);
    EXPECT_EQ(hash.find(created->client_secret), std::string::npos);
    EXPECT_TRUE(crypto::verify_password(created->client_secret, hash));
}

TEST_F(IdentityTest, NamesAreValidatedAndUnique) {
    ASSERT_TRUE(apps->create("crm").has_value());
    auto dup = apps->create("crm");
    ASSERT_FALSE(dup.has_value());
    EXPECT_EQ(dup.error().code, ErrorCode::conflict);
    for (const char* bad : {"", "has space", "semi;colon", "a/b"}) {
        auto r = apps->create(bad);
        ASSERT_FALSE(r.has_value()) << bad;
        EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
    }
    EXPECT_FALSE(apps->create(std::string(65, 'a')).has_value());
    EXPECT_TRUE(apps->create(std::string(64, 'a')).has_value());
    auto found = apps->find("crm");
    ASSERT_TRUE(found.has_value());
    EXPECT_EQ(apps->find("nope").error().code, ErrorCode::not_found);
}

TEST_F(IdentityTest, AuthenticateAcceptsOnlyTheRightSecret) {
    auto created = apps->create("crm");
    ASSERT_TRUE(created.has_value());
    auto ok = apps->authenticate(created->app.client_id, created->client_secret);
    ASSERT_TRUE(ok.has_value());
    EXPECT_EQ(ok->name, "crm");

    auto wrong = apps->authenticate(created->app.client_id, created->client_secret + "x");
    ASSERT_FALSE(wrong.has_value());
    EXPECT_EQ(wrong.error().code, ErrorCode::unauthenticated);

    auto unknown = apps->authenticate("cid_unknown", created->client_secret);
    ASSERT_FALSE(unknown.has_value());
    EXPECT_EQ(unknown.error().code, ErrorCode::unauthenticated);
    // Same answer for both, so client ids cannot be probed.
    EXPECT_EQ(unknown.error().message, wrong.error().message);
    EXPECT_FALSE(apps->authenticate(created->app.client_id, "").has_value());
}

TEST_F(IdentityTest, IssuedTokenVerifiesAndCarriesTheProfile) {
    auto created = apps->create("crm");
    ASSERT_TRUE(created.has_value());
    IssuedToken t = tokens->issue(created->app);
    EXPECT_EQ(t.expires_in, 900);

    auto principal = tokens->verify(t.access_token);
    ASSERT_TRUE(principal.has_value()) << principal.error().describe();
    EXPECT_EQ(principal->app, "crm");
    EXPECT_EQ(principal->client_id, created->app.client_id);

    auto jws = jose::verify(t.access_token, tokens->public_key());
    ASSERT_TRUE(jws.has_value());
    EXPECT_EQ(jws->header["typ"], "at+jwt");
    EXPECT_EQ(jws->header["alg"], "EdDSA");
    EXPECT_EQ(jws->header["kid"], tokens->key_id());
    const auto& p = jws->payload;
    EXPECT_EQ(p["iss"], "agent-hub");
    EXPECT_EQ(p["aud"], "agent-hub");
    EXPECT_EQ(p["sub"], created->app.client_id);
    EXPECT_EQ(p["client_id"], created->app.client_id);
    EXPECT_EQ(p["app"], "crm");
    EXPECT_EQ(p["iat"].get<int64_t>(), clock.now_seconds());
    EXPECT_EQ(p["exp"].get<int64_t>(), clock.now_seconds() + 900);
    EXPECT_EQ(p["jti"], t.jti);
    EXPECT_NE(tokens->issue(created->app).jti, t.jti);

    auto active = apps->is_active("crm", created->app.client_id);
    ASSERT_TRUE(active.has_value());
    EXPECT_TRUE(*active);
    EXPECT_FALSE(*apps->is_active("crm", "cid_other"));
    EXPECT_FALSE(*apps->is_active("other", created->app.client_id));
}

TEST_F(IdentityTest, ExpiredTokenIsRefused) {
    auto created = apps->create("crm");
    ASSERT_TRUE(created.has_value());
    IssuedToken t = tokens->issue(created->app);
    clock.advance_ms(899'000);
    EXPECT_TRUE(tokens->verify(t.access_token).has_value());
    clock.advance_ms(2'000);
    auto late = tokens->verify(t.access_token);
    ASSERT_FALSE(late.has_value());
    EXPECT_EQ(late.error().code, ErrorCode::expired);
}

TEST_F(IdentityTest, TokenSignedByAnotherKeyIsRefused) {
    auto created = apps->create("crm");
    ASSERT_TRUE(created.has_value());
    TokenService other(crypto::Ed25519PrivateKey::generate(), clock);
    auto forged = tokens->verify(other.issue(created->app).access_token);
    ASSERT_FALSE(forged.has_value());
    EXPECT_EQ(forged.error().code, ErrorCode::unauthenticated);
}

TEST_F(IdentityTest, TamperedTokenIsRefused) {
    auto created = apps->create("crm");
    ASSERT_TRUE(created.has_value());
    std::string token = tokens->issue(created->app).access_token;
    size_t first = token.find('.');
    size_t second = token.find('.', first + 1);
    // Swap the payload for one naming another app, keep the signature.
    auto payload = crypto::base64url_decode(token.substr(first + 1, second - first - 1));
    ASSERT_TRUE(payload.has_value());
    auto claims = nlohmann::json::parse(*payload);
    claims["app"] = "someone-else";
    std::string tampered =
        token.substr(0, first + 1) + crypto::base64url_encode(claims.dump()) + token.substr(second);
    EXPECT_FALSE(tokens->verify(tampered).has_value());
    // A flipped signature character.
    std::string flipped = token;
    flipped.back() = flipped.back() == 'A' ? 'B' : 'A';
    EXPECT_FALSE(tokens->verify(flipped).has_value());
    EXPECT_FALSE(tokens->verify("").has_value());
    EXPECT_FALSE(tokens->verify("not.a.jwt").has_value());
}

TEST_F(IdentityTest, SameKeyButWrongTypeOrAudienceIsRefused) {
    auto created = apps->create("crm");
    ASSERT_TRUE(created.has_value());
    // A job JWS must never work as an access token, even if keys were mixed up.
    TokenService svc(crypto::Ed25519PrivateKey::from_raw(std::string(32, '\x07')).value(), clock);
    auto same = crypto::Ed25519PrivateKey::from_raw(std::string(32, '\x07')).value();
    nlohmann::json claims = {{"iss", "agent-hub"},
                             {"aud", "agent-hub"},
                             {"sub", created->app.client_id},
                             {"client_id", created->app.client_id},
                             {"app", "crm"},
                             {"iat", clock.now_seconds()},
                             {"exp", clock.now_seconds() + 900},
                             {"jti", "j1"}};
    EXPECT_TRUE(svc.verify(jose::sign(same, svc.key_id(), "at+jwt", claims)).has_value());
    EXPECT_FALSE(
        svc.verify(jose::sign(same, svc.key_id(), protocol::kJobType, claims)).has_value());
    auto wrong_aud = claims;
    wrong_aud["aud"] = created->app.client_id;
    EXPECT_FALSE(svc.verify(jose::sign(same, svc.key_id(), "at+jwt", wrong_aud)).has_value());
    auto no_app = claims;
    no_app.erase("app");
    EXPECT_FALSE(svc.verify(jose::sign(same, svc.key_id(), "at+jwt", no_app)).has_value());
    EXPECT_FALSE(svc.verify(jose::sign(same, "other-kid", "at+jwt", claims)).has_value());
}

// ---- Rotation and revocation (issue #5).

TEST_F(IdentityTest, RotationKeepsBothSecretsForTheOverlapThenOnlyTheNewOne) {
    auto created = apps->create("crm", "alice");
    ASSERT_TRUE(created.has_value());
    const std::string old_secret = created->client_secret;
    const std::string id = created->app.client_id;
    const int64_t rotated_at = clock.now_ms();

    auto rotated = apps->rotate("crm", std::chrono::seconds(60), "bob");
    ASSERT_TRUE(rotated.has_value()) << rotated.error().describe();
    const std::string new_secret = rotated->client_secret;
    EXPECT_NE(new_secret, old_secret);
    EXPECT_EQ(new_secret.size(), 43u);
    EXPECT_EQ(rotated->app.client_id, id);  // same client, new secret
    EXPECT_EQ(rotated->app.rotated_at_ms, rotated_at);
    EXPECT_EQ(rotated->app.rotated_by, "bob");
    EXPECT_EQ(rotated->app.previous_secret_valid_until_ms, rotated_at + 60'000);

    // Only hashes are stored, of the new secret in the usual column.
    std::string hash = stored_hash("crm");
    EXPECT_EQ(hash.rfind("scrypt$", 0), 0u);
    EXPECT_TRUE(crypto::verify_password(new_secret, hash));
    EXPECT_EQ(hash.find(new_secret), std::string::npos);

    // During the overlap both work.
    EXPECT_TRUE(apps->authenticate(id, old_secret).has_value());
    EXPECT_TRUE(apps->authenticate(id, new_secret).has_value());
    clock.advance_ms(59'999);
    EXPECT_TRUE(apps->authenticate(id, old_secret).has_value());
    ASSERT_TRUE(apps->find("crm")->previous_secret_valid_until_ms.has_value());

    // From the end of the overlap, the old secret is just a wrong secret.
    clock.advance_ms(1);
    auto late = apps->authenticate(id, old_secret);
    ASSERT_FALSE(late.has_value());
    EXPECT_EQ(late.error().code, ErrorCode::unauthenticated);
    auto wrong = apps->authenticate(id, "wrong");
    EXPECT_EQ(late.error().message, wrong.error().message);
    EXPECT_TRUE(apps->authenticate(id, new_secret).has_value());
    EXPECT_FALSE(apps->find("crm")->previous_secret_valid_until_ms.has_value());
}

TEST_F(IdentityTest, RotationWithoutOverlapEndsTheOldSecretAtOnce) {
    auto created = apps->create("crm");
    ASSERT_TRUE(created.has_value());
    auto rotated = apps->rotate("crm", std::chrono::seconds(0), "bob");
    ASSERT_TRUE(rotated.has_value());
    EXPECT_FALSE(rotated->app.previous_secret_valid_until_ms.has_value());
    EXPECT_FALSE(apps->authenticate(created->app.client_id, created->client_secret).has_value());
    EXPECT_TRUE(apps->authenticate(created->app.client_id, rotated->client_secret).has_value());
}

TEST_F(IdentityTest, SecondRotationDuringAnOverlapDropsTheOldestSecret) {
    auto created = apps->create("crm");
    ASSERT_TRUE(created.has_value());
    const std::string id = created->app.client_id;
    auto first = apps->rotate("crm", std::chrono::seconds(3600), "bob");
    ASSERT_TRUE(first.has_value());
    clock.advance_ms(10'000);
    auto second = apps->rotate("crm", std::chrono::seconds(3600), "carol");
    ASSERT_TRUE(second.has_value());
    // At most two valid secrets: the original one is gone although its
    // overlap had not ended; the first rotation's secret now overlaps.
    EXPECT_FALSE(apps->authenticate(id, created->client_secret).has_value());
    EXPECT_TRUE(apps->authenticate(id, first->client_secret).has_value());
    EXPECT_TRUE(apps->authenticate(id, second->client_secret).has_value());
    EXPECT_EQ(second->app.previous_secret_valid_until_ms, clock.now_ms() + 3'600'000);
    clock.advance_ms(3'600'000);
    EXPECT_FALSE(apps->authenticate(id, first->client_secret).has_value());
    EXPECT_TRUE(apps->authenticate(id, second->client_secret).has_value());
}

TEST_F(IdentityTest, RotationAndRevocationAreRecordedWithWhoAndWhen) {
    const int64_t t0 = clock.now_ms();
    ASSERT_TRUE(apps->create("crm", "alice").has_value());
    clock.advance_ms(1000);
    ASSERT_TRUE(apps->rotate("crm", std::chrono::seconds(30), "bob").has_value());
    clock.advance_ms(1000);
    ASSERT_TRUE(apps->revoke("crm", "carol").has_value());
    auto events = apps->events("crm");
    ASSERT_TRUE(events.has_value()) << events.error().describe();
    ASSERT_EQ(events->size(), 3u);
    EXPECT_EQ((*events)[0].event, "created");
    EXPECT_EQ((*events)[0].actor, "alice");
    EXPECT_EQ((*events)[0].at_ms, t0);
    EXPECT_EQ((*events)[1].event, "rotated");
    EXPECT_EQ((*events)[1].actor, "bob");
    EXPECT_EQ((*events)[1].at_ms, t0 + 1000);
    EXPECT_NE((*events)[1].detail.find("overlap 30 s"), std::string::npos);
    EXPECT_EQ((*events)[2].event, "revoked");
    EXPECT_EQ((*events)[2].actor, "carol");
    EXPECT_EQ((*events)[2].at_ms, t0 + 2000);
    auto app = apps->find("crm");
    ASSERT_TRUE(app.has_value());
    EXPECT_EQ(app->revoked_at_ms, t0 + 2000);
    EXPECT_EQ(app->revoked_by, "carol");
    EXPECT_EQ(app->rotated_by, "bob");
    EXPECT_EQ(apps->events("nope").error().code, ErrorCode::not_found);
}

TEST_F(IdentityTest, RotateChecksItsArguments) {
    ASSERT_TRUE(apps->create("crm").has_value());
    EXPECT_EQ(apps->rotate("crm", std::chrono::seconds(-1), "x").error().code,
              ErrorCode::invalid_argument);
    EXPECT_EQ(apps->rotate("crm", kMaxRotationOverlap + std::chrono::seconds(1), "x").error().code,
              ErrorCode::invalid_argument);
    EXPECT_TRUE(apps->rotate("crm", kMaxRotationOverlap, "x").has_value());
    EXPECT_EQ(apps->rotate("nope", std::chrono::seconds(1), "x").error().code,
              ErrorCode::not_found);
}

TEST_F(IdentityTest, TokensIssuedBeforeARotationStayValid) {
    auto created = apps->create("crm");
    ASSERT_TRUE(created.has_value());
    IssuedToken t = tokens->issue(created->app);
    ASSERT_TRUE(apps->rotate("crm", std::chrono::seconds(0), "bob").has_value());
    auto principal = tokens->verify(t.access_token);
    ASSERT_TRUE(principal.has_value());
    EXPECT_TRUE(*apps->is_active(principal->app, principal->client_id));
}

TEST_F(IdentityTest, RevocationIsPermanentAndStopsEverySecretAndToken) {
    auto created = apps->create("crm");
    ASSERT_TRUE(created.has_value());
    const std::string id = created->app.client_id;
    auto rotated = apps->rotate("crm", std::chrono::seconds(3600), "bob");
    ASSERT_TRUE(rotated.has_value());
    IssuedToken live = tokens->issue(created->app);
    ASSERT_TRUE(*apps->is_active("crm", id));

    auto revoked = apps->revoke("crm", "carol");
    ASSERT_TRUE(revoked.has_value()) << revoked.error().describe();
    EXPECT_TRUE(revoked->revoked());
    EXPECT_FALSE(revoked->previous_secret_valid_until_ms.has_value());
    // The token still verifies cryptographically; is_active is what stops it.
    EXPECT_TRUE(tokens->verify(live.access_token).has_value());
    EXPECT_FALSE(*apps->is_active("crm", id));
    auto wrong = apps->authenticate(id, "wrong");
    for (const std::string& secret : {created->client_secret, rotated->client_secret}) {
        auto r = apps->authenticate(id, secret);
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error().code, ErrorCode::unauthenticated);
        EXPECT_EQ(r.error().message, wrong.error().message);  // nothing to probe
    }
    EXPECT_EQ(apps->revoke("crm", "carol").error().code, ErrorCode::conflict);
    EXPECT_EQ(apps->rotate("crm", std::chrono::seconds(0), "x").error().code, ErrorCode::conflict);
    EXPECT_EQ(apps->revoke("nope", "x").error().code, ErrorCode::not_found);
    // The name stays taken.
    EXPECT_EQ(apps->create("crm").error().code, ErrorCode::conflict);
    auto listed = apps->list();
    ASSERT_TRUE(listed.has_value());
    ASSERT_EQ(listed->size(), 1u);
    EXPECT_TRUE((*listed)[0].revoked());
}

TEST_F(IdentityTest, TokenLifetimeIsConfigurableWithinBounds) {
    auto created = apps->create("crm");
    ASSERT_TRUE(created.has_value());
    TokenService short_lived(crypto::Ed25519PrivateKey::generate(), clock, 30);
    IssuedToken t = short_lived.issue(created->app);
    EXPECT_EQ(t.expires_in, 30);
    auto jws = jose::verify(t.access_token, short_lived.public_key());
    ASSERT_TRUE(jws.has_value());
    EXPECT_EQ(jws->payload["exp"].get<int64_t>(), clock.now_seconds() + 30);
    clock.advance_ms(30'000);
    EXPECT_TRUE(short_lived.verify(t.access_token).has_value());
    clock.advance_ms(1'000);
    auto late = short_lived.verify(t.access_token);
    ASSERT_FALSE(late.has_value());
    EXPECT_EQ(late.error().code, ErrorCode::expired);
    EXPECT_EQ(TokenService(crypto::Ed25519PrivateKey::generate(), clock, 0).lifetime_seconds(),
              kMinAccessTokenLifetime);
    EXPECT_EQ(
        TokenService(crypto::Ed25519PrivateKey::generate(), clock, 1 << 30).lifetime_seconds(),
        kMaxAccessTokenLifetime);
}

// ---- private_key_jwt (RFC 7523) ----

using json = nlohmann::json;
using identity_testing::assertion_claims;
using identity_testing::TestKey;

constexpr const char* kAud = "https://hub.example:8443/oauth2/token";

TEST(ClientPublicKey, AcceptsEachSupportedTypeWithItsAlgorithm) {
    for (const char* alg : {"EdDSA", "ES256", "RS256"}) {
        auto key = ClientPublicKey::from_pem(TestKey::shared(alg).public_pem());
        ASSERT_TRUE(key.has_value()) << alg << ": " << key.error().describe();
        EXPECT_EQ(key->algorithm(), alg);
        EXPECT_EQ(key->thumbprint().size(), 43u);  // SHA-256, base64url
    }
}

TEST(ClientPublicKey, ThumbprintIsTheRfc7638OneOfTheRfc8037Example) {
    // RFC 8037 appendix A.2/A.3: x and its JWK thumbprint.
    auto x = crypto::base64url_decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    ASSERT_TRUE(x.has_value());
    // SubjectPublicKeyInfo of an Ed25519 key: a fixed 12-byte prefix + x.
    const std::string prefix("\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00", 12);
    std::string pem = "-----BEGIN PUBLIC KEY-----\n" + crypto::base64_encode(prefix + *x) +
                      "\n-----END PUBLIC KEY-----\n";
    auto key = ClientPublicKey::from_pem(pem);
    ASSERT_TRUE(key.has_value()) << key.error().describe();
    EXPECT_EQ(key->thumbprint(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
}

TEST(ClientPublicKey, RefusesWhatIsNotAnAcceptedPublicKeyAndSaysWhy) {
    auto message = [](const std::string& pem) {
        auto key = ClientPublicKey::from_pem(pem);
        EXPECT_FALSE(key.has_value());
        return key ? std::string() : key.error().message;
    };
    EXPECT_NE(message(TestKey::generate("EdDSA").private_pem()).find("private key"),
              std::string::npos);
    EXPECT_NE(message(TestKey::generate("ES384").public_pem()).find("P-256"), std::string::npos);
    crypto::EvpPkeyPtr small(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024}));
    crypto::BioPtr bio(BIO_new(BIO_s_mem()));
    PEM_write_bio_PUBKEY(bio.get(), small.get());
    char* data = nullptr;
    long size = BIO_get_mem_data(bio.get(), &data);
    EXPECT_NE(message(std::string(data, static_cast<size_t>(size))).find("1024 bits"),
              std::string::npos);
    EXPECT_NE(message("hello").find("not a PEM public key"), std::string::npos);
    EXPECT_NE(message("").find("empty"), std::string::npos);
}

class KeyAuthTest : public IdentityTest {
  protected:
    // Creates a key app with a key of alg; returns its client id.
    std::string create_key_app(const std::string& name, const TestKey& key) {
        auto app = apps->create_with_key(name, key.public_key(), "alice");
        EXPECT_TRUE(app.has_value()) << app.error().describe();
        return app ? app->client_id : std::string();
    }
    int64_t now() const { return clock.now_seconds(); }
    Result<App> check(const std::string& assertion,
                      std::optional<std::string_view> client_id = std::nullopt) {
        return apps->authenticate_assertion(assertion, client_id, rules);
    }
    static void expect_refused(const Result<App>& r, const std::string& why) {
        ASSERT_FALSE(r.has_value()) << "accepted: " << why;
        EXPECT_EQ(r.error().code, ErrorCode::unauthenticated) << r.error().describe();
        EXPECT_NE(r.error().message.find(why), std::string::npos) << r.error().message;
    }

    AssertionRules rules{.audience_ok = [](std::string_view aud) { return aud == kAud; }};
};

TEST_F(KeyAuthTest, GoodAssertionOfEachKeyTypeAuthenticates) {
    for (const char* alg : {"EdDSA", "ES256", "RS256"}) {
        const TestKey& key = TestKey::shared(alg);
        std::string cid = create_key_app(std::string("app-") + alg, key);
        auto app = check(key.assertion(assertion_claims(cid, now(), kAud)), cid);
        ASSERT_TRUE(app.has_value()) << alg << ": " << app.error().describe();
        EXPECT_EQ(app->client_id, cid);
        EXPECT_TRUE(app->uses_key());
        // With the kid (the thumbprint) and without the client_id parameter.
        auto with_kid =
            check(key.assertion(assertion_claims(cid, now(), kAud), key.public_key().thumbprint()));
        EXPECT_TRUE(with_kid.has_value()) << alg << ": " << with_kid.error().describe();
    }
}

TEST_F(KeyAuthTest, KeyAppHasNoSecretAndHistoryNamesTheKey) {
    TestKey key = TestKey::generate("ES256");
    std::string cid = create_key_app("keyed", key);
    EXPECT_EQ(stored_hash("keyed"), "");
    // Not even an empty secret passes.
    EXPECT_FALSE(apps->authenticate(cid, "").has_value());
    auto events = apps->events("keyed");
    ASSERT_TRUE(events.has_value());
    ASSERT_EQ(events->size(), 2u);
    EXPECT_EQ((*events)[1].event, "key-registered");
    EXPECT_NE((*events)[1].detail.find(key.public_key().thumbprint()), std::string::npos);
    auto keys = apps->keys("keyed");
    ASSERT_TRUE(keys.has_value());
    ASSERT_EQ(keys->size(), 1u);
    EXPECT_EQ((*keys)[0].algorithm, "ES256");
    EXPECT_FALSE((*keys)[0].valid_until_ms.has_value());
    // A secret app cannot get a key, a key app cannot rotate a secret.
    ASSERT_TRUE(apps->create("secret-app").has_value());
    auto set = apps->set_key("secret-app", key.public_key(), std::chrono::seconds(0), "bob");
    ASSERT_FALSE(set.has_value());
    EXPECT_EQ(set.error().code, ErrorCode::conflict);
    auto rotated = apps->rotate("keyed", std::chrono::seconds(0), "bob");
    ASSERT_FALSE(rotated.has_value());
    EXPECT_EQ(rotated.error().code, ErrorCode::conflict);
    EXPECT_NE(rotated.error().message.find("set-key"), std::string::npos);
}

TEST_F(KeyAuthTest, WrongKeyWrongAlgorithmAndAlgNoneAreRefused) {
    TestKey key = TestKey::generate("ES256");
    std::string cid = create_key_app("app", key);
    auto claims = assertion_claims(cid, now(), kAud);
    expect_refused(check(TestKey::generate("ES256").assertion(claims)), "signature");
    expect_refused(check(TestKey::generate("EdDSA").assertion(claims)), "signature");
    // The right signature under a header naming another algorithm.
    auto relabel = [&](const std::string& alg) {
        json header = {{"alg", alg}, {"typ", "JWT"}};
        return key.sign(header, claims);
    };
    expect_refused(check(relabel("RS256")), "signature");
    expect_refused(check(relabel("ES384")), "algorithm");
    expect_refused(check(relabel("HS256")), "algorithm");
    // alg none with an empty signature.
    std::string none = crypto::base64url_encode(json{{"alg", "none"}}.dump()) + "." +
                       crypto::base64url_encode(claims.dump()) + ".";
    expect_refused(check(none), "algorithm");
    // A kid that names no key of the app.
    expect_refused(check(key.assertion(assertion_claims(cid, now(), kAud), "other-kid")),
                   "signature");
    // Garbage.
    expect_refused(check("a.b.c"), "");
    expect_refused(check(std::string(kMaxAssertionBytes + 1, 'a')), "longer");
}

TEST_F(KeyAuthTest, ClaimsAreChecked) {
    TestKey key = TestKey::generate("EdDSA");
    std::string cid = create_key_app("app", key);
    auto with = [&](const std::function<void(json&)>& change) {
        json c = assertion_claims(cid, now(), kAud);
        change(c);
        return key.assertion(c);
    };
    expect_refused(check(with([&](json& c) { c["exp"] = now() - 120; })), "expired");
    expect_refused(check(with([&](json& c) { c.erase("exp"); })), "exp");
    expect_refused(check(with([&](json& c) { c["exp"] = now() + 3600; })), "ahead");
    expect_refused(check(with([&](json& c) { c["nbf"] = now() + 120; })), "not valid yet");
    expect_refused(check(with([&](json& c) { c["iat"] = now() + 120; })), "future");
    expect_refused(check(with([&](json& c) { c["aud"] = "https://other.example/oauth2/token"; })),
                   "aud");
    expect_refused(check(with([&](json& c) { c.erase("aud"); })), "aud");
    expect_refused(check(with([&](json& c) { c["sub"] = "cid_other"; })), "sub");
    expect_refused(check(with([&](json& c) { c.erase("jti"); })), "jti");
    expect_refused(check(with([](json&) {}), "cid_other"), "client_id");
    // An unknown client: the same kind of refusal as a bad signature.
    expect_refused(check(with([](json& c) { c["iss"] = c["sub"] = "cid_nobody"; })),
                   "unknown client");
    // Within the leeway, and aud as an array, pass.
    EXPECT_TRUE(check(with([&](json& c) { c["nbf"] = c["iat"] = now() + 20; })).has_value());
    EXPECT_TRUE(check(with([&](json& c) {
                    c["aud"] = json::array({"https://elsewhere.example", kAud});
                })).has_value());
}

TEST_F(KeyAuthTest, ReplayedJtiIsRefusedUntilTheAssertionCouldNoLongerBeValid) {
    TestKey key = TestKey::generate("ES256");
    std::string cid = create_key_app("app", key);
    json claims = assertion_claims(cid, now(), kAud);
    std::string assertion = key.assertion(claims);
    ASSERT_TRUE(check(assertion).has_value());
    expect_refused(check(assertion), "replay");
    // The same jti re-signed in a new assertion is a replay too.
    claims["iat"] = now() + 1;
    expect_refused(check(key.assertion(claims)), "replay");
    // Another jti passes.
    EXPECT_TRUE(check(key.assertion(assertion_claims(cid, now(), kAud))).has_value());
    // Long after expiry the jti is forgotten (the table does not grow forever)
    // and the old assertion is refused as expired, not accepted.
    clock.advance_ms(600'000);
    expect_refused(check(assertion), "expired");
    EXPECT_TRUE(check(key.assertion(assertion_claims(cid, now(), kAud))).has_value());
    auto remembered = store->with([](sqlite::Database& db) {
        auto st = db.prepare("SELECT count(*) FROM client_assertion_jtis");
        (void)st->step();
        return st->integer(0);
    });
    EXPECT_EQ(remembered, 1);
}

TEST_F(KeyAuthTest, RevokedAppGetsNothing) {
    TestKey key = TestKey::generate("EdDSA");
    std::string cid = create_key_app("app", key);
    ASSERT_TRUE(apps->revoke("app", "alice").has_value());
    expect_refused(check(key.assertion(assertion_claims(cid, now(), kAud))), "revoked");
    auto keys = apps->keys("app");
    ASSERT_TRUE(keys.has_value());
    EXPECT_TRUE(keys->empty());
    EXPECT_EQ(apps->set_key("app", TestKey::generate("EdDSA").public_key(), std::chrono::seconds(0),
                            "alice")
                  .error()
                  .code,
              ErrorCode::conflict);
}

TEST_F(KeyAuthTest, SetKeyKeepsThePreviousKeyForTheOverlapOnly) {
    const TestKey first = TestKey::generate("EdDSA");
    const TestKey& second = TestKey::shared("RS256");
    TestKey third = TestKey::generate("ES256");
    std::string cid = create_key_app("app", first);
    auto fresh = [&](const TestKey& k) {
        return check(k.assertion(assertion_claims(cid, now(), kAud)));
    };
    EXPECT_FALSE(
        apps->set_key("app", second.public_key(), std::chrono::seconds(-1), "bob").has_value());
    auto same = apps->set_key("app", first.public_key(), std::chrono::seconds(60), "bob");
    ASSERT_FALSE(same.has_value());
    EXPECT_EQ(same.error().code, ErrorCode::invalid_argument);

    auto change = apps->set_key("app", second.public_key(), std::chrono::seconds(60), "bob");
    ASSERT_TRUE(change.has_value()) << change.error().describe();
    EXPECT_EQ(change->key.thumbprint, second.public_key().thumbprint());
    ASSERT_TRUE(change->previous.has_value());
    EXPECT_EQ(change->previous->thumbprint, first.public_key().thumbprint());
    EXPECT_EQ(*change->previous->valid_until_ms, clock.now_ms() + 60'000);
    EXPECT_TRUE(fresh(first).has_value());
    EXPECT_TRUE(fresh(second).has_value());

    clock.advance_ms(59'000);
    EXPECT_TRUE(fresh(first).has_value());
    clock.advance_ms(2'000);
    expect_refused(fresh(first), "signature");
    EXPECT_TRUE(fresh(second).has_value());

    // A rotation during an overlap drops the oldest key at once (at most two).
    ASSERT_TRUE(apps->set_key("app", first.public_key(), std::chrono::seconds(60), "bob"));
    auto again = apps->set_key("app", third.public_key(), std::chrono::seconds(60), "bob");
    ASSERT_TRUE(again.has_value());
    EXPECT_TRUE(again->dropped_older);
    expect_refused(fresh(second), "signature");
    EXPECT_TRUE(fresh(first).has_value());
    EXPECT_TRUE(fresh(third).has_value());
    auto keys = apps->keys("app");
    ASSERT_TRUE(keys.has_value());
    EXPECT_EQ(keys->size(), 2u);

    // Overlap 0: the replaced key stops at once.
    ASSERT_TRUE(apps->set_key("app", second.public_key(), std::chrono::seconds(0), "bob"));
    expect_refused(fresh(third), "signature");
    expect_refused(fresh(first), "signature");
    EXPECT_TRUE(fresh(second).has_value());

    auto events = apps->events("app");
    ASSERT_TRUE(events.has_value());
    EXPECT_EQ(events->back().event, "key-rotated");
    EXPECT_EQ(events->back().actor, "bob");
    EXPECT_NE(events->back().detail.find(second.public_key().thumbprint()), std::string::npos);
}

TEST_F(KeyAuthTest, SecretAppsCannotUseAssertionsAndKeepWorking) {
    auto created = apps->create("plain");
    ASSERT_TRUE(created.has_value());
    TestKey key = TestKey::generate("EdDSA");
    expect_refused(check(key.assertion(assertion_claims(created->app.client_id, now(), kAud))),
                   "unknown client");
    EXPECT_TRUE(apps->authenticate(created->app.client_id, created->client_secret).has_value());
}

}  // namespace
}  // namespace sa::hub::identity
