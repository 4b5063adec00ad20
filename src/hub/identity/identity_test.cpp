#include <gtest/gtest.h>

#include "common/crypto/encoding.h"
#include "common/crypto/password_hash.h"
#include "common/jose/jws.h"
#include "common/protocol/protocol.h"
#include "hub/identity/app_registry.h"
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

}  // namespace
}  // namespace sa::hub::identity
