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

using metadata::Record;
using testing::chunk_of;
using testing::records_chunk;
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

    // Delivers records through a full job; returns the completion.
    wire::WireResult<CompletionResult> deliver_records(const std::string& source,
                                                       const std::vector<Record>& records) {
        auto [job, lease] = leased_job(source);
        std::string body = records_chunk(records);
        EXPECT_TRUE(put(job, lease, 0, body).has_value());
        return ingest->complete("app-a", job, Completion{lease, "edge-1", {ref(0, body)}, 1, 2});
    }

    // Applies a delta in one transaction, as the completion will.
    Status delta(const std::string& source, const std::vector<Record>& records) {
        return store->with([&](sqlite::Database& db) -> Status {
            auto tx = sqlite::Transaction::begin(db);
            if (!tx) return std::unexpected(tx.error());
            if (auto s = apply_catalog_delta(db, "app-a", source, prepare_records(records),
                                             "job-delta", clock.now_ms());
                !s) {
                return s;
            }
            return tx->commit();
        });
    }

    std::vector<std::string> table_names(const std::string& source) {
        std::vector<std::string> out;
        auto tables = catalog->tables(CatalogFilter{.source = source});
        EXPECT_TRUE(tables.has_value());
        for (const auto& t : *tables) out.push_back(t.schema + "." + t.name);
        return out;
    }

    std::vector<std::string> routine_names(const std::string& source) {
        std::vector<std::string> out;
        auto routines = catalog->routines(CatalogFilter{.source = source});
        EXPECT_TRUE(routines.has_value());
        for (const auto& r : *routines) {
            out.push_back(r.routine.schema + "." + r.routine.name + "(" + r.routine.signature +
                          ")");
        }
        return out;
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
    EXPECT_EQ(count("SELECT count(*) FROM catalog_constraints WHERE type = 'foreign_key'"), 2);

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

TEST_F(IngestTest, StoredBytesAreRehashedWhenACompletionReadsThem) {
    auto [job, lease] = leased_job("inv");
    std::string c0 = chunk_of({sample_table("a", 1)});
    ASSERT_TRUE(put(job, lease, 0, c0).has_value());
    // Simulate storage corruption after the upload was accepted, and a hub
    // restart (a new Ingest has parsed nothing on arrival: it reads the store).
    ASSERT_TRUE(store->with([&](sqlite::Database& db) {
        return store::execute(db, "UPDATE chunks SET data = ? WHERE job_id = ?",
                              store::Blob{std::string(c0.size(), 'x')}, job);
    }));
    ingest = std::make_unique<Ingest>(*store, clock);
    auto done = ingest->complete("app-a", job, Completion{lease, "edge-1", {ref(0, c0)}, 1, 2});
    ASSERT_FALSE(done.has_value());
    EXPECT_EQ(done.error().code, "digest_mismatch");
    EXPECT_EQ(count("SELECT count(*) FROM catalog_tables"), 0);
}

TEST_F(IngestTest, AHubRestartBetweenUploadAndCompletionParsesTheStoredChunks) {
    deliver("inv", {sample_table("old", 1)});
    auto [job, lease] = leased_job("inv");
    std::string c0 = chunk_of({sample_table("a", 2)});
    std::string c1 = chunk_of({sample_table("b", 3), sample_table("c", 1)});
    ASSERT_TRUE(put(job, lease, 0, c0).has_value());
    ASSERT_TRUE(put(job, lease, 1, c1).has_value());
    ingest = std::make_unique<Ingest>(*store, clock);  // nothing parsed on arrival
    auto done =
        ingest->complete("app-a", job, Completion{lease, "edge-1", {ref(0, c0), ref(1, c1)}, 1, 2});
    ASSERT_TRUE(done.has_value()) << done.error().description;
    EXPECT_EQ(done->summary.tables, 3);
    EXPECT_EQ(done->summary.columns, 6);
    EXPECT_EQ(count("SELECT count(*) FROM catalog_tables WHERE source = 'inv'"), 3);
    EXPECT_EQ(count("SELECT count(*) FROM catalog_tables WHERE name = 'old'"), 0);
    EXPECT_EQ(count("SELECT count(*) FROM chunks"), 0);
}

TEST_F(IngestTest, AChunkReuploadedWithAnotherDigestIsNeverCommittedFromItsOldParse) {
    // Only possible after the first copy was discarded (a failed job); the
    // stager must not hand out the parse of bytes that are no longer stored.
    auto [job, lease] = leased_job("inv");
    std::string first = chunk_of({sample_table("first", 1)});
    ASSERT_TRUE(put(job, lease, 0, first).has_value());
    ASSERT_TRUE(store->with([&](sqlite::Database& db) {
        return store::execute(db, "DELETE FROM chunks WHERE job_id = ?", job);
    }));
    std::string second = chunk_of({sample_table("second", 1)});
    ASSERT_TRUE(put(job, lease, 0, second).has_value());
    auto done = ingest->complete("app-a", job, Completion{lease, "edge-1", {ref(0, second)}, 1, 2});
    ASSERT_TRUE(done.has_value()) << done.error().description;
    EXPECT_EQ(count("SELECT count(*) FROM catalog_tables WHERE name = 'second'"), 1);
    EXPECT_EQ(count("SELECT count(*) FROM catalog_tables WHERE name = 'first'"), 0);
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

// ---- Model version 2: every record type and field (issue #7).

metadata::Table rich_table() {
    metadata::Table t;
    t.database = "shop";
    t.schema = "sales";
    t.name = "Orders 2024";  // spaces and mixed case survive
    t.kind = "partitioned_table";
    t.owner = "app_owner";
    t.comment = "all orders";
    t.estimated_rows = 12345;
    t.estimated_bytes = 8192000;
    t.partition_key = "RANGE (created_at)";
    t.inherits = {{"base", "auditable"}};
    metadata::Column id{.name = "id",
                        .ordinal = 1,
                        .data_type = "bigint",
                        .normalized_type = "integer",
                        .nullable = false,
                        .identity = "always",
                        .primary_key_position = 1};
    metadata::Column total{.name = "total",
                           .ordinal = 2,
                           .data_type = "numeric(10,2)",
                           .normalized_type = "decimal",
                           .default_value = "0",
                           .comment = "gross, in cents"};
    metadata::Column doubled{.name = "doubled",
                             .ordinal = 3,
                             .data_type = "numeric",
                             .normalized_type = "decimal",
                             .generated = "stored",
                             .generation_expression = "(total * 2)"};
    metadata::Column customer{
        .name = "customer_id", .ordinal = 4, .data_type = "integer", .normalized_type = "integer"};
    metadata::Column created{.name = "created_at",
                             .ordinal = 5,
                             .data_type = "timestamp with time zone",
                             .normalized_type = "timestamp_tz",
                             .nullable = false};
    t.columns = {id, total, doubled, customer, created};
    t.constraints = {
        {.name = "orders_pkey", .type = "primary_key", .columns = {"id"}},
        {.name = "orders_customer_fk",
         .type = "foreign_key",
         .columns = {"customer_id"},
         .references = metadata::ObjectRef{"crm", "customers"},
         .referenced_columns = {"id"},
         .on_update = "NO ACTION",
         .on_delete = "SET NULL"},
        {.name = "orders_total_check", .type = "check", .definition = "(total >= 0)"},
        {.name = "orders_created_key", .type = "unique", .columns = {"created_at", "id"}},
    };
    t.indexes = {
        {.name = "orders_pkey",
         .unique = true,
         .origin = "primary_key",
         .method = "btree",
         .keys = {{.column = "id"}}},
        {.name = "orders_lower_idx",
         .origin = "create_index",
         .method = "gin",
         .predicate = "(total > 0)",
         .keys = {{.expression = "lower((customer_id)::text)"}, {.column = "created_at"}}},
    };
    return t;
}

metadata::Table partition_of(const metadata::Table& parent, const std::string& name) {
    metadata::Table p = parent;
    p.name = name;
    p.kind = "partition";
    p.partition_key.reset();
    p.partition_of = metadata::ObjectRef{parent.schema, parent.name};
    p.partition_bound = "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')";
    p.estimated_rows.reset();
    p.estimated_bytes.reset();
    p.indexes.clear();
    return p;
}

metadata::Table view_of(const std::string& schema, const std::string& name,
                        std::vector<metadata::ObjectRef> reads, const std::string& kind = "view") {
    metadata::Table v;
    v.database = "shop";
    v.schema = schema;
    v.name = name;
    v.kind = kind;
    v.definition = "SELECT 1";
    v.depends_on = std::move(reads);
    v.columns = {{.name = "x", .ordinal = 1, .data_type = "integer", .normalized_type = "integer"}};
    return v;
}

metadata::Routine routine(const std::string& name, const std::string& signature,
                          const std::string& language = "sql") {
    metadata::Routine r;
    r.database = "shop";
    r.schema = "sales";
    r.name = name;
    r.kind = "function";
    r.signature = signature;
    r.return_type = "integer";
    r.language = language;
    r.owner = "app_owner";
    r.comment = "counts things";
    return r;
}

metadata::Table plain(const std::string& schema, const std::string& name, int columns) {
    metadata::Table t = sample_table(name, columns);
    t.database = "shop";
    t.schema = schema;
    return t;
}

TEST_F(IngestTest, EveryRecordTypeAndFieldRoundTripsThroughTheCatalog) {
    const metadata::Table orders = rich_table();
    const metadata::Table part = partition_of(orders, "orders_2024");
    const metadata::Table customers = plain("crm", "customers", 2);
    const metadata::Table view =
        view_of("sales", "big_orders", {{"sales", "Orders 2024"}, {"crm", "customers"}});
    const metadata::Table matview =
        view_of("sales", "order_stats", {{"sales", "big_orders"}}, "materialized_view");
    metadata::Table foreign = plain("ext", "remote_rates", 1);
    foreign.kind = "foreign_table";
    metadata::Routine proc = routine("archive", "IN before date", "plpgsql");
    proc.kind = "procedure";
    proc.return_type.reset();
    proc.owner.reset();
    proc.comment.reset();
    const metadata::Routine fn1 = routine("count_orders", "");
    const metadata::Routine fn2 = routine("count_orders", "since date");  // an overload

    auto done =
        deliver_records("shop", {orders, part, customers, view, matview, foreign, proc, fn1, fn2});
    ASSERT_TRUE(done.has_value()) << done.error().description;
    EXPECT_EQ(done->summary.tables, 4);  // partitioned table, partition, table, foreign table
    EXPECT_EQ(done->summary.views, 2);
    EXPECT_EQ(done->summary.columns, 5 + 5 + 2 + 1 + 1 + 1);
    EXPECT_EQ(done->routines, 3);
    EXPECT_EQ(count("SELECT summary_routines FROM jobs WHERE id = '" + done->job_id + "'"), 3);

    // Rebuilt from the rows, every relation equals what was delivered.
    for (const metadata::Table* t : std::vector<const metadata::Table*>{
             &orders, &part, &customers, &view, &matview, &foreign}) {
        auto back = catalog->relation(std::nullopt, "shop", t->schema + "." + t->name);
        ASSERT_TRUE(back.has_value()) << t->name << ": " << back.error().message;
        EXPECT_EQ(*back, *t) << t->name;
        // The stored record is the delivered one, field for field.
        auto record = catalog->record("app-a", "shop", t->schema + "." + t->name);
        ASSERT_TRUE(record.has_value()) << record.error().message;
        EXPECT_EQ(*record, metadata::to_json(*t));
    }
    auto proc_record = catalog->record(std::nullopt, "shop", "sales.archive");
    ASSERT_TRUE(proc_record.has_value()) << proc_record.error().message;
    EXPECT_EQ(*proc_record, metadata::to_json(proc));

    auto tables = catalog->tables(CatalogFilter{.source = "shop"});
    ASSERT_TRUE(tables.has_value());
    ASSERT_EQ(tables->size(), 6u);
    const CatalogEntry* e = nullptr;
    const CatalogEntry* p = nullptr;
    for (const auto& t : *tables) {
        if (t.name == "Orders 2024") e = &t;
        if (t.name == "orders_2024") p = &t;
    }
    ASSERT_TRUE(e && p);
    EXPECT_EQ(e->kind, "partitioned_table");
    EXPECT_EQ(e->owner, "app_owner");
    EXPECT_EQ(e->comment, "all orders");
    EXPECT_EQ(e->estimated_rows, 12345);
    EXPECT_EQ(e->estimated_bytes, 8192000);
    EXPECT_EQ(e->columns, 5);
    EXPECT_EQ(e->partition_key, "RANGE (created_at)");
    EXPECT_EQ(e->fingerprint, metadata::fingerprint(Record(orders)));
    EXPECT_EQ(e->qualified_name(), "shop/shop/sales/Orders 2024");
    EXPECT_EQ(p->kind, "partition");
    ASSERT_TRUE(p->partition_of.has_value());
    EXPECT_EQ(*p->partition_of, (metadata::ObjectRef{"sales", "Orders 2024"}));
    EXPECT_EQ(p->partition_bound, "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')");
    auto json = to_json(*e);
    EXPECT_EQ(json["columns"], 5);  // the count, as before version 2
    EXPECT_EQ(json["estimated_rows"], 12345);
    EXPECT_EQ(json["kind"], "partitioned_table");

    auto columns = catalog->columns(CatalogFilter{.source = "shop", .table = "Orders 2024"});
    ASSERT_TRUE(columns.has_value());
    ASSERT_EQ(columns->size(), 5u);
    for (size_t i = 0; i < columns->size(); ++i) EXPECT_EQ((*columns)[i].column, orders.columns[i]);
    EXPECT_EQ(to_json((*columns)[2])["generation_expression"], "(total * 2)");
    EXPECT_EQ(to_json((*columns)[0])["identity"], "always");

    auto routines = catalog->routines(CatalogFilter{.source = "shop"});
    ASSERT_TRUE(routines.has_value());
    ASSERT_EQ(routines->size(), 3u);
    EXPECT_EQ((*routines)[0].routine, proc);
    EXPECT_EQ((*routines)[1].routine, fn1);
    EXPECT_EQ((*routines)[2].routine, fn2);
    EXPECT_EQ((*routines)[2].qualified_name(), "shop/shop/sales/count_orders(since date)");
    EXPECT_EQ((*routines)[2].fingerprint, metadata::fingerprint(Record(fn2)));
    EXPECT_EQ(to_json((*routines)[0])["return_type"], nullptr);
}

TEST_F(IngestTest, LineageGoesBothWays) {
    auto done = deliver_records(
        "shop", {plain("sales", "orders", 2), plain("crm", "customers", 2),
                 view_of("sales", "big_orders", {{"sales", "orders"}, {"crm", "customers"}}),
                 view_of("sales", "order_stats", {{"sales", "big_orders"}}, "materialized_view"),
                 view_of("sales", "ghost_reader", {{"sales", "dropped_long_ago"}})});
    ASSERT_TRUE(done.has_value()) << done.error().description;

    auto v = catalog->lineage(std::nullopt, "shop", "sales.big_orders");
    ASSERT_TRUE(v.has_value()) << v.error().message;
    EXPECT_EQ(v->object.name, "big_orders");
    ASSERT_EQ(v->reads.size(), 2u);
    EXPECT_EQ(v->reads[0].ref, (metadata::ObjectRef{"sales", "orders"}));
    EXPECT_EQ(v->reads[0].kind, "table");
    EXPECT_EQ(v->reads[1].ref, (metadata::ObjectRef{"crm", "customers"}));
    ASSERT_EQ(v->read_by.size(), 1u);
    EXPECT_EQ(v->read_by[0].name, "order_stats");
    EXPECT_EQ(v->read_by[0].kind, "materialized_view");

    auto t = catalog->lineage("app-a", "shop", "crm.customers");
    ASSERT_TRUE(t.has_value());
    EXPECT_TRUE(t->reads.empty());
    ASSERT_EQ(t->read_by.size(), 1u);
    EXPECT_EQ(t->read_by[0].name, "big_orders");

    auto ghost = catalog->lineage(std::nullopt, "shop", "ghost_reader");
    ASSERT_TRUE(ghost.has_value());
    ASSERT_EQ(ghost->reads.size(), 1u);
    EXPECT_FALSE(ghost->reads[0].kind.has_value());  // not in the catalog
    auto json = to_json(*ghost);
    EXPECT_EQ(json["reads"][0]["kind"], nullptr);
    EXPECT_EQ(json["object"]["name"], "ghost_reader");
}

TEST_F(IngestTest, ObjectNamesResolveExactlyOrExplainWhyNot) {
    auto done = deliver_records(
        "shop", {plain("sales", "orders", 1), plain("crm", "orders", 1), plain("sales", "a/b%c", 1),
                 routine("f", "a integer"), routine("f", "")});
    ASSERT_TRUE(done.has_value()) << done.error().description;
    for (const char* name :
         {"sales.orders", "sales/orders", "shop/sales/orders", "shop/shop/sales/orders"}) {
        auto r = catalog->record(std::nullopt, "shop", name);
        ASSERT_TRUE(r.has_value()) << name << ": " << r.error().message;
        EXPECT_EQ((*r)["schema"], "sales") << name;
    }
    auto ambiguous = catalog->record(std::nullopt, "shop", "orders");
    ASSERT_FALSE(ambiguous.has_value());
    EXPECT_EQ(ambiguous.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(ambiguous.error().message.find("shop/shop/crm/orders"), std::string::npos)
        << ambiguous.error().message;
    // Slashes in names: raw in the dotted form, escaped in the qualified one.
    EXPECT_TRUE(catalog->record(std::nullopt, "shop", "sales.a/b%c").has_value());
    EXPECT_TRUE(catalog->record(std::nullopt, "shop", "shop/shop/sales/a%2Fb%25c").has_value());
    // Routines: with the signature, or bare when only one fits.
    auto f = catalog->record(std::nullopt, "shop", "sales.f(a integer)");
    ASSERT_TRUE(f.has_value()) << f.error().message;
    EXPECT_EQ((*f)["signature"], "a integer");
    EXPECT_TRUE(catalog->record(std::nullopt, "shop", "f()").has_value());
    EXPECT_EQ(catalog->record(std::nullopt, "shop", "f").error().code, ErrorCode::invalid_argument);

    auto missing = catalog->record(std::nullopt, "shop", "sales.nope");
    ASSERT_FALSE(missing.has_value());
    EXPECT_EQ(missing.error().code, ErrorCode::not_found);
    EXPECT_NE(missing.error().message.find("no object 'sales.nope' in source 'shop'"),
              std::string::npos)
        << missing.error().message;
    auto no_source = catalog->lineage(std::nullopt, "nowhere", "sales.orders");
    ASSERT_FALSE(no_source.has_value());
    EXPECT_EQ(no_source.error().code, ErrorCode::not_found);
    EXPECT_NE(no_source.error().message.find("no metadata has been delivered for source 'nowhere'"),
              std::string::npos);
    EXPECT_EQ(catalog->lineage("app-b", "shop", "sales.orders").error().code,
              ErrorCode::not_found);  // another app's source
    EXPECT_TRUE(*catalog->has_source(std::nullopt, "shop"));
    EXPECT_FALSE(*catalog->has_source("app-b", "shop"));
}

TEST_F(IngestTest, RemovalInAFullRunIsABadChunkAndLeavesTheCatalog) {
    ASSERT_TRUE(deliver_records("shop", {plain("sales", "keep", 1)}).has_value());
    metadata::Removal gone{"table", "shop", "sales", "keep", ""};
    auto done = deliver_records("shop", {plain("sales", "new", 1), gone});
    ASSERT_FALSE(done.has_value());
    EXPECT_EQ(done.error().code, "bad_chunk");
    EXPECT_NE(done.error().description.find("removal of table shop/shop/sales/keep"),
              std::string::npos)
        << done.error().description;
    EXPECT_NE(done.error().description.find("incremental"), std::string::npos);
    EXPECT_EQ(table_names("shop"), (std::vector<std::string>{"sales.keep"}));
}

TEST_F(IngestTest, DuplicateRoutineIsABadChunkNamingIt) {
    auto done = deliver_records("shop", {routine("f", "a integer"), routine("f", "a integer")});
    ASSERT_FALSE(done.has_value());
    EXPECT_EQ(done.error().code, "bad_chunk");
    EXPECT_NE(done.error().description.find("routine shop/shop/sales/f(a integer) is delivered "
                                            "more than once"),
              std::string::npos)
        << done.error().description;
    // A table and a routine may share a name; overloads are distinct objects.
    auto fine = deliver_records(
        "shop", {plain("sales", "f", 1), routine("f", "a integer"), routine("f", "a bigint")});
    EXPECT_TRUE(fine.has_value()) << fine.error().description;
}

TEST_F(IngestTest, AFullRunReplacesRoutinesAndLineageToo) {
    ASSERT_TRUE(deliver_records("shop", {plain("sales", "t", 1),
                                         view_of("sales", "v", {{"sales", "t"}}), routine("f", "")})
                    .has_value());
    ASSERT_TRUE(deliver_records("shop", {plain("sales", "t", 1)}).has_value());
    EXPECT_EQ(table_names("shop"), (std::vector<std::string>{"sales.t"}));
    EXPECT_TRUE(routine_names("shop").empty());
    EXPECT_EQ(count("SELECT count(*) FROM catalog_lineage"), 0);
}

// ---- Incremental runs: apply_catalog_delta.

TEST_F(IngestTest, DeltaAddsAltersAndDropsOnlyWhatItNames) {
    metadata::Table orders = plain("sales", "orders", 3);
    metadata::Table customers = plain("sales", "customers", 2);
    metadata::Table untouched = plain("sales", "untouched", 4);
    metadata::Table v = view_of("sales", "v_orders", {{"sales", "orders"}});
    ASSERT_TRUE(deliver_records("shop", {orders, customers, untouched, v, routine("f", ""),
                                         routine("g", "x integer")})
                    .has_value());
    ASSERT_TRUE(deliver_records("crm", {plain("crm", "orders", 1)}).has_value());
    const int64_t untouched_columns = count(
        "SELECT count(*) FROM catalog_columns c JOIN catalog_tables t ON t.id = c.table_id "
        "WHERE t.name = 'untouched'");

    // Alter: a column added to orders, one dropped from customers; add a
    // table, a view and a routine; alter a routine; drop a view, a routine
    // and a table that is not there (not an error).
    metadata::Table orders2 = orders;
    orders2.columns.push_back(
        {.name = "note", .ordinal = 4, .data_type = "TEXT", .normalized_type = "string"});
    metadata::Table customers2 = customers;
    customers2.columns.pop_back();
    metadata::Table added = plain("sales", "added", 1);
    metadata::Table v2 = view_of("sales", "v_customers", {{"sales", "customers"}});
    metadata::Routine g2 = routine("g", "x integer", "plpgsql");
    auto s = delta("shop", {orders2, customers2, added, v2, routine("h", ""), g2,
                            metadata::Removal{"table", "shop", "sales", "v_orders", ""},
                            metadata::Removal{"routine", "shop", "sales", "f", ""},
                            metadata::Removal{"table", "shop", "sales", "never_was", ""}});
    ASSERT_TRUE(s.has_value()) << s.error().message;

    EXPECT_EQ(table_names("shop"),
              (std::vector<std::string>{"sales.added", "sales.customers", "sales.orders",
                                        "sales.untouched", "sales.v_customers"}));
    EXPECT_EQ(routine_names("shop"), (std::vector<std::string>{"sales.g(x integer)", "sales.h()"}));
    EXPECT_EQ(*catalog->relation(std::nullopt, "shop", "sales.orders"), orders2);
    EXPECT_EQ(*catalog->relation(std::nullopt, "shop", "sales.customers"), customers2);
    EXPECT_EQ(*catalog->relation(std::nullopt, "shop", "sales.untouched"), untouched);
    EXPECT_EQ(count("SELECT count(*) FROM catalog_columns c JOIN catalog_tables t ON t.id = "
                    "c.table_id WHERE t.name = 'untouched'"),
              untouched_columns);
    EXPECT_EQ((*catalog->record(std::nullopt, "shop", "sales.g"))["language"], "plpgsql");
    // Upserted objects carry the delta's job; untouched ones keep theirs.
    auto tables = catalog->tables(CatalogFilter{.source = "shop"});
    for (const auto& t : *tables) {
        if (t.name == "untouched") {
            EXPECT_NE(t.job_id, "job-delta");
        } else {
            EXPECT_EQ(t.job_id, "job-delta") << t.name;
        }
    }
    // The dropped view's lineage went with it; the new view's is there.
    EXPECT_EQ(count("SELECT count(*) FROM catalog_lineage"), 1);
    EXPECT_EQ(catalog->lineage(std::nullopt, "shop", "sales.customers")->read_by.size(), 1u);
    EXPECT_TRUE(catalog->lineage(std::nullopt, "shop", "sales.orders")->read_by.empty());
    // No orphaned children anywhere.
    for (const char* child :
         {"catalog_columns", "catalog_constraints", "catalog_indexes", "catalog_lineage"}) {
        EXPECT_EQ(count(std::string("SELECT count(*) FROM ") + child +
                        " WHERE table_id NOT IN (SELECT id FROM catalog_tables)"),
                  0)
            << child;
    }
    // Another source is never touched.
    EXPECT_EQ(table_names("crm"), (std::vector<std::string>{"crm.orders"}));

    // Dropping a table and a column in a second delta.
    metadata::Table orders3 = orders2;
    orders3.columns.erase(orders3.columns.begin() + 1);
    orders3.columns[1].ordinal = 2;
    orders3.columns[2].ordinal = 3;
    ASSERT_TRUE(delta("shop", {orders3, metadata::Removal{"table", "shop", "sales", "added", ""}})
                    .has_value());
    EXPECT_EQ(*catalog->relation(std::nullopt, "shop", "sales.orders"), orders3);
    EXPECT_EQ(table_names("shop"),
              (std::vector<std::string>{"sales.customers", "sales.orders", "sales.untouched",
                                        "sales.v_customers"}));
    // An empty delta changes nothing.
    ASSERT_TRUE(delta("shop", {}).has_value());
    EXPECT_EQ(table_names("shop").size(), 4u);
}

TEST_F(IngestTest, DeltaWithTwoRecordsForOneObjectIsRefusedWhole) {
    ASSERT_TRUE(deliver_records("shop", {plain("sales", "t", 1)}).has_value());
    auto s = delta("shop", {plain("sales", "new", 1), plain("sales", "t", 2),
                            metadata::Removal{"table", "shop", "sales", "t", ""}});
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(s.error().message.find("table shop/shop/sales/t"), std::string::npos);
    EXPECT_EQ(table_names("shop"), (std::vector<std::string>{"sales.t"}));
}

TEST_F(IngestTest, ReplaceCatalogRefusesRemovalsItself) {
    auto s = store->with([&](sqlite::Database& db) {
        return replace_catalog(
            db, "app-a", "shop",
            prepare_records({metadata::Removal{"routine", "shop", "sales", "f", ""}}), "j", 1);
    });
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error().code, ErrorCode::invalid_argument);
}

// ---- Incremental runs: completions with "delta" (docs/protocol.md section 4).

class IncrementalTest : public IngestTest {
  protected:
    struct Leased {
        std::string job;
        std::string lease;
        std::optional<std::string> baseline;  // as signed
    };

    // Creates and leases a job of mode for source (the oldest queued job of
    // app-a must be this one).
    Leased lease_job(const std::string& source, const char* mode) {
        auto job = queue->create("app-a", source, "extract_metadata", {}, std::string(mode));
        EXPECT_TRUE(job.has_value()) << job.error().describe();
        auto lease = queue->try_lease("app-a", "edge-1");
        EXPECT_TRUE(lease && *lease);
        EXPECT_EQ((*lease)->job.id, job->id);
        return {job->id, *(*lease)->job.lease_id, (*lease)->job.baseline_job_id};
    }

    wire::WireResult<CompletionResult> complete(const Leased& l, const std::vector<Record>& records,
                                                std::optional<std::string> delta_baseline) {
        std::string body = records_chunk(records);
        EXPECT_TRUE(put(l.job, l.lease, 0, body).has_value());
        Completion c{l.lease, "edge-1", {ref(0, body)}, 1, 2};
        c.delta_baseline_job_id = std::move(delta_baseline);
        return ingest->complete("app-a", l.job, c);
    }

    // A full run of source delivering records; returns its job id.
    std::string full_run(const std::string& source, const std::vector<Record>& records) {
        Leased l = lease_job(source, jobs::mode::kFull);
        auto done = complete(l, records, std::nullopt);
        EXPECT_TRUE(done.has_value()) << done.error().description;
        return l.job;
    }

    std::optional<std::string> version(const std::string& source) {
        return store->with([&](sqlite::Database& db) {
            auto v = jobs::catalog_version(db, "app-a", source);
            EXPECT_TRUE(v.has_value());
            return *v;
        });
    }

    std::string version_mode(const std::string& source) {
        return store->with([&](sqlite::Database& db) {
            auto st = store::prepare(
                db, "SELECT mode FROM catalog_sources WHERE app = 'app-a' AND source = ?", source);
            EXPECT_TRUE(st.has_value());
            auto step = st->step();
            EXPECT_TRUE(step && *step == sqlite::Statement::Step::row);
            return st->text(0);
        });
    }
};

TEST_F(IncrementalTest, EveryExtractionSetsTheCatalogVersionAndTheAppliedMode) {
    EXPECT_FALSE(version("shop").has_value());
    std::string first = full_run("shop", {plain("sales", "a", 1)});
    EXPECT_EQ(version("shop"), first);
    EXPECT_EQ(version_mode("shop"), "full");
    EXPECT_EQ(queue->get(first)->applied_mode, "full");
    EXPECT_EQ(queue->get(first)->mode, "full");

    // An empty delivery is a catalog version too.
    std::string second = full_run("shop", {});
    EXPECT_EQ(version("shop"), second);
    // Versions are per source; a failed extraction changes nothing.
    std::string other = full_run("crm", {plain("crm", "x", 1)});
    EXPECT_EQ(version("crm"), other);
    EXPECT_EQ(version("shop"), second);
    Leased bad = lease_job("shop", jobs::mode::kFull);
    std::string body = "not json\n";
    ASSERT_TRUE(put(bad.job, bad.lease, 0, body).has_value());
    ASSERT_FALSE(
        ingest->complete("app-a", bad.job, Completion{bad.lease, "edge-1", {ref(0, body)}, 1, 2})
            .has_value());
    EXPECT_EQ(version("shop"), second);
    EXPECT_FALSE(queue->get(bad.job)->applied_mode.has_value());
}

TEST_F(IncrementalTest, DeltaAppliesChangesAndRemovalsAndLeavesTheRest) {
    metadata::Table orders = plain("sales", "orders", 3);
    metadata::Table untouched = plain("sales", "untouched", 2);
    metadata::Table v = view_of("sales", "v_orders", {{"sales", "orders"}});
    std::string base =
        full_run("shop", {orders, untouched, v, routine("f", ""), routine("g", "x integer")});

    Leased l = lease_job("shop", jobs::mode::kIncremental);
    ASSERT_EQ(l.baseline, base);
    EXPECT_EQ(queue->get(l.job)->baseline_job_id, base);
    metadata::Table orders2 = orders;
    orders2.columns.push_back(
        {.name = "note", .ordinal = 4, .data_type = "TEXT", .normalized_type = "string"});
    metadata::Table added = plain("sales", "added", 2);
    auto done = complete(l,
                         {orders2, added, routine("g", "x integer", "plpgsql"),
                          metadata::Removal{"table", "shop", "sales", "v_orders", ""},
                          metadata::Removal{"routine", "shop", "sales", "f", ""}},
                         base);
    ASSERT_TRUE(done.has_value()) << done.error().description;
    EXPECT_TRUE(done->delta);
    EXPECT_EQ(done->removals, 2);
    // Counts cover what was delivered, not the whole catalog.
    EXPECT_EQ(done->summary.tables, 2);
    EXPECT_EQ(done->summary.views, 0);
    EXPECT_EQ(done->summary.columns, 6);
    EXPECT_EQ(done->routines, 1);

    EXPECT_EQ(table_names("shop"),
              (std::vector<std::string>{"sales.added", "sales.orders", "sales.untouched"}));
    EXPECT_EQ(routine_names("shop"), (std::vector<std::string>{"sales.g(x integer)"}));
    EXPECT_EQ(*catalog->relation(std::nullopt, "shop", "sales.orders"), orders2);
    EXPECT_EQ(*catalog->relation(std::nullopt, "shop", "sales.untouched"), untouched);
    auto tables = catalog->tables(CatalogFilter{.source = "shop"});
    ASSERT_TRUE(tables.has_value());
    for (const auto& t : *tables) {
        EXPECT_EQ(t.job_id, t.name == "untouched" ? base : l.job) << t.name;
    }
    EXPECT_EQ(count("SELECT count(*) FROM catalog_lineage"), 0);

    auto job = queue->get(l.job);
    EXPECT_EQ(job->status, "succeeded");
    EXPECT_EQ(job->mode, "incremental");
    EXPECT_EQ(job->applied_mode, "incremental");
    EXPECT_EQ(version("shop"), l.job);
    EXPECT_EQ(version_mode("shop"), "incremental");
    EXPECT_EQ(count("SELECT count(*) FROM chunks"), 0);

    // The next incremental job runs against the delta's job.
    Leased next = lease_job("shop", jobs::mode::kIncremental);
    EXPECT_EQ(next.baseline, l.job);
    ASSERT_TRUE(complete(next, {metadata::Removal{"table", "shop", "sales", "added", ""}}, l.job)
                    .has_value());
    EXPECT_EQ(table_names("shop"), (std::vector<std::string>{"sales.orders", "sales.untouched"}));
    EXPECT_EQ(version("shop"), next.job);
}

TEST_F(IncrementalTest, IncrementalWithoutACatalogIsSignedFullAndRefusesADelta) {
    Leased l = lease_job("shop", jobs::mode::kIncremental);
    EXPECT_FALSE(l.baseline.has_value());
    EXPECT_EQ(jobs::signed_mode(*queue->get(l.job)), "full");
    auto refused = complete(l, {plain("sales", "a", 1)}, "some-job");
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, "baseline_mismatch");
    EXPECT_EQ(wire::http_status(refused.error().code), 409);
    EXPECT_NE(refused.error().description.find("signed as a full extraction"), std::string::npos)
        << refused.error().description;
    auto job = queue->get(l.job);
    EXPECT_EQ(job->status, "failed");
    EXPECT_EQ(job->reason_code, "baseline_mismatch");
    EXPECT_EQ(count("SELECT count(*) FROM catalog_tables"), 0);
    EXPECT_FALSE(version("shop").has_value());
}

TEST_F(IncrementalTest, DeltaForAFullJobFailsItAndLeavesTheCatalog) {
    std::string base = full_run("shop", {plain("sales", "a", 1)});
    Leased l = lease_job("shop", jobs::mode::kFull);
    EXPECT_FALSE(l.baseline.has_value());
    auto refused = complete(l, {metadata::Removal{"table", "shop", "sales", "a", ""}}, base);
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, "baseline_mismatch");
    EXPECT_EQ(queue->get(l.job)->status, "failed");
    EXPECT_EQ(queue->get(l.job)->reason_code, "baseline_mismatch");
    EXPECT_EQ(table_names("shop"), (std::vector<std::string>{"sales.a"}));
    EXPECT_EQ(version("shop"), base);
}

