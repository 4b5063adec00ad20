#include "agent/secrets/secret_stores.h"

#include <gtest/gtest.h>

#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace sa::agent::secrets {
namespace {

// Answers from a script (last answer repeats), counting calls.
class ScriptedStore final : public SecretStore {
  public:
    explicit ScriptedStore(std::deque<Result<std::string>> answers)
        : answers_(std::move(answers)) {}
    Result<SecretValue> read(const SecretRef& ref) override {
        std::lock_guard lock(mutex_);
        ++calls;
        paths.push_back(ref.path);
        Result<std::string> answer = answers_.front();
        if (answers_.size() > 1) answers_.pop_front();
        if (!answer) return std::unexpected(answer.error());
        return SecretValue::copy_of(*answer);
    }
    void set(std::deque<Result<std::string>> answers) {
        std::lock_guard lock(mutex_);
        answers_ = std::move(answers);
    }
    int calls = 0;
    std::vector<std::string> paths;

  private:
    std::mutex mutex_;
    std::deque<Result<std::string>> answers_;
};

Result<std::string> unavailable() {
    return fail(ErrorCode::unavailable, "store: HTTP 503");
}

class SecretStoresTest : public ::testing::Test {
  protected:
    ScriptedStore& add(std::deque<Result<std::string>> answers, AccessOptions options = {}) {
        auto store = std::make_unique<ScriptedStore>(std::move(answers));
        ScriptedStore& ref = *store;
        stores_.add("vault", std::move(store), options);
        stores_.set_sleeper_for_testing(
            [this](std::chrono::milliseconds wait) { waits_.push_back(wait); });
        stores_.set_now_for_testing([this] { return now_; });
        stores_.set_observer([this](const AccessEvent& event) { events_.push_back(event); });
        return ref;
    }

