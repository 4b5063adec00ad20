#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <map>
#include <thread>

#include "common/jose/jws.h"
#include "common/protocol/protocol.h"
#include "common/util/time.h"
#include "hub/identity/app_registry.h"
#include "hub/jobs/dispatcher.h"
#include "hub/jobs/job_queue.h"
#include "hub/jobs/job_signer.h"
#include "hub/testing/test_support.h"

namespace sa::hub::jobs {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

class JobsTest : public ::testing::Test {
  protected:
    void SetUp() override {
        auto s = store::Store::open(tmp.file("hub.db"));
        ASSERT_TRUE(s.has_value()) << s.error().describe();
        store = std::move(*s);
        auto n = store::ChangeNotifier::start(tmp.file("hub.db"));
        ASSERT_TRUE(n.has_value());
        notifier = std::move(*n);
        identity::AppRegistry apps(*store, clock, testing::fast_scrypt());
        auto a = apps.create("app-a");
        auto b = apps.create("app-b");
        ASSERT_TRUE(a && b);
        client_a = a->app.client_id;
        queue = std::make_unique<JobQueue>(*store, clock, notifier.get());
        dispatcher = std::make_unique<Dispatcher>(*queue, signer, *notifier);
    }

    testing::TempDir tmp;
    clock::ManualClock clock{util::unix_millis()};
    std::unique_ptr<store::Store> store;
    std::unique_ptr<store::ChangeNotifier> notifier;
    std::unique_ptr<JobQueue> queue;
    JobSigner signer{crypto::Ed25519PrivateKey::generate()};
    std::unique_ptr<Dispatcher> dispatcher;
    std::string client_a;
};

TEST_F(JobsTest, CreateValidatesAppSourceAndOperation) {
    auto ok = queue->create("app-a", "inventory_db-1.main", "extract_metadata");
    ASSERT_TRUE(ok.has_value()) << ok.error().describe();
    EXPECT_EQ(ok->status, "queued");
    EXPECT_EQ(ok->attempts, 0);
    EXPECT_EQ(ok->created_at_ms, clock.now_ms());

    EXPECT_EQ(queue->create("nope", "inv", "extract_metadata").error().code, ErrorCode::not_found);
    EXPECT_EQ(queue->create("app-a", "inv", "drop_tables").error().code,
              ErrorCode::invalid_argument);
    for (const char* bad : {"", "has space", "x/y", "semi;colon"}) {
        EXPECT_EQ(queue->create("app-a", bad, "extract_metadata").error().code,
                  ErrorCode::invalid_argument)
            << bad;
    }
    EXPECT_FALSE(queue->create("app-a", std::string(129, 's'), "extract_metadata").has_value());
    EXPECT_TRUE(queue->create("app-a", std::string(128, 's'), "extract_metadata").has_value());

    auto got = queue->get(ok->id);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->source, "inventory_db-1.main");
    EXPECT_EQ(queue->get("missing").error().code, ErrorCode::not_found);
}