TEST_F(IncrementalTest, DeltaAgainstAnotherBaselineThanSignedFails) {
    std::string base = full_run("shop", {plain("sales", "a", 1)});
    Leased l = lease_job("shop", jobs::mode::kIncremental);
    auto refused = complete(l, {plain("sales", "b", 1)}, "an-older-job");
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, "baseline_mismatch");
    EXPECT_NE(refused.error().description.find("expected baseline " + base), std::string::npos)
        << refused.error().description;
    EXPECT_EQ(queue->get(l.job)->reason_code, "baseline_mismatch");
    EXPECT_EQ(table_names("shop"), (std::vector<std::string>{"sales.a"}));
    EXPECT_EQ(version("shop"), base);
}

TEST_F(IncrementalTest, StaleBaselineFailsTheJobWithBaselineMismatchAndLeavesTheCatalog) {
    std::string base = full_run("shop", {plain("sales", "a", 1)});
    Leased slow = lease_job("shop", jobs::mode::kIncremental);
    ASSERT_EQ(slow.baseline, base);
    // Another run of the same source commits while the slow one works.
    std::string newer = full_run("shop", {plain("sales", "b", 1)});
    ASSERT_EQ(version("shop"), newer);

    auto refused = complete(slow, {plain("sales", "c", 1)}, base);
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, "baseline_mismatch");
    EXPECT_NE(refused.error().description.find("expected baseline is now job " + newer),
              std::string::npos)
        << refused.error().description;
    auto job = queue->get(slow.job);
    EXPECT_EQ(job->status, "failed");
    EXPECT_EQ(job->reason_code, "baseline_mismatch");
    EXPECT_FALSE(job->applied_mode.has_value());
    EXPECT_EQ(table_names("shop"), (std::vector<std::string>{"sales.b"}));
    EXPECT_EQ(version("shop"), newer);
    EXPECT_EQ(count("SELECT count(*) FROM chunks"), 0);

    // A re-lease takes the version of its own moment.
    Leased again = lease_job("shop", jobs::mode::kIncremental);
    EXPECT_EQ(again.baseline, newer);
}

