// Issue #6 on the hub side: operations and filters in the signed job,
// heartbeats that extend the lease, cancellation, the new reason codes, and
// job-signing key rotation picked up by a running signer.
#include <gtest/gtest.h>

#include <chrono>

#include "common/jose/jws.h"
#include "common/protocol/protocol.h"
#include "common/util/files.h"
#include "common/util/time.h"
#include "hub/identity/app_registry.h"
#include "hub/jobs/dispatcher.h"
#include "hub/jobs/job_queue.h"
#include "hub/jobs/job_signer.h"
#include "hub/pki/pki.h"
#include "hub/testing/test_support.h"

namespace sa::hub::jobs {
namespace {

using namespace std::chrono_literals;

constexpr int64_t kLeaseMs = 30'000;

class LifecycleTest : public ::testing::Test {
  protected:
    void SetUp() override {
        auto s = store::Store::open(tmp.file("hub.db"));
        ASSERT_TRUE(s.has_value()) << s.error().describe();
        store = std::move(*s);
        identity::AppRegistry apps(*store, clock, testing::fast_scrypt());
        auto a = apps.create("app-a");
        ASSERT_TRUE(a && apps.create("app-b"));
        client_a = a->app.client_id;
        queue = std::make_unique<JobQueue>(*store, clock, nullptr, 30s);
    }

    // Creates and leases a job; returns it with its lease.
    Job leased(const std::string& operation = "extract_metadata") {
        auto job = queue->create("app-a", "inv", operation);
        EXPECT_TRUE(job.has_value());
        auto lease = queue->try_lease("app-a", "edge-1");
        EXPECT_TRUE(lease && *lease);
        return (*lease)->job;
    }

    Job get(const std::string& id) {
        auto j = queue->get(id);
        EXPECT_TRUE(j.has_value());
        return *j;
    }