TEST_F(JobsTest, LeaseIsImmediateWhenAJobIsQueued) {
    auto job = queue->create("app-a", "inv", "extract_metadata");
    ASSERT_TRUE(job.has_value());
    auto t0 = SteadyClock::now();
    auto lease = dispatcher->lease("app-a", "edge-1", 10s);
    EXPECT_LT(SteadyClock::now() - t0, 1s);
    ASSERT_TRUE(lease.has_value()) << lease.error().describe();
    ASSERT_TRUE(lease->has_value());
    const Lease& l = **lease;
    EXPECT_EQ(l.job_id, job->id);
    EXPECT_EQ(l.lease_expires_at, clock.now_seconds() + protocol::kLeaseLifetimeSeconds);

    auto after = queue->get(job->id);
    ASSERT_TRUE(after.has_value());
    EXPECT_EQ(after->status, "leased");
    EXPECT_EQ(after->lease_id, l.lease_id);
    EXPECT_EQ(after->agent_id, "edge-1");
    EXPECT_EQ(after->attempts, 1);
    EXPECT_EQ(after->leased_at_ms, clock.now_ms());
    EXPECT_EQ(after->lease_expires_at_ms, clock.now_ms() + 600'000);

    // Oldest first, and a leased job is not handed out twice.
    auto second = queue->create("app-a", "inv2", "extract_metadata");
    auto next = dispatcher->lease("app-a", "edge-2", 0s);
    ASSERT_TRUE(next && *next);
    EXPECT_EQ((*next)->job_id, second->id);
    auto none = dispatcher->lease("app-a", "edge-3", 0s);
    ASSERT_TRUE(none.has_value());
    EXPECT_FALSE(none->has_value());
}

TEST_F(JobsTest, EmptyQueueAnswersNothingAfterTheWait) {
    auto t0 = SteadyClock::now();
    auto lease = dispatcher->lease("app-a", "edge-1", 200ms);
    auto elapsed = SteadyClock::now() - t0;
    ASSERT_TRUE(lease.has_value());
    EXPECT_FALSE(lease->has_value());
    EXPECT_GE(elapsed, 190ms);
    EXPECT_LT(elapsed, 10s);
}

TEST_F(JobsTest, JobsOfAnotherAppAreNotHandedOut) {
    ASSERT_TRUE(queue->create("app-b", "inv", "extract_metadata").has_value());
    auto lease = dispatcher->lease("app-a", "edge-1", 0s);
    ASSERT_TRUE(lease.has_value());
    EXPECT_FALSE(lease->has_value());
}

TEST_F(JobsTest, WaitingLeaseWakesWhenAnotherConnectionCreatesAJob) {
    // The second Store stands for `agent-hub job create` in another process:
    // its JobQueue has no notifier, so only the data_version watcher can tell.
    auto cli_store = store::Store::open(tmp.file("hub.db"), store::Store::Create::never);
    ASSERT_TRUE(cli_store.has_value());
    JobQueue cli_queue(**cli_store, clock);

    auto waiting = std::async(std::launch::async, [&] {
        auto l = dispatcher->lease("app-a", "edge-1", 20s);
        return std::make_pair(std::move(l), SteadyClock::now());
    });
    // Let the poll start waiting; correctness does not depend on this pause,
    // it only makes the test exercise the wake-up path rather than the
    // immediate one.
    std::this_thread::sleep_for(100ms);
    ASSERT_EQ(waiting.wait_for(0s), std::future_status::timeout);
    auto created = cli_queue.create("app-a", "inv", "extract_metadata");
    auto created_at = SteadyClock::now();
    ASSERT_TRUE(created.has_value());
    ASSERT_EQ(waiting.wait_for(5s), std::future_status::ready);
    auto [lease, returned_at] = waiting.get();
    ASSERT_TRUE(lease && *lease);
    EXPECT_EQ((*lease)->job_id, created->id);
    // Far below the 20 s wait: the poll woke on the change. Speed is measured in bench/.
    EXPECT_LT(returned_at - created_at, 5s);
}

TEST_F(JobsTest, ExpiredLeaseGoesBackToTheQueueWithANewLease) {
    auto job = queue->create("app-a", "inv", "extract_metadata");
    auto first = queue->try_lease("app-a", "edge-1");
    ASSERT_TRUE(first && *first);
    std::string old_lease = *(*first)->job.lease_id;

    clock.advance_ms(int64_t{protocol::kLeaseLifetimeSeconds} * 1000 - 1);
    auto early = queue->try_lease("app-a", "edge-2");
    ASSERT_TRUE(early.has_value());
    EXPECT_FALSE(early->has_value());

    clock.advance_ms(2);
    auto second = queue->try_lease("app-a", "edge-2");
    ASSERT_TRUE(second && *second);
    EXPECT_EQ((*second)->job.id, job->id);
    EXPECT_NE(*(*second)->job.lease_id, old_lease);
    EXPECT_EQ((*second)->job.attempts, 2);
    EXPECT_EQ((*second)->job.agent_id, "edge-2");

    auto lost = store->with([&](sqlite::Database& db) {
        return check_lease(db, "app-a", job->id, old_lease, clock.now_ms());
    });
    ASSERT_FALSE(lost.has_value());
    EXPECT_EQ(lost.error().code, "lease_lost");
    auto live = store->with([&](sqlite::Database& db) {
        return check_lease(db, "app-a", job->id, *(*second)->job.lease_id, clock.now_ms());
    });
    EXPECT_TRUE(live.has_value());
    // Another app never holds a lease on this job, whatever the lease id.
    auto foreign = store->with([&](sqlite::Database& db) {
        return check_lease(db, "app-b", job->id, *(*second)->job.lease_id, clock.now_ms());
    });
    EXPECT_FALSE(foreign.has_value());
}

TEST_F(JobsTest, SignedJobVerifiesWithTheJobSigningKeyAndNamesTheClient) {
    auto job = queue->create("app-a", "crm", "extract_metadata");
    auto lease = dispatcher->lease("app-a", "edge-1", 0s);
    ASSERT_TRUE(lease && *lease);
    const Lease& l = **lease;

    // What an agent does with the public key its operator pinned.
    auto pinned = crypto::Ed25519PublicKey::from_pem(signer.public_key().pem());
    ASSERT_TRUE(pinned.has_value());
    auto jws = jose::verify(l.job, *pinned);
    ASSERT_TRUE(jws.has_value()) << jws.error().describe();
    auto claims = jose::check_claims(*jws, jose::ClaimRules{.issuer = "agent-hub",
                                                            .audience = client_a,
                                                            .type = protocol::kJobType,
                                                            .now = clock.now_seconds()});
    EXPECT_TRUE(claims.has_value()) << claims.error().describe();
    const auto& p = jws->payload;
    EXPECT_EQ(jws->header["kid"], signer.key_id());
    EXPECT_EQ(p["aud"], client_a);
    EXPECT_EQ(p["jti"], l.lease_id);
    EXPECT_EQ(p["job_id"], job->id);
    EXPECT_EQ(p["app"], "app-a");
    EXPECT_EQ(p["source"], "crm");
    EXPECT_EQ(p["operation"], "extract_metadata");
    EXPECT_EQ(p["exp"].get<int64_t>(), l.lease_expires_at);
    EXPECT_EQ(p["nbf"].get<int64_t>(), p["iat"].get<int64_t>());

    JobSigner other(crypto::Ed25519PrivateKey::generate());
    EXPECT_FALSE(jose::verify(l.job, other.public_key()).has_value());
}

// The claims of a job leased through the dispatcher, verified as an agent does.
nlohmann::json leased_claims(Dispatcher& dispatcher, const JobSigner& signer) {
    auto lease = dispatcher.lease("app-a", "edge-1", 0s);
    EXPECT_TRUE(lease && *lease);
    if (!lease || !*lease) return nullptr;
    auto jws = jose::verify((*lease)->job, signer.public_key());
    EXPECT_TRUE(jws.has_value());
    return jws ? jws->payload : nlohmann::json(nullptr);
}

TEST_F(JobsTest, CreateChecksTheModeAndDefaultsExtractionsToFull) {
    auto full = queue->create("app-a", "crm", "extract_metadata");
    ASSERT_TRUE(full.has_value());
    EXPECT_EQ(full->mode, "full");
    auto incremental = queue->create("app-a", "crm", "extract_metadata", {}, "incremental");
    ASSERT_TRUE(incremental.has_value());
    EXPECT_EQ(queue->get(incremental->id)->mode, "incremental");
    EXPECT_FALSE(queue->get(incremental->id)->baseline_job_id.has_value());
    auto preflight = queue->create("app-a", "crm", "preflight");
    ASSERT_TRUE(preflight.has_value());
    EXPECT_FALSE(preflight->mode.has_value());

    auto bad = queue->create("app-a", "crm", "extract_metadata", {}, "partial");
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(bad.error().message.find("--mode must be full or incremental"), std::string::npos);
    auto wrong_op = queue->create("app-a", "crm", "list_schemas", {}, "full");
    ASSERT_FALSE(wrong_op.has_value());
    EXPECT_EQ(wrong_op.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(wrong_op.error().message.find("only for --operation extract_metadata"),
              std::string::npos);

    auto shown = to_json(*queue->get(incremental->id));
    EXPECT_EQ(shown["mode"], "incremental");
    EXPECT_TRUE(shown["baseline_job_id"].is_null());
    EXPECT_TRUE(shown["applied"].is_null());
    EXPECT_TRUE(to_json(*preflight)["mode"].is_null());
}

TEST_F(JobsTest, ModeClaimIsSignedForExtractionsOnlyWithTheBaselineOfTheLease) {
    // A full job: mode full, no baseline.
    ASSERT_TRUE(queue->create("app-a", "crm", "extract_metadata").has_value());
    auto claims = leased_claims(*dispatcher, signer);
    EXPECT_EQ(claims["mode"], "full");
    EXPECT_FALSE(claims.contains("baseline_job_id"));

    // Incremental without a catalog: nothing to be incremental against.
    auto first = queue->create("app-a", "crm", "extract_metadata", {}, "incremental");
    claims = leased_claims(*dispatcher, signer);
    EXPECT_EQ(claims["job_id"], first->id);
    EXPECT_EQ(claims["mode"], "full");
    EXPECT_FALSE(claims.contains("baseline_job_id"));
    EXPECT_EQ(queue->get(first->id)->mode, "incremental");  // requested stays

    // The interactive operations carry neither claim.
    ASSERT_TRUE(queue->create("app-a", "crm", "test_connection").has_value());
    claims = leased_claims(*dispatcher, signer);
    EXPECT_EQ(claims["operation"], "test_connection");
    EXPECT_FALSE(claims.contains("mode"));
    EXPECT_FALSE(claims.contains("baseline_job_id"));

    // With a catalog version (set by a successful extraction), an
    // incremental job is signed against it, and a re-lease after expiry
    // takes the version of that moment.
    auto set_version = [&](const std::string& job_id) {
        auto s = store->with([&](sqlite::Database& db) {
            return store::execute(db,
                                  "INSERT INTO catalog_sources(app, source, job_id, mode, "
                                  "committed_at_ms) VALUES ('app-a', 'crm', ?, 'full', 1) ON "
                                  "CONFLICT(app, source) DO UPDATE SET job_id = excluded.job_id",
                                  job_id);
        });
        ASSERT_TRUE(s.has_value()) << s.error().describe();
    };
    set_version("job-v1");
    auto inc = queue->create("app-a", "crm", "extract_metadata", {}, "incremental");
    claims = leased_claims(*dispatcher, signer);
    EXPECT_EQ(claims["job_id"], inc->id);
    EXPECT_EQ(claims["mode"], "incremental");
    EXPECT_EQ(claims["baseline_job_id"], "job-v1");
    EXPECT_EQ(queue->get(inc->id)->baseline_job_id, "job-v1");
    EXPECT_EQ(signed_mode(*queue->get(inc->id)), "incremental");
    // Another source's version is not this one's.
    auto other = queue->create("app-a", "erp", "extract_metadata", {}, "incremental");
    claims = leased_claims(*dispatcher, signer);
    EXPECT_EQ(claims["job_id"], other->id);
    EXPECT_EQ(claims["mode"], "full");

    set_version("job-v2");
    clock.advance_ms((queue->lease_lifetime().count() + 1) * 1000);
    // Every lease expired: the five jobs are handed out again.
    std::map<std::string, nlohmann::json> again;
    for (int i = 0; i < 5; ++i) {
        claims = leased_claims(*dispatcher, signer);
        again[claims["job_id"].get<std::string>()] = claims;
    }
    ASSERT_EQ(again.count(inc->id), 1u);
    EXPECT_EQ(again[inc->id]["mode"], "incremental");
    EXPECT_EQ(again[inc->id]["baseline_job_id"], "job-v2");
    EXPECT_EQ(queue->get(inc->id)->baseline_job_id, "job-v2");
    // The first job now finds a version too.
    EXPECT_EQ(queue->get(first->id)->baseline_job_id, "job-v2");
}

TEST_F(JobsTest, FailEndsTheJobWithTheReason) {
    auto job = queue->create("app-a", "inv", "extract_metadata");
    auto lease = queue->try_lease("app-a", "edge-1");
    ASSERT_TRUE(lease && *lease);
    std::string lease_id = *(*lease)->job.lease_id;

    FailReport bad_reason{lease_id, "edge-1", "refused", "because", "x"};
    EXPECT_EQ(queue->fail("app-a", job->id, bad_reason).error().code, "invalid_request");
    FailReport bad_outcome{lease_id, "edge-1", "exploded", "bad_signature", "x"};
    EXPECT_EQ(queue->fail("app-a", job->id, bad_outcome).error().code, "invalid_request");
    FailReport wrong_lease{"not-the-lease", "edge-1", "refused", "bad_signature", "x"};
    EXPECT_EQ(queue->fail("app-a", job->id, wrong_lease).error().code, "lease_lost");
    FailReport other_app{lease_id, "edge-1", "refused", "bad_signature", "x"};
    EXPECT_EQ(queue->fail("app-b", job->id, other_app).error().code, "lease_lost");

    // 600 two-byte characters: cut to at most 1000 bytes on a character boundary.
    std::string long_message;
    for (int i = 0; i < 600; ++i) long_message += "\xC3\xA9";
    FailReport good{lease_id, "edge-1", "refused", "bad_signature", long_message};
    auto done = queue->fail("app-a", job->id, good);
    ASSERT_TRUE(done.has_value()) << done.error().description;
    EXPECT_EQ(done->status, "refused");
    EXPECT_EQ(done->reason_code, "bad_signature");
    ASSERT_TRUE(done->message.has_value());
    EXPECT_EQ(done->message->size(), 1000u);
    EXPECT_TRUE(done->completed_at_ms.has_value());
    // A finished job cannot be reported twice.
    EXPECT_EQ(queue->fail("app-a", job->id, good).error().code, "lease_lost");
    auto json = to_json(*done);
    EXPECT_EQ(json["status"], "refused");
    EXPECT_FALSE(json.contains("lease_id"));
}

TEST(TruncateUtf8, NeverSplitsACharacter) {
    EXPECT_EQ(truncate_utf8("hello", 10), "hello");
    EXPECT_EQ(truncate_utf8("hello", 3), "hel");
    EXPECT_EQ(truncate_utf8("a\xE2\x82\xAC", 3), "a");  // the euro sign needs 3 bytes
    EXPECT_EQ(truncate_utf8("a\xE2\x82\xAC", 4), "a\xE2\x82\xAC");
}

}  // namespace
}  // namespace sa::hub::jobs