TEST_F(IncrementalTest, AFullCompletionOfAnIncrementalJobReplacesTheCatalog) {
    // The agent falls back to a full run when its state names another job.
    std::string base = full_run("shop", {plain("sales", "a", 1), plain("sales", "b", 1)});
    Leased l = lease_job("shop", jobs::mode::kIncremental);
    ASSERT_EQ(l.baseline, base);
    auto done = complete(l, {plain("sales", "c", 1)}, std::nullopt);
    ASSERT_TRUE(done.has_value()) << done.error().description;
    EXPECT_FALSE(done->delta);
    EXPECT_EQ(table_names("shop"), (std::vector<std::string>{"sales.c"}));
    EXPECT_EQ(queue->get(l.job)->mode, "incremental");
    EXPECT_EQ(queue->get(l.job)->applied_mode, "full");
    EXPECT_EQ(version("shop"), l.job);
    EXPECT_EQ(version_mode("shop"), "full");
}

TEST_F(IncrementalTest, AFullRunAfterADeltaReplacesEverything) {
    std::string base = full_run("shop", {plain("sales", "a", 1), routine("f", "")});
    Leased l = lease_job("shop", jobs::mode::kIncremental);
    ASSERT_TRUE(complete(l, {plain("sales", "b", 1)}, base).has_value());
    EXPECT_EQ(table_names("shop"), (std::vector<std::string>{"sales.a", "sales.b"}));
    std::string full = full_run("shop", {plain("sales", "z", 1)});
    EXPECT_EQ(table_names("shop"), (std::vector<std::string>{"sales.z"}));
    EXPECT_TRUE(routine_names("shop").empty());
    EXPECT_EQ(version("shop"), full);
    EXPECT_EQ(version_mode("shop"), "full");
}

