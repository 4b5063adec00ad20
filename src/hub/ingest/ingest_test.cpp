#include "hub/ingest/ingest.h"

#include <gtest/gtest.h>

#include "common/crypto/digest.h"
#include "common/protocol/content_digest.h"
#include "common/util/time.h"
#include "hub/identity/app_registry.h"
#include "hub/ingest/catalog.h"
#include "hub/testing/test_support.h"

namespace sa::hub::ingest {
namespace {

using testing::chunk_of;
using testing::sample_table;

class IngestTest : public ::testing::Test {
  protected:
    void SetUp() override {
        auto s = store::Store::open(tmp.file("hub.db"));
        ASSERT_TRUE(s.has_value()) << s.error().describe();
        store = std::move(*s);
        identity::AppRegistry apps(*store, clock, testing::fast_scrypt());
        ASSERT_TRUE(apps.create("app-a").has_value());
        ASSERT_TRUE(apps.create("app-b").has_value());
        queue = std::make_unique<jobs::JobQueue>(*store, clock);
        ingest = std::make_unique<Ingest>(*store, clock);
        catalog = std::make_unique<Catalog>(*store);
    }

    // Creates and leases a job for source; returns {job id, lease id}.
    std::pair<std::string, std::string> leased_job(const std::string& source) {
        auto job = queue->create("app-a", source, "extract_metadata");
        EXPECT_TRUE(job.has_value());
        auto lease = queue->try_lease("app-a", "edge-1");
        EXPECT_TRUE(lease && *lease);
        return {job->id, *(*lease)->job.lease_id};
    }

    wire::WireResult<ChunkReceipt> put(const std::string& job, const std::string& lease,
                                       int64_t seq, const std::string& body) {
        std::string digest = protocol::content_digest_sha256(body);
        return ingest->put_chunk("app-a", job, lease, seq, digest, body);
    }

    static ChunkRef ref(int64_t seq, const std::string& body) {
        return ChunkRef{seq, crypto::sha256_hex(body), static_cast<int64_t>(body.size())};
    }

    int64_t count(const std::string& sql) {
        return store->with([&](sqlite::Database& db) {
            auto st = db.prepare(sql);
            EXPECT_TRUE(st.has_value());
            (void)st->step();
            return st->integer(0);
        });
    }

    // Delivers tables for source through a full job; returns the job id.
    std::string deliver(const std::string& source, const std::vector<metadata::Table>& tables) {
        auto [job, lease] = leased_job(source);
        std::string body = chunk_of(tables);
        EXPECT_TRUE(put(job, lease, 0, body).has_value());
        auto done =
            ingest->complete("app-a", job, Completion{lease, "edge-1", {ref(0, body)}, 1, 2});
        EXPECT_TRUE(done.has_value()) << done.error().description;
        return job;
    }