    testing::TempDir tmp;
    clock::ManualClock clock{util::unix_millis()};
    std::unique_ptr<store::Store> store;
    std::unique_ptr<JobQueue> queue;
    std::string client_a;
};

TEST_F(LifecycleTest, EveryOperationIsAcceptedAndOthersAreNot) {
    for (const char* op : {"extract_metadata", "test_connection", "preflight", "list_schemas"}) {
        auto job = queue->create("app-a", "inv", op);
        ASSERT_TRUE(job.has_value()) << op << ": " << job.error().describe();
        EXPECT_EQ(job->operation, op);
    }
    auto bad = queue->create("app-a", "inv", "drop_database");
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(bad.error().message.find("list_schemas"), std::string::npos);
    EXPECT_TRUE(is_interactive("preflight"));
    EXPECT_FALSE(is_interactive("extract_metadata"));
}

TEST_F(LifecycleTest, LeaseLastsTheConfiguredLifetime) {
    Job j = leased();
    EXPECT_EQ(queue->lease_lifetime(), 30s);
    EXPECT_EQ(*j.lease_expires_at_ms, clock.now_ms() + kLeaseMs);
}

TEST_F(LifecycleTest, HeartbeatExtendsTheLeaseAndRecordsProgress) {
    Job j = leased();
    clock.advance_ms(kLeaseMs - 1000);
    auto beat = queue->heartbeat(
        "app-a", j.id, HeartbeatReport{*j.lease_id, "edge-1", Progress{10, 2048, 1, "extracting"}});
    ASSERT_TRUE(beat.has_value()) << beat.error().description;
    EXPECT_EQ(beat->job_id, j.id);
    EXPECT_EQ(beat->lease_expires_at_ms, clock.now_ms() + kLeaseMs);
    EXPECT_FALSE(beat->cancel);

    Job after = get(j.id);
    EXPECT_EQ(after.lease_expires_at_ms, clock.now_ms() + kLeaseMs);
    EXPECT_EQ(after.heartbeat_at_ms, clock.now_ms());
    ASSERT_TRUE(after.progress.has_value());
    EXPECT_EQ(after.progress->objects, 10);
    EXPECT_EQ(after.progress->bytes, 2048);
    EXPECT_EQ(after.progress->chunks, 1);
    EXPECT_EQ(after.progress->phase, "extracting");
    auto shown = to_json(after);
    EXPECT_EQ(shown["progress"]["bytes"], 2048);
    EXPECT_EQ(shown["last_heartbeat_at_ms"], clock.now_ms());

    // Past the first expiry, the extended lease still holds: no one else gets it.
    clock.advance_ms(kLeaseMs - 1);
    auto other = queue->try_lease("app-a", "edge-2");
    ASSERT_TRUE(other.has_value());
    EXPECT_FALSE(other->has_value());
    // A heartbeat without progress keeps the last progress.
    auto again = queue->heartbeat("app-a", j.id, HeartbeatReport{*j.lease_id, "edge-1", {}});
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(get(j.id).progress->objects, 10);
}

TEST_F(LifecycleTest, HeartbeatAfterExpiryOrWithAForeignLeaseIsLeaseLost) {
    Job j = leased();
    EXPECT_EQ(queue->heartbeat("app-a", j.id, HeartbeatReport{"other", "edge-1", {}}).error().code,
              "lease_lost");
    EXPECT_EQ(
        queue->heartbeat("app-b", j.id, HeartbeatReport{*j.lease_id, "edge-1", {}}).error().code,
        "lease_lost");
    EXPECT_EQ(queue->heartbeat("app-a", "nope", HeartbeatReport{*j.lease_id, "e", {}}).error().code,
              "lease_lost");
    auto bad_phase = queue->heartbeat(
        "app-a", j.id, HeartbeatReport{*j.lease_id, "edge-1", Progress{1, 1, 1, "dancing"}});
    EXPECT_EQ(bad_phase.error().code, "invalid_request");
    auto negative = queue->heartbeat(
        "app-a", j.id, HeartbeatReport{*j.lease_id, "edge-1", Progress{-1, 1, 1, "starting"}});
    EXPECT_EQ(negative.error().code, "invalid_request");

    clock.advance_ms(kLeaseMs);
    auto late = queue->heartbeat("app-a", j.id, HeartbeatReport{*j.lease_id, "edge-1", {}});
    ASSERT_FALSE(late.has_value());
    EXPECT_EQ(late.error().code, "lease_lost");
    // The job goes back to the queue and the new lease starts without progress.
    auto next = queue->try_lease("app-a", "edge-2");
    ASSERT_TRUE(next && *next);
    EXPECT_EQ((*next)->job.id, j.id);
    EXPECT_FALSE((*next)->job.progress.has_value());
    EXPECT_FALSE((*next)->job.heartbeat_at_ms.has_value());
}

TEST_F(LifecycleTest, CancellingAQueuedJobEndsItAndItIsNeverLeased) {
    auto job = queue->create("app-a", "inv", "extract_metadata");
    ASSERT_TRUE(job.has_value());
    auto cancelled = queue->cancel(job->id, "alice");
    ASSERT_TRUE(cancelled.has_value()) << cancelled.error().describe();
    EXPECT_TRUE(cancelled->ended);
    EXPECT_EQ(cancelled->job.status, "cancelled");
    EXPECT_EQ(cancelled->job.reason_code, "cancelled");
    EXPECT_EQ(cancelled->job.cancel_requested_by, "alice");
    EXPECT_TRUE(cancelled->job.completed_at_ms.has_value());

    auto lease = queue->try_lease("app-a", "edge-1");
    ASSERT_TRUE(lease.has_value());
    EXPECT_FALSE(lease->has_value());

    auto again = queue->cancel(job->id, "alice");
    ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error().code, ErrorCode::conflict);
    EXPECT_EQ(again.error().message, "job " + job->id + " has already ended (status cancelled)");
    EXPECT_EQ(queue->cancel("missing", "alice").error().code, ErrorCode::not_found);
}

TEST_F(LifecycleTest, CancellingALeasedJobReachesTheAgentThroughTheHeartbeat) {
    Job j = leased();
    auto requested = queue->cancel(j.id, "bob");
    ASSERT_TRUE(requested.has_value()) << requested.error().describe();
    EXPECT_FALSE(requested->ended);
    EXPECT_EQ(requested->job.status, "leased");
    EXPECT_EQ(requested->job.cancel_requested_at_ms, clock.now_ms());
    EXPECT_TRUE(to_json(requested->job)["cancel_requested"].get<bool>());
    // Asking twice is harmless and keeps the first request.
    clock.advance_ms(5);
    auto twice = queue->cancel(j.id, "carol");
    ASSERT_TRUE(twice.has_value());
    EXPECT_EQ(twice->job.cancel_requested_by, "bob");

    auto beat = queue->heartbeat("app-a", j.id, HeartbeatReport{*j.lease_id, "edge-1", {}});
    ASSERT_TRUE(beat.has_value());
    EXPECT_TRUE(beat->cancel);

    auto done = queue->fail(
        "app-a", j.id,
        FailReport{*j.lease_id, "edge-1", "failed", "cancelled", "stopped on the hub's request"});
    ASSERT_TRUE(done.has_value()) << done.error().description;
    EXPECT_EQ(done->status, "cancelled");
    EXPECT_EQ(done->reason_code, "cancelled");
    EXPECT_EQ(done->message, "stopped on the hub's request");
    EXPECT_EQ(queue->cancel(j.id, "bob").error().message,
              "job " + j.id + " has already ended (status cancelled)");
}

TEST_F(LifecycleTest, CancelRequestedAndLeaseExpiredEndsCancelledNotRequeued) {
    Job j = leased();
    ASSERT_TRUE(queue->cancel(j.id, "bob").has_value());
    clock.advance_ms(kLeaseMs);
    // The next poll of the app settles the expired lease.
    auto lease = queue->try_lease("app-a", "edge-2");
    ASSERT_TRUE(lease.has_value());
    EXPECT_FALSE(lease->has_value());
    Job after = get(j.id);
    EXPECT_EQ(after.status, "cancelled");
    EXPECT_EQ(after.reason_code, "cancelled");
    EXPECT_EQ(after.attempts, 1);
    EXPECT_EQ(
        queue->heartbeat("app-a", j.id, HeartbeatReport{*j.lease_id, "edge-1", {}}).error().code,
        "lease_lost");
}

TEST_F(LifecycleTest, SettleAppliesExpiryWithoutAnAgentPolling) {
    Job cancelled = leased();
    ASSERT_TRUE(queue->cancel(cancelled.id, "bob").has_value());
    Job plain = leased();
    ASSERT_TRUE(queue->settle(cancelled.id).has_value());
    EXPECT_EQ(get(cancelled.id).status, "leased");  // not expired yet
    clock.advance_ms(kLeaseMs);
    ASSERT_TRUE(queue->settle(cancelled.id).has_value());
    ASSERT_TRUE(queue->settle(plain.id).has_value());
    EXPECT_EQ(get(cancelled.id).status, "cancelled");
    EXPECT_EQ(get(plain.id).status, "queued");
    EXPECT_TRUE(queue->settle("missing").has_value());

    // Cancelling a job whose lease already ran out ends it at once.
    auto relet = queue->try_lease("app-a", "edge-3");
    ASSERT_TRUE(relet && *relet);
    clock.advance_ms(kLeaseMs);
    auto late = queue->cancel(plain.id, "bob");
    ASSERT_TRUE(late.has_value());
    EXPECT_TRUE(late->ended);
    EXPECT_EQ(late->job.status, "cancelled");
}

TEST_F(LifecycleTest, EveryNewReasonCodeIsAccepted) {
    for (const char* code :
         {"unknown_key", "replay_store_unavailable", "source_not_allowed", "operation_not_allowed",
          "outside_time_window", "filter_outside_policy", "worker_crashed", "timeout", "lease_lost",
          "limit_exceeded", "sandbox_unavailable", "connection_failed"}) {
        Job j = leased();
        const bool refusal = std::string(code).find("_not_allowed") != std::string::npos ||
                             std::string(code) == "unknown_key";
        const char* outcome = refusal ? "refused" : "failed";
        auto done =
            queue->fail("app-a", j.id, FailReport{*j.lease_id, "edge-1", outcome, code, "x"});
        ASSERT_TRUE(done.has_value()) << code << ": " << done.error().description;
        EXPECT_EQ(done->status, outcome) << code;
        EXPECT_EQ(done->reason_code, code);
    }
}

TEST_F(LifecycleTest, FiltersAreValidatedNamingTheFlag) {
    Filters ok;
    ok.schemas.include = {"public", "sales_.*"};
    ok.tables.exclude = {"tmp_.*"};
    EXPECT_TRUE(validate_filters(ok).has_value());

    auto message_for = [&](Filters f) {
        auto job = queue->create("app-a", "inv", "extract_metadata", f);
        EXPECT_FALSE(job.has_value());
        if (job) return std::string();
        EXPECT_EQ(job.error().code, ErrorCode::invalid_argument);
        return job.error().message;
    };
    Filters bad_regex;
    bad_regex.tables.include = {"ok", "(unclosed"};
    std::string m = message_for(bad_regex);
    EXPECT_NE(m.find("--include-table pattern 2"), std::string::npos) << m;
    Filters too_long;
    too_long.schemas.exclude = {std::string(257, 'a')};
    m = message_for(too_long);
    EXPECT_NE(m.find("--exclude-schema"), std::string::npos) << m;
    Filters empty_pattern;
    empty_pattern.schemas.include = {""};
    EXPECT_NE(message_for(empty_pattern).find("--include-schema"), std::string::npos);
    Filters too_many;
    too_many.tables.exclude.assign(65, "x");
    m = message_for(too_many);
    EXPECT_NE(m.find("--exclude-table: at most 64"), std::string::npos) << m;
    Filters limits;
    limits.tables.exclude.assign(64, std::string(256, 'b'));
    EXPECT_TRUE(queue->create("app-a", "inv", "extract_metadata", limits).has_value());
}

TEST_F(LifecycleTest, FiltersTravelInTheSignedJobOnlyWhenSet) {
    JobSigner signer(crypto::Ed25519PrivateKey::generate());
    Filters f;
    f.schemas.include = {"public"};
    f.tables.exclude = {"audit_.*", "tmp"};
    auto with = queue->create("app-a", "inv", "list_schemas", f);
    ASSERT_TRUE(with.has_value()) << with.error().describe();
    EXPECT_EQ(with->filters, f);
    auto without = queue->create("app-a", "inv", "extract_metadata");
    ASSERT_TRUE(without.has_value());

    auto first = queue->try_lease("app-a", "edge-1");
    ASSERT_TRUE(first && *first);
    auto jws = jose::verify(signer.sign(**first), signer.public_key());
    ASSERT_TRUE(jws.has_value());
    EXPECT_EQ(jws->payload["operation"], "list_schemas");
    EXPECT_EQ(jws->payload["filters"],
              (nlohmann::json{{"schemas", {{"include", {"public"}}}},
                              {"tables", {{"exclude", {"audit_.*", "tmp"}}}}}));
    EXPECT_EQ(to_json(get(with->id))["filters"], jws->payload["filters"]);

    auto second = queue->try_lease("app-a", "edge-1");
    ASSERT_TRUE(second && *second);
    auto plain = jose::verify(signer.sign(**second), signer.public_key());
    ASSERT_TRUE(plain.has_value());
    EXPECT_FALSE(plain->payload.contains("filters"));
    EXPECT_TRUE(to_json(get(without->id))["filters"].is_null());
}

TEST_F(LifecycleTest, RotatedJobKeyIsUsedByTheRunningSigner) {
    auto material = pki::ensure(tmp.file("data"), {});
    ASSERT_TRUE(material.has_value()) << material.error().describe();
    const store::Layout& l = material->layout;
    auto signer = JobSigner::watching(l.job_key);
    ASSERT_TRUE(signer.has_value()) << signer.error().describe();
    auto old_pub = crypto::Ed25519PublicKey::from_pem_file(l.job_public);
    ASSERT_TRUE(old_pub.has_value());
    EXPECT_EQ((*signer)->key_id(), old_pub->key_id());

    auto job = queue->create("app-a", "inv", "test_connection");
    auto lease = queue->try_lease("app-a", "edge-1");
    ASSERT_TRUE(lease && *lease);
    SignedJob before = (*signer)->sign_job(**lease);
    EXPECT_EQ(before.kid, old_pub->key_id());

    auto rotated = pki::rotate_job_key(l.dir);
    ASSERT_TRUE(rotated.has_value()) << rotated.error().describe();
    EXPECT_EQ(rotated->previous_kid, old_pub->key_id());
    EXPECT_NE(rotated->new_kid, rotated->previous_kid);
    EXPECT_EQ(rotated->public_key_path, l.job_public);
    auto new_pub = crypto::Ed25519PublicKey::from_pem_file(l.job_public);
    auto kept = crypto::Ed25519PublicKey::from_pem_file(l.job_previous_public);
    ASSERT_TRUE(new_pub && kept);
    EXPECT_EQ(new_pub->key_id(), rotated->new_kid);
    EXPECT_EQ(kept->key_id(), rotated->previous_kid);

    SignedJob after = (*signer)->sign_job(**lease);
    EXPECT_EQ(after.kid, rotated->new_kid);
    auto verified = jose::verify(after.jws, *new_pub);
    ASSERT_TRUE(verified.has_value());
    EXPECT_EQ(verified->header["kid"], rotated->new_kid);
    EXPECT_FALSE(jose::verify(after.jws, *old_pub).has_value());
    EXPECT_TRUE(jose::verify(before.jws, *kept).has_value());

    // The next start loads the rotated key as it is.
    auto restarted = pki::ensure(l.dir, {});
    ASSERT_TRUE(restarted.has_value());
    EXPECT_EQ(restarted->job_key.public_key().key_id(), rotated->new_kid);
    EXPECT_EQ(pki::rotate_job_key(tmp.file("nowhere")).error().code, ErrorCode::not_found);
}

}  // namespace
}  // namespace sa::hub::jobs