TEST_F(IncrementalTest, BadDeltaChunksFailTheJobAndLeaveTheCatalog) {
    std::string base = full_run("shop", {plain("sales", "a", 1)});
    Leased l = lease_job("shop", jobs::mode::kIncremental);
    auto refused = complete(
        l, {plain("sales", "a", 2), metadata::Removal{"table", "shop", "sales", "a", ""}}, base);
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, "bad_chunk");
    EXPECT_EQ(queue->get(l.job)->status, "failed");
    EXPECT_EQ(*catalog->relation(std::nullopt, "shop", "sales.a"), plain("sales", "a", 1));
    EXPECT_EQ(version("shop"), base);
}

TEST_F(IncrementalTest, DeltaOnAnInteractiveJobIsRefusedAndTheJobLeft) {
    auto job = queue->create("app-a", "shop", "preflight");
    ASSERT_TRUE(job.has_value());
    auto lease = queue->try_lease("app-a", "edge-1");
    ASSERT_TRUE(lease && *lease);
    Completion c{*(*lease)->job.lease_id, "edge-1", {}, 1, 2};
    c.result = nlohmann::json{{"ok", true}};
    c.delta_baseline_job_id = "x";
    auto refused = ingest->complete("app-a", job->id, c);
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, "invalid_request");
    EXPECT_EQ(queue->get(job->id)->status, "leased");
}

}  // namespace
}  // namespace sa::hub::ingest