    testing::TempDir tmp;
    clock::ManualClock clock{util::unix_millis()};
    std::unique_ptr<store::Store> store;
    std::unique_ptr<jobs::JobQueue> queue;
    std::unique_ptr<Ingest> ingest;
    std::unique_ptr<Catalog> catalog;
};

TEST_F(IngestTest, ChunkUploadIsIdempotentAndConflictsAreRefused) {
    auto [job, lease] = leased_job("inv");
    std::string body = chunk_of({sample_table("orders", 3)});
    auto first = put(job, lease, 0, body);
    ASSERT_TRUE(first.has_value()) << first.error().description;
    EXPECT_TRUE(first->created);
    EXPECT_EQ(first->sha256, crypto::sha256_hex(body));
    EXPECT_EQ(first->size, static_cast<int64_t>(body.size()));

    auto retry = put(job, lease, 0, body);
    ASSERT_TRUE(retry.has_value());
    EXPECT_FALSE(retry->created);
    EXPECT_EQ(retry->sha256, first->sha256);
    EXPECT_EQ(count("SELECT count(*) FROM chunks"), 1);

    auto conflict = put(job, lease, 0, chunk_of({sample_table("other", 1)}));
    ASSERT_FALSE(conflict.has_value());
    EXPECT_EQ(conflict.error().code, "chunk_conflict");
    EXPECT_EQ(wire::http_status(conflict.error().code), 409);
}

TEST_F(IngestTest, DigestHeaderIsRequiredAndChecked) {
    auto [job, lease] = leased_job("inv");
    std::string body = chunk_of({sample_table("orders", 3)});
    auto missing = ingest->put_chunk("app-a", job, lease, 0, std::nullopt, body);
    EXPECT_EQ(missing.error().code, "invalid_digest");
    auto malformed = ingest->put_chunk("app-a", job, lease, 0, "sha-256=not-base64", body);
    EXPECT_EQ(malformed.error().code, "invalid_digest");
    auto other_body = ingest->put_chunk("app-a", job, lease, 0,
                                        protocol::content_digest_sha256("something else"), body);
    ASSERT_FALSE(other_body.has_value());
    EXPECT_EQ(other_body.error().code, "digest_mismatch");
    EXPECT_EQ(wire::http_status("digest_mismatch"), 400);
    EXPECT_EQ(count("SELECT count(*) FROM chunks"), 0);
}

TEST_F(IngestTest, OnlyTheLeaseHolderMayUpload) {
    auto [job, lease] = leased_job("inv");
    std::string body = chunk_of({sample_table("orders", 3)});
    std::string digest = protocol::content_digest_sha256(body);
    EXPECT_EQ(ingest->put_chunk("app-a", job, "other-lease", 0, digest, body).error().code,
              "lease_lost");
    EXPECT_EQ(ingest->put_chunk("app-b", job, lease, 0, digest, body).error().code, "lease_lost");
    EXPECT_EQ(ingest->put_chunk("app-a", "no-such-job", lease, 0, digest, body).error().code,
              "lease_lost");
    clock.advance_ms(601'000);
    EXPECT_EQ(put(job, lease, 0, body).error().code, "lease_lost");
}

TEST_F(IngestTest, SuccessfulCompletionWritesTheCatalogAndCounts) {
    auto [job, lease] = leased_job("inv");
    std::string c0 = chunk_of({sample_table("orders", 3), sample_table("customers", 2)});
    std::string c1 = chunk_of({sample_table("v_orders", 2, "view")});
    ASSERT_TRUE(put(job, lease, 0, c0).has_value());
    ASSERT_TRUE(put(job, lease, 1, c1).has_value());
    // The list may come in any order.
    auto done = ingest->complete("app-a", job,
                                 Completion{lease, "edge-1", {ref(1, c1), ref(0, c0)}, 100, 200});
    ASSERT_TRUE(done.has_value()) << done.error().description;
    EXPECT_EQ(done->summary.tables, 2);
    EXPECT_EQ(done->summary.views, 1);
    EXPECT_EQ(done->summary.columns, 7);

    auto j = queue->get(job);
    ASSERT_TRUE(j.has_value());
    EXPECT_EQ(j->status, "succeeded");
    ASSERT_TRUE(j->summary.has_value());
    EXPECT_EQ(j->summary->tables, 2);
    EXPECT_EQ(j->summary->views, 1);
    EXPECT_EQ(j->summary->columns, 7);
    EXPECT_EQ(j->started_at_ms, 100);
    EXPECT_EQ(j->finished_at_ms, 200);
    EXPECT_EQ(j->completed_at_ms, clock.now_ms());
    EXPECT_EQ(count("SELECT count(*) FROM chunks"), 0);

    auto tables = catalog->tables(CatalogFilter{.source = "inv"});
    ASSERT_TRUE(tables.has_value());
    ASSERT_EQ(tables->size(), 3u);
    EXPECT_EQ((*tables)[0].qualified_name(), "inv/main/main/customers");
    EXPECT_EQ((*tables)[0].columns, 2);
    EXPECT_EQ((*tables)[1].name, "orders");
    EXPECT_EQ((*tables)[2].kind, "view");
    EXPECT_EQ((*tables)[2].definition, "CREATE VIEW v_orders AS SELECT 1 AS id");
    EXPECT_EQ((*tables)[2].job_id, job);
    EXPECT_EQ(count("SELECT count(*) FROM catalog_indexes"), 2);
    EXPECT_EQ(count("SELECT count(*) FROM catalog_foreign_keys"), 2);

    auto columns = catalog->columns(CatalogFilter{.source = "inv", .table = "orders"});
    ASSERT_TRUE(columns.has_value());
    ASSERT_EQ(columns->size(), 3u);
    EXPECT_EQ((*columns)[0].column.name, "id");
    EXPECT_EQ((*columns)[0].column.primary_key_position, 1);
    EXPECT_FALSE((*columns)[0].column.nullable);
    EXPECT_EQ((*columns)[1].column.default_value, "'x'");

    // The lease is spent: a second completion is refused.
    auto again = ingest->complete("app-a", job, Completion{lease, "edge-1", {ref(0, c0)}, 1, 2});
    EXPECT_EQ(again.error().code, "lease_lost");
}

TEST_F(IngestTest, ANewDeliveryReplacesOnlyThatSource) {
    deliver("inv", {sample_table("a", 1), sample_table("b", 1)});
    deliver("crm", {sample_table("c", 1)});
    deliver("inv", {sample_table("z", 4)});
    auto inv = catalog->tables(CatalogFilter{.source = "inv"});
    ASSERT_TRUE(inv.has_value());
    ASSERT_EQ(inv->size(), 1u);
    EXPECT_EQ((*inv)[0].name, "z");
    EXPECT_EQ((*inv)[0].columns, 4);
    auto crm = catalog->tables(CatalogFilter{.source = "crm"});
    ASSERT_EQ(crm->size(), 1u);
    // Children of replaced tables are gone too.
    EXPECT_EQ(count("SELECT count(*) FROM catalog_columns"), 5);
    auto other_app = catalog->tables(CatalogFilter{.app = "app-b"});
    EXPECT_TRUE(other_app->empty());
}

TEST_F(IngestTest, MissingChunkFailsTheJobAndLeavesTheCatalog) {
    deliver("inv", {sample_table("keep", 2)});
    auto [job, lease] = leased_job("inv");
    std::string c0 = chunk_of({sample_table("new", 1)});
    ASSERT_TRUE(put(job, lease, 0, c0).has_value());
    auto done = ingest->complete(
        "app-a", job, Completion{lease, "edge-1", {ref(0, c0), ref(1, "never sent")}, 1, 2});
    ASSERT_FALSE(done.has_value());
    EXPECT_EQ(done.error().code, "missing_chunk");
    EXPECT_NE(done.error().description.find("chunk 1"), std::string::npos);
    EXPECT_EQ(wire::http_status("missing_chunk"), 400);

    auto j = queue->get(job);
    EXPECT_EQ(j->status, "failed");
    EXPECT_EQ(j->reason_code, "missing_chunk");
    auto tables = catalog->tables(CatalogFilter{.source = "inv"});
    ASSERT_EQ(tables->size(), 1u);
    EXPECT_EQ((*tables)[0].name, "keep");
}

TEST_F(IngestTest, UploadedButUnlistedChunkIsRefused) {
    auto [job, lease] = leased_job("inv");
    std::string c0 = chunk_of({sample_table("a", 1)});
    std::string c1 = chunk_of({sample_table("b", 1)});
    ASSERT_TRUE(put(job, lease, 0, c0).has_value());
    ASSERT_TRUE(put(job, lease, 1, c1).has_value());
    auto done = ingest->complete("app-a", job, Completion{lease, "edge-1", {ref(0, c0)}, 1, 2});
    ASSERT_FALSE(done.has_value());
    EXPECT_EQ(done.error().code, "missing_chunk");
    EXPECT_EQ(queue->get(job)->status, "failed");
}

TEST_F(IngestTest, ListedDigestOrSizeMismatchIsRefused) {
    deliver("inv", {sample_table("keep", 2)});
    auto [job, lease] = leased_job("inv");
    std::string c0 = chunk_of({sample_table("a", 1)});
    ASSERT_TRUE(put(job, lease, 0, c0).has_value());
    ChunkRef wrong = ref(0, c0);
    wrong.sha256 = crypto::sha256_hex("different");
    auto done = ingest->complete("app-a", job, Completion{lease, "edge-1", {wrong}, 1, 2});
    ASSERT_FALSE(done.has_value());
    EXPECT_EQ(done.error().code, "digest_mismatch");
    EXPECT_EQ(queue->get(job)->reason_code, "digest_mismatch");
    EXPECT_EQ((*catalog->tables(CatalogFilter{.source = "inv"}))[0].name, "keep");

    auto [job2, lease2] = leased_job("inv");
    ASSERT_TRUE(put(job2, lease2, 0, c0).has_value());
    ChunkRef wrong_size = ref(0, c0);
    wrong_size.size += 1;
    auto done2 = ingest->complete("app-a", job2, Completion{lease2, "edge-1", {wrong_size}, 1, 2});
    EXPECT_EQ(done2.error().code, "digest_mismatch");
}

TEST_F(IngestTest, StoredBytesAreRehashedAtCompletion) {
    auto [job, lease] = leased_job("inv");
    std::string c0 = chunk_of({sample_table("a", 1)});
    ASSERT_TRUE(put(job, lease, 0, c0).has_value());
    // Simulate storage corruption after the upload was accepted.
    ASSERT_TRUE(store->with([&](sqlite::Database& db) {
        return store::execute(db, "UPDATE chunks SET data = ? WHERE job_id = ?",
                              store::Blob{std::string(c0.size(), 'x')}, job);
    }));
    auto done = ingest->complete("app-a", job, Completion{lease, "edge-1", {ref(0, c0)}, 1, 2});
    ASSERT_FALSE(done.has_value());
    EXPECT_EQ(done.error().code, "digest_mismatch");
}

TEST_F(IngestTest, BadChunkNamesChunkAndLineAndLeavesTheCatalog) {
    deliver("inv", {sample_table("keep", 2)});
    auto [job, lease] = leased_job("inv");
    std::string c0 = chunk_of({sample_table("fine", 1)});
    std::string c1 = chunk_of({sample_table("also_fine", 1)}) + "{\"model_version\": 1, oops\n";
    ASSERT_TRUE(put(job, lease, 0, c0).has_value());
    ASSERT_TRUE(put(job, lease, 1, c1).has_value());
    auto done =
        ingest->complete("app-a", job, Completion{lease, "edge-1", {ref(0, c0), ref(1, c1)}, 1, 2});
    ASSERT_FALSE(done.has_value());
    EXPECT_EQ(done.error().code, "bad_chunk");
    EXPECT_NE(done.error().description.find("chunk 1"), std::string::npos)
        << done.error().description;
    EXPECT_NE(done.error().description.find("line 2"), std::string::npos)
        << done.error().description;

    auto j = queue->get(job);
    EXPECT_EQ(j->status, "failed");
    EXPECT_EQ(j->reason_code, "bad_chunk");
    EXPECT_NE(j->message->find("line 2"), std::string::npos);
    auto tables = catalog->tables(CatalogFilter{.source = "inv"});
    ASSERT_EQ(tables->size(), 1u);
    EXPECT_EQ((*tables)[0].name, "keep");
    EXPECT_EQ(count("SELECT count(*) FROM chunks"), 0);
}

TEST_F(IngestTest, ValidJsonThatIsNotATableIsABadChunk) {
    auto [job, lease] = leased_job("inv");
    std::string c0 = "{\"model_version\":1,\"name\":\"x\"}\n";
    ASSERT_TRUE(put(job, lease, 0, c0).has_value());
    auto done = ingest->complete("app-a", job, Completion{lease, "edge-1", {ref(0, c0)}, 1, 2});
    ASSERT_FALSE(done.has_value());
    EXPECT_EQ(done.error().code, "bad_chunk");
}

TEST_F(IngestTest, DuplicateTableIsABadChunk) {
    auto [job, lease] = leased_job("inv");
    std::string c0 = chunk_of({sample_table("a", 1)});
    std::string c1 = chunk_of({sample_table("a", 2)});
    ASSERT_TRUE(put(job, lease, 0, c0).has_value());
    ASSERT_TRUE(put(job, lease, 1, c1).has_value());
    auto done =
        ingest->complete("app-a", job, Completion{lease, "edge-1", {ref(0, c0), ref(1, c1)}, 1, 2});
    ASSERT_FALSE(done.has_value());
    EXPECT_EQ(done.error().code, "bad_chunk");
}

TEST_F(IngestTest, CompletionWithoutALiveLeaseChangesNothing) {
    auto [job, lease] = leased_job("inv");
    std::string c0 = chunk_of({sample_table("a", 1)});
    ASSERT_TRUE(put(job, lease, 0, c0).has_value());
    clock.advance_ms(601'000);
    auto done = ingest->complete("app-a", job, Completion{lease, "edge-1", {ref(0, c0)}, 1, 2});
    ASSERT_FALSE(done.has_value());
    EXPECT_EQ(done.error().code, "lease_lost");
    EXPECT_EQ(queue->get(job)->status, "leased");  // expires into the queue on the next poll
    EXPECT_TRUE(catalog->tables(CatalogFilter{})->empty());
}

TEST_F(IngestTest, EmptyDeliveryClearsTheSource) {
    deliver("inv", {sample_table("a", 1)});
    auto [job, lease] = leased_job("inv");
    auto done = ingest->complete("app-a", job, Completion{lease, "edge-1", {}, 1, 2});
    ASSERT_TRUE(done.has_value()) << done.error().description;
    EXPECT_EQ(done->summary.tables, 0);
    EXPECT_TRUE(catalog->tables(CatalogFilter{.source = "inv"})->empty());
}

TEST_F(IngestTest, InteractiveOperationCompletesWithAResultAndLeavesTheCatalog) {
    deliver("inv", {sample_table("orders", 2)});
    const int64_t tables_before = count("SELECT count(*) FROM catalog_tables");
    auto job = queue->create("app-a", "inv", "test_connection");
    ASSERT_TRUE(job.has_value());
    auto lease = queue->try_lease("app-a", "edge-1");
    ASSERT_TRUE(lease && *lease);
    const std::string lease_id = *(*lease)->job.lease_id;

    // It takes no chunks, neither uploaded nor listed, and needs a result.
    auto chunk = put(job->id, lease_id, 0, chunk_of({sample_table("x", 1)}));
    ASSERT_FALSE(chunk.has_value());
    EXPECT_EQ(chunk.error().code, "invalid_request");
    Completion c{lease_id, "edge-1", {}, 10, 20};
    auto no_result = ingest->complete("app-a", job->id, c);
    ASSERT_FALSE(no_result.has_value());
    EXPECT_EQ(no_result.error().code, "invalid_request");
    c.result = nlohmann::json::array({1, 2});
    EXPECT_EQ(ingest->complete("app-a", job->id, c).error().code, "invalid_request");
    c.result = nlohmann::json{{"ok", true}};
    c.chunks = {ref(0, "x\n")};
    EXPECT_EQ(ingest->complete("app-a", job->id, c).error().code, "invalid_request");
    EXPECT_EQ(queue->get(job->id)->status, "leased");  // request problems leave the job

    c.chunks.clear();
    c.result = nlohmann::json{{"ok", true}, {"latency_ms", 12}, {"server_version", "3.45.1"}};
    auto done = ingest->complete("app-a", job->id, c);
    ASSERT_TRUE(done.has_value()) << done.error().description;
    EXPECT_EQ(done->operation, "test_connection");
    auto after = queue->get(job->id);
    ASSERT_TRUE(after.has_value());
    EXPECT_EQ(after->status, "succeeded");
    EXPECT_EQ(after->result, *c.result);
    EXPECT_FALSE(after->summary.has_value());
    EXPECT_EQ(after->started_at_ms, 10);
    EXPECT_EQ(jobs::to_json(*after)["result"]["server_version"], "3.45.1");
    EXPECT_EQ(count("SELECT count(*) FROM catalog_tables"), tables_before);
    EXPECT_EQ(count("SELECT count(*) FROM catalog_tables WHERE name = 'orders'"), 1);
    // Completing twice is a lost lease.
    EXPECT_EQ(ingest->complete("app-a", job->id, c).error().code, "lease_lost");
}

TEST_F(IngestTest, OversizedResultIsRefusedAndTheJobLeftForTheAgentToFail) {
    auto job = queue->create("app-a", "inv", "list_schemas");
    auto lease = queue->try_lease("app-a", "edge-1");
    ASSERT_TRUE(job && lease && *lease);
    const std::string lease_id = *(*lease)->job.lease_id;
    Completion c{lease_id, "edge-1", {}, 1, 2};
    // {"schemas":"aaa..."}: 14 bytes around the string.
    c.result = nlohmann::json{{"schemas", std::string(protocol::kMaxResultBytes - 13, 'a')}};
    auto big = ingest->complete("app-a", job->id, c);
    ASSERT_FALSE(big.has_value());
    EXPECT_EQ(big.error().code, "request_too_large");
    EXPECT_EQ(queue->get(job->id)->status, "leased");

    c.result = nlohmann::json{{"schemas", std::string(protocol::kMaxResultBytes - 14, 'a')}};
    ASSERT_EQ(c.result->dump().size(), protocol::kMaxResultBytes);
    auto fits = ingest->complete("app-a", job->id, c);
    ASSERT_TRUE(fits.has_value()) << fits.error().description;
}

TEST_F(IngestTest, ResultIsRefusedForExtractMetadata) {
    auto [job, lease] = leased_job("inv");
    std::string body = chunk_of({sample_table("orders", 2)});
    ASSERT_TRUE(put(job, lease, 0, body).has_value());
    Completion c{lease, "edge-1", {ref(0, body)}, 1, 2};
    c.result = nlohmann::json{{"ok", true}};
    auto refused = ingest->complete("app-a", job, c);
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, "invalid_request");
    EXPECT_EQ(queue->get(job)->status, "leased");
    EXPECT_EQ(count("SELECT count(*) FROM catalog_tables"), 0);
    c.result.reset();
    EXPECT_TRUE(ingest->complete("app-a", job, c).has_value());
}

}  // namespace
}  // namespace sa::hub::ingest