    SecretStores stores_;
    std::vector<std::chrono::milliseconds> waits_;
    std::vector<AccessEvent> events_;
    std::chrono::steady_clock::time_point now_{};
};

TEST_F(SecretStoresTest, RetriesOnlyUnavailableWithBoundedBackoff) {
    ScriptedStore& store = add({unavailable(), unavailable(), std::string("s3cr3t-value")},
                               AccessOptions{.max_attempts = 3,
                                             .retry_base = std::chrono::milliseconds(100),
                                             .retry_max = std::chrono::milliseconds(150)});
    auto value = stores_.read(SecretRef{"vault", "db", "password"},
                              AccessContext{.purpose = "source password", .job_id = "job-1"});
    ASSERT_TRUE(value) << value.error().describe();
    EXPECT_EQ(value->reveal(), "s3cr3t-value");
    EXPECT_EQ(store.calls, 3);
    ASSERT_EQ(waits_.size(), 2u);
    EXPECT_LE(waits_[0].count(), 100);  // full jitter below base * 2^0
    EXPECT_LE(waits_[1].count(), 150);  // capped by retry_max
    ASSERT_EQ(events_.size(), 1u);
    const AccessEvent& event = events_[0];
    EXPECT_EQ(event.store, "vault");
    EXPECT_EQ(event.path, "db");
    EXPECT_EQ(event.key, "password");
    EXPECT_EQ(event.purpose, "source password");
    EXPECT_EQ(event.job_id, "job-1");
    EXPECT_EQ(event.outcome, "ok");
    EXPECT_EQ(event.attempts, 3);
    EXPECT_FALSE(event.cached);
    EXPECT_GE(event.latency_ms, 0);
}

TEST_F(SecretStoresTest, GivesUpAfterMaxAttemptsWithTheStoresError) {
    ScriptedStore& store = add({unavailable()}, AccessOptions{.max_attempts = 2});
    auto value = stores_.read(SecretRef{"vault", "db", ""});
    ASSERT_FALSE(value);
    EXPECT_EQ(value.error().code, ErrorCode::unavailable);
    EXPECT_EQ(value.error().message, "store: HTTP 503");
    EXPECT_EQ(store.calls, 2);
    ASSERT_EQ(events_.size(), 1u);
    EXPECT_EQ(events_[0].outcome, "unavailable");
    EXPECT_EQ(events_[0].error, "store: HTTP 503");
}

TEST_F(SecretStoresTest, NotFoundAndPermissionDeniedAreNotRetried) {
    ScriptedStore& store = add({fail(ErrorCode::not_found, "no such secret")});
    EXPECT_EQ(stores_.read(SecretRef{"vault", "a", ""}).error().code, ErrorCode::not_found);
    EXPECT_EQ(store.calls, 1);
    store.set({fail(ErrorCode::permission_denied, "denied")});
    EXPECT_EQ(stores_.read(SecretRef{"vault", "a", ""}).error().code, ErrorCode::permission_denied);
    EXPECT_EQ(store.calls, 2);
    EXPECT_TRUE(waits_.empty());
    ASSERT_EQ(events_.size(), 2u);
    EXPECT_EQ(events_[0].outcome, "not_found");
    EXPECT_EQ(events_[1].outcome, "permission_denied");
}

TEST_F(SecretStoresTest, WithoutCacheEveryReadReachesTheStoreSoRotationIsSeen) {
    ScriptedStore& store = add({std::string("old-value")});
    EXPECT_EQ(stores_.read(SecretRef{"vault", "k", ""})->reveal(), "old-value");
    store.set({std::string("new-value")});
    EXPECT_EQ(stores_.read(SecretRef{"vault", "k", ""})->reveal(), "new-value");
    EXPECT_EQ(store.calls, 2);
}

TEST_F(SecretStoresTest, CacheServesWithinTtlAndRefetchesAfter) {
    ScriptedStore& store =
        add({std::string("first-value")}, AccessOptions{.cache_ttl = std::chrono::seconds(30)});
    EXPECT_EQ(stores_.read(SecretRef{"vault", "k", "x"})->reveal(), "first-value");
    store.set({std::string("second-value")});
    now_ += std::chrono::seconds(29);
    EXPECT_EQ(stores_.read(SecretRef{"vault", "k", "x"})->reveal(), "first-value");
    EXPECT_EQ(store.calls, 1);
    ASSERT_EQ(events_.size(), 2u);
    EXPECT_TRUE(events_[1].cached);
    EXPECT_EQ(events_[1].attempts, 0);
    now_ += std::chrono::seconds(1);
    EXPECT_EQ(stores_.read(SecretRef{"vault", "k", "x"})->reveal(), "second-value");
    EXPECT_EQ(store.calls, 2);
    // Another key of the same path is its own entry.
    EXPECT_EQ(stores_.read(SecretRef{"vault", "k", "y"})->reveal(), "second-value");
    EXPECT_EQ(store.calls, 3);
}

TEST_F(SecretStoresTest, CacheIsBoundedAndEvictsTheOldest) {
    ScriptedStore& store =
        add({std::string("value-x")},
            AccessOptions{.cache_ttl = std::chrono::seconds(60), .cache_max_entries = 2});
    for (const char* path : {"a", "b"}) {
        ASSERT_TRUE(stores_.read(SecretRef{"vault", path, ""}));
        now_ += std::chrono::seconds(1);
    }
    ASSERT_TRUE(stores_.read(SecretRef{"vault", "c", ""}));  // evicts "a"
    EXPECT_EQ(store.calls, 3);
    ASSERT_TRUE(stores_.read(SecretRef{"vault", "b", ""}));  // still cached
    EXPECT_EQ(store.calls, 3);
    ASSERT_TRUE(stores_.read(SecretRef{"vault", "a", ""}));  // was evicted
    EXPECT_EQ(store.calls, 4);
}

TEST_F(SecretStoresTest, FailuresAreNotCached) {
    ScriptedStore& store = add({fail(ErrorCode::not_found, "missing"), std::string("appeared")},
                               AccessOptions{.cache_ttl = std::chrono::seconds(60)});
    EXPECT_FALSE(stores_.read(SecretRef{"vault", "k", ""}));
    EXPECT_EQ(stores_.read(SecretRef{"vault", "k", ""})->reveal(), "appeared");
    EXPECT_EQ(store.calls, 2);
}

TEST_F(SecretStoresTest, UnknownStoreIsNotFoundAndAudited) {
    add({std::string("v")});
    auto value = stores_.read(SecretRef{"nope", "k", ""}, AccessContext{.purpose = "p"});
    ASSERT_FALSE(value);
    EXPECT_EQ(value.error().code, ErrorCode::not_found);
    EXPECT_EQ(value.error().message, "unknown secret store \"nope\"");
    ASSERT_EQ(events_.size(), 1u);
    EXPECT_EQ(events_[0].outcome, "not_found");
    EXPECT_EQ(events_[0].attempts, 0);
}

TEST_F(SecretStoresTest, ReaderCarriesItsPurpose) {
    add({std::string("token-value")});
    CredentialReader read = stores_.reader("vault token");
    ASSERT_TRUE(read(SecretRef{"vault", "t", ""}));
    ASSERT_EQ(events_.size(), 1u);
    EXPECT_EQ(events_[0].purpose, "vault token");
}

TEST_F(SecretStoresTest, ConcurrentReadsWithCache) {
    ScriptedStore& store =
        add({std::string("shared-value")}, AccessOptions{.cache_ttl = std::chrono::seconds(60)});
    stores_.set_observer({});
    std::vector<std::thread> threads;
    std::atomic<int> ok{0};
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 50; ++i) {
                auto v = stores_.read(SecretRef{"vault", "k" + std::to_string(i % 5), ""});
                if (v && v->reveal() == "shared-value") ++ok;
            }
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(ok.load(), 200);
    EXPECT_GE(store.calls, 5);
    EXPECT_LE(store.calls, 20);  // at most one miss per key and thread
}

}  // namespace
}  // namespace sa::agent::secrets
