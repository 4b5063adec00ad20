#include "hub/cli/commands.h"

#include <gtest/gtest.h>
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/crypto/digest.h"
#include "common/crypto/ed25519.h"
#include "common/protocol/content_digest.h"
#include "common/util/files.h"
#include "hub/identity/test_keys.h"
#include "hub/ingest/ingest.h"
#include "hub/jobs/job_queue.h"
#include "hub/pki/pki.h"
#include "hub/store/layout.h"
#include "hub/store/store.h"
#include "hub/testing/test_support.h"

namespace sa::hub::cli {
namespace {

using json = nlohmann::json;

struct Captured {
    std::ostringstream out;
    std::ostringstream err;
    Io io() { return Io{out, err}; }
};

class CommandsTest : public ::testing::Test {
  protected:
    std::string dir() const { return tmp.file("data"); }
    testing::TempDir tmp;
};

TEST(ResolveDataDir, FlagThenEnvironmentThenError) {
    ::unsetenv(kDataDirEnv);
    EXPECT_EQ(resolve_data_dir(std::string("/x")).value(), "/x");
    EXPECT_FALSE(resolve_data_dir(std::nullopt).has_value());
    ::setenv(kDataDirEnv, "/from-env", 1);
    EXPECT_EQ(resolve_data_dir(std::nullopt).value(), "/from-env");
    EXPECT_EQ(resolve_data_dir(std::string("/x")).value(), "/x");
    ::unsetenv(kDataDirEnv);
}

TEST_F(CommandsTest, AppCreatePrintsTheSecretOnceAndStoresItHashed) {
    Captured c;
    ASSERT_EQ(app_create(dir(), "crm", true, c.io(), testing::fast_scrypt()), 0) << c.err.str();
    auto out = json::parse(c.out.str());
    EXPECT_EQ(out["app"], "crm");
    std::string id = out["client_id"];
    std::string secret = out["client_secret"];
    EXPECT_EQ(id.rfind("cid_", 0), 0u);
    EXPECT_EQ(secret.size(), 43u);

    auto db = util::read_file(store::Layout::of(dir()).database);
    auto wal = util::read_file(store::Layout::of(dir()).database + "-wal");
    ASSERT_TRUE(db.has_value());
    EXPECT_EQ(db->find(secret), std::string::npos);
    if (wal) {
        EXPECT_EQ(wal->find(secret), std::string::npos);
    }

    Captured human;
    ASSERT_EQ(app_create(dir(), "billing", false, human.io(), testing::fast_scrypt()), 0);
    std::string text = human.out.str();
    EXPECT_NE(text.find("app: billing\n"), std::string::npos);
    EXPECT_NE(text.find("client_id: cid_"), std::string::npos);
    EXPECT_NE(text.find("client_secret: "), std::string::npos);
    EXPECT_NE(text.find("not be shown again"), std::string::npos);

    Captured dup;
    EXPECT_EQ(app_create(dir(), "crm", false, dup.io(), testing::fast_scrypt()), 1);
    EXPECT_NE(dup.err.str().find("already exists"), std::string::npos);
    EXPECT_TRUE(dup.out.str().empty());

    Captured list;
    ASSERT_EQ(app_list(dir(), true, list.io()), 0);
    EXPECT_EQ(json::parse(list.out.str()).size(), 2u);
    EXPECT_EQ(list.out.str().find(secret), std::string::npos);
}

TEST_F(CommandsTest, JobCreateAndShow) {
    Captured setup;
    ASSERT_EQ(app_create(dir(), "crm", true, setup.io(), testing::fast_scrypt()), 0);

    Captured created;
    ASSERT_EQ(job_create(dir(), "crm", "inventory", "extract_metadata", false, created.io()), 0)
        << created.err.str();
    std::string id = created.out.str();
    ASSERT_FALSE(id.empty());
    EXPECT_EQ(id.back(), '\n');
    id.pop_back();
    EXPECT_EQ(id.find('\n'), std::string::npos);  // the id alone on its line

    Captured as_json;
    ASSERT_EQ(job_create(dir(), "crm", "inventory", "extract_metadata", true, as_json.io()), 0);
    EXPECT_TRUE(json::parse(as_json.out.str())["job_id"].is_string());

    Captured shown;
    ASSERT_EQ(job_show(dir(), id, true, shown.io()), 0);
    auto job = json::parse(shown.out.str());
    EXPECT_EQ(job["id"], id);
    EXPECT_EQ(job["app"], "crm");
    EXPECT_EQ(job["source"], "inventory");
    EXPECT_EQ(job["operation"], "extract_metadata");
    EXPECT_EQ(job["status"], "queued");
    EXPECT_EQ(job["attempts"], 0);
    EXPECT_TRUE(job["created_at_ms"].is_number_integer());
    EXPECT_TRUE(job["reason_code"].is_null());
    EXPECT_TRUE(job.contains("completed_at_ms"));

    Captured human;
    ASSERT_EQ(job_show(dir(), id, false, human.io()), 0);
    EXPECT_NE(human.out.str().find("status: queued\n"), std::string::npos);

    Captured listed;
    ASSERT_EQ(job_list(dir(), std::string("crm"), std::string("queued"), true, listed.io()), 0);
    EXPECT_EQ(json::parse(listed.out.str()).size(), 2u);

    Captured missing;
    EXPECT_EQ(job_show(dir(), "no-such-job", false, missing.io()), 1);
    EXPECT_NE(missing.err.str().find("no job"), std::string::npos);

    Captured bad_app;
    EXPECT_EQ(job_create(dir(), "nope", "inventory", "extract_metadata", false, bad_app.io()), 1);
    EXPECT_NE(bad_app.err.str().find("no app"), std::string::npos);
    Captured bad_op;
    EXPECT_EQ(job_create(dir(), "crm", "inventory", "drop", false, bad_op.io()), 1);
    Captured bad_source;
    EXPECT_EQ(job_create(dir(), "crm", "../etc", "extract_metadata", false, bad_source.io()), 1);
}

// Plays the agent from another connection: leases the next job of app and
// ends it with end(queue, ingest, leased job). Gives up after 10 s.
template <class F>
std::thread agent_thread(const std::string& data_dir, const std::string& app, F end) {
    return std::thread([data_dir, app, end] {
        clock::SystemClock clock;
        auto store = store::Store::open(store::Layout::of(data_dir).database);
        ASSERT_TRUE(store.has_value());
        jobs::JobQueue queue(**store, clock);
        ingest::Ingest ingest(**store, clock);
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline) {
            auto lease = queue.try_lease(app, "edge-1");
            ASSERT_TRUE(lease.has_value());
            if (*lease) {
                end(queue, ingest, (*lease)->job);
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        ADD_FAILURE() << "no job to lease";
    });
}

TEST_F(CommandsTest, JobCreateWaitPrintsTheResultOfAnInteractiveJob) {
    Captured setup;
    ASSERT_EQ(app_create(dir(), "crm", true, setup.io(), testing::fast_scrypt()), 0);
    auto agent =
        agent_thread(dir(), "crm", [](jobs::JobQueue&, ingest::Ingest& ingest, const jobs::Job& j) {
            ingest::Completion c{*j.lease_id, "edge-1", {}, 1, 2};
            c.result = json{{"ok", true}, {"server_version", "16.2"}};
            auto done = ingest.complete(j.app, j.id, c);
            EXPECT_TRUE(done.has_value()) << done.error().description;
        });
    Captured waited;
    JobSpec spec{"crm", "inventory", "test_connection", {}};
    int code =
        job_create(dir(), spec, WaitOptions{true, std::chrono::seconds(10)}, false, waited.io());
    agent.join();
    EXPECT_EQ(code, 0) << waited.err.str();
    std::string text = waited.out.str();
    EXPECT_NE(text.find("operation: test_connection\n"), std::string::npos) << text;
    EXPECT_NE(text.find("status: succeeded\n"), std::string::npos) << text;
    EXPECT_NE(text.find("\"server_version\": \"16.2\""), std::string::npos) << text;
    EXPECT_NE(waited.err.str().find("waiting for job"), std::string::npos);
}

TEST_F(CommandsTest, JobCreateWaitExitsOneWhenTheJobFailsAndTwoOnTimeout) {
    Captured setup;
    ASSERT_EQ(app_create(dir(), "crm", true, setup.io(), testing::fast_scrypt()), 0);
    auto agent =
        agent_thread(dir(), "crm", [](jobs::JobQueue& queue, ingest::Ingest&, const jobs::Job& j) {
            auto done = queue.fail(
                j.app, j.id,
                jobs::FailReport{*j.lease_id, "edge-1", "refused", "operation_not_allowed",
                                 "policy allows extract_metadata only"});
            EXPECT_TRUE(done.has_value());
        });
    Captured refused;
    int code = job_create(dir(), JobSpec{"crm", "inventory", "preflight", {}},
                          WaitOptions{true, std::chrono::seconds(10)}, true, refused.io());
    agent.join();
    EXPECT_EQ(code, 1) << refused.err.str();
    auto shown = json::parse(refused.out.str());
    EXPECT_EQ(shown["status"], "refused");
    EXPECT_EQ(shown["reason_code"], "operation_not_allowed");
    EXPECT_EQ(shown["message"], "policy allows extract_metadata only");

    Captured slow;
    code =
        job_create(dir(), JobSpec{"crm", "inventory", "list_schemas", {}},
                   WaitOptions{true, std::chrono::milliseconds(300), std::chrono::milliseconds(50)},
                   false, slow.io());
    EXPECT_EQ(code, 2);
    EXPECT_NE(slow.err.str().find("timed out after 0.3 s"), std::string::npos) << slow.err.str();
    EXPECT_NE(slow.err.str().find("is still queued"), std::string::npos) << slow.err.str();
    EXPECT_NE(slow.out.str().find("status: queued\n"), std::string::npos);
}

TEST_F(CommandsTest, JobCreateTakesAModeAndJobShowTellsWhatWasApplied) {
    Captured setup;
    ASSERT_EQ(app_create(dir(), "crm", true, setup.io(), testing::fast_scrypt()), 0);
    JobSpec spec{"crm", "inventory", "preflight", {}};
    spec.mode = "incremental";
    Captured refused;
    EXPECT_EQ(job_create(dir(), spec, WaitOptions{}, false, refused.io()), 1);
    EXPECT_NE(refused.err.str().find("--mode is only for --operation extract_metadata"),
              std::string::npos)
        << refused.err.str();

    spec.operation = "extract_metadata";
    Captured created;
    ASSERT_EQ(job_create(dir(), spec, WaitOptions{}, false, created.io()), 0) << created.err.str();
    std::string id = created.out.str();
    id.pop_back();
    Captured queued;
    ASSERT_EQ(job_show(dir(), id, false, queued.io()), 0);
    EXPECT_NE(queued.out.str().find("mode: incremental\nbaseline_job_id: -\napplied: -\n"),
              std::string::npos)
        << queued.out.str();

    {
        // The agent: no catalog yet, so the job runs (and completes) in full.
        clock::SystemClock clock;
        auto store = store::Store::open(store::Layout::of(dir()).database);
        ASSERT_TRUE(store.has_value());
        jobs::JobQueue queue(**store, clock);
        ingest::Ingest ingest(**store, clock);
        auto lease = queue.try_lease("crm", "edge-1");
        ASSERT_TRUE(lease && *lease);
        std::string lease_id = *(*lease)->job.lease_id;
        std::string body = testing::chunk_of({testing::sample_table("orders", 2)});
        ASSERT_TRUE(
            ingest.put_chunk("crm", id, lease_id, 0, protocol::content_digest_sha256(body), body)
                .has_value());
        auto done = ingest.complete(
            "crm", id,
            ingest::Completion{lease_id,
                               "edge-1",
                               {{0, crypto::sha256_hex(body), static_cast<int64_t>(body.size())}},
                               1,
                               2});
        ASSERT_TRUE(done.has_value()) << done.error().description;
    }
    Captured human;
    ASSERT_EQ(job_show(dir(), id, false, human.io()), 0);
    EXPECT_NE(human.out.str().find("mode: incremental\nbaseline_job_id: -\napplied: full\n"),
              std::string::npos)
        << human.out.str();
    Captured as_json;
    ASSERT_EQ(job_show(dir(), id, true, as_json.io()), 0);
    auto job = json::parse(as_json.out.str());
    EXPECT_EQ(job["mode"], "incremental");
    EXPECT_EQ(job["applied"], "full");
    EXPECT_TRUE(job["baseline_job_id"].is_null());

    // Without --mode an extraction is full.
    Captured plain;
    ASSERT_EQ(job_create(dir(), JobSpec{"crm", "inventory", "extract_metadata", {}}, WaitOptions{},
                         true, plain.io()),
              0);
    std::string plain_id = json::parse(plain.out.str())["job_id"];
    Captured plain_shown;
    ASSERT_EQ(job_show(dir(), plain_id, true, plain_shown.io()), 0);
    EXPECT_EQ(json::parse(plain_shown.out.str())["mode"], "full");
}

TEST_F(CommandsTest, JobCreateRefusesBadFiltersNamingTheFlag) {
    Captured setup;
    ASSERT_EQ(app_create(dir(), "crm", true, setup.io(), testing::fast_scrypt()), 0);
    JobSpec spec{"crm", "inventory", "extract_metadata", {}};
    spec.filters.tables.exclude = {"tmp_.*", "[unclosed"};
    Captured bad;
    EXPECT_EQ(job_create(dir(), spec, WaitOptions{}, false, bad.io()), 1);
    EXPECT_NE(bad.err.str().find("--exclude-table pattern 2 '[unclosed'"), std::string::npos)
        << bad.err.str();
    EXPECT_TRUE(bad.out.str().empty());

    spec.filters.tables.exclude = {"tmp_.*"};
    spec.filters.schemas.include = {"public", "sales"};
    Captured ok;
    ASSERT_EQ(job_create(dir(), spec, WaitOptions{}, false, ok.io()), 0) << ok.err.str();
    std::string id = ok.out.str();
    id.pop_back();
    Captured shown;
    ASSERT_EQ(job_show(dir(), id, false, shown.io()), 0);
    EXPECT_NE(
        shown.out.str().find(
            "filters: schemas include [\"public\", \"sales\"]; tables exclude [\"tmp_.*\"]\n"),
        std::string::npos)
        << shown.out.str();
    Captured as_json;
    ASSERT_EQ(job_show(dir(), id, true, as_json.io()), 0);
    EXPECT_EQ(json::parse(as_json.out.str())["filters"],
              (json{{"schemas", {{"include", {"public", "sales"}}}},
                    {"tables", {{"exclude", {"tmp_.*"}}}}}));
}

TEST_F(CommandsTest, JobCancelEndsQueuedJobsAndRequestsLeasedOnes) {
    Captured setup;
    ASSERT_EQ(app_create(dir(), "crm", true, setup.io(), testing::fast_scrypt()), 0);
    Captured first;
    ASSERT_EQ(job_create(dir(), "crm", "inventory", "extract_metadata", false, first.io()), 0);
    std::string queued = first.out.str();
    queued.pop_back();
    Captured cancelled;
    ASSERT_EQ(job_cancel(dir(), queued, false, cancelled.io()), 0) << cancelled.err.str();
    EXPECT_EQ(cancelled.out.str(), "job " + queued + " cancelled\n");
    Captured again;
    EXPECT_EQ(job_cancel(dir(), queued, false, again.io()), 1);
    EXPECT_EQ(again.err.str(),
              "agent-hub job cancel: job " + queued + " has already ended (status cancelled)\n");

    Captured second;
    ASSERT_EQ(job_create(dir(), "crm", "inventory", "extract_metadata", false, second.io()), 0);
    std::string leased = second.out.str();
    leased.pop_back();
    {
        clock::SystemClock clock;
        auto store = store::Store::open(store::Layout::of(dir()).database);
        ASSERT_TRUE(store.has_value());
        jobs::JobQueue queue(**store, clock);
        auto lease = queue.try_lease("crm", "edge-7");
        ASSERT_TRUE(lease && *lease);
        ASSERT_EQ((*lease)->job.id, leased);
    }
    Captured requested;
    ASSERT_EQ(job_cancel(dir(), leased, true, requested.io()), 0) << requested.err.str();
    EXPECT_EQ(json::parse(requested.out.str()), (json{{"job_id", leased},
                                                      {"status", "leased"},
                                                      {"cancel_requested", true},
                                                      {"ended", false}}));
    Captured shown;
    ASSERT_EQ(job_show(dir(), leased, false, shown.io()), 0);
    EXPECT_NE(shown.out.str().find("cancel_requested: yes, at "), std::string::npos);
    EXPECT_NE(shown.out.str().find("status: leased\n"), std::string::npos);
    Captured missing;
    EXPECT_EQ(job_cancel(dir(), "no-such-job", false, missing.io()), 1);
}

TEST_F(CommandsTest, PkiRotateJobKeyPrintsBothKeyIds) {
    ASSERT_TRUE(pki::ensure(dir(), {}).has_value());
    const store::Layout l = store::Layout::of(dir());
    auto before = crypto::Ed25519PublicKey::from_pem_file(l.job_public);
    ASSERT_TRUE(before.has_value());
    Captured rotated;
    ASSERT_EQ(pki_rotate_job_key(dir(), true, rotated.io()), 0) << rotated.err.str();
    auto out = json::parse(rotated.out.str());
    auto after = crypto::Ed25519PublicKey::from_pem_file(l.job_public);
    ASSERT_TRUE(after.has_value());
    EXPECT_EQ(out["previous_kid"], before->key_id());
    EXPECT_EQ(out["kid"], after->key_id());
    EXPECT_EQ(out["public_key"], l.job_public);
    EXPECT_EQ(out["previous_public_key"], l.job_previous_public);
    EXPECT_EQ(util::read_file(l.job_previous_public).value(), before->pem());

    Captured human;
    ASSERT_EQ(pki_rotate_job_key(dir(), false, human.io()), 0);
    EXPECT_NE(human.out.str().find("previous job-signing key id: " + after->key_id()),
              std::string::npos)
        << human.out.str();
    EXPECT_NE(human.out.str().find("hub.job_signing_keys"), std::string::npos);

    // Two steps: prepare (customers pin it), then rotate to exactly that key.
    Captured prepared;
    ASSERT_EQ(pki_prepare_job_key(dir(), true, prepared.io()), 0) << prepared.err.str();
    std::string next_kid = json::parse(prepared.out.str())["next_kid"];
    EXPECT_EQ(json::parse(prepared.out.str())["public_key"], l.job_next_public);
    auto pinned = crypto::Ed25519PublicKey::from_pem_file(l.job_next_public);
    ASSERT_TRUE(pinned.has_value());
    EXPECT_EQ(pinned->key_id(), next_kid);
    Captured prepared_again;  // idempotent
    ASSERT_EQ(pki_prepare_job_key(dir(), true, prepared_again.io()), 0);
    EXPECT_EQ(json::parse(prepared_again.out.str())["next_kid"], next_kid);
    auto still = crypto::Ed25519PublicKey::from_pem_file(l.job_public);
    ASSERT_TRUE(still.has_value());
    EXPECT_NE(still->key_id(), next_kid);  // not in use yet
    Captured switched;
    ASSERT_EQ(pki_rotate_job_key(dir(), true, switched.io()), 0);
    EXPECT_EQ(json::parse(switched.out.str())["kid"], next_kid);
    EXPECT_FALSE(util::read_file(l.job_next_key).has_value());
    EXPECT_FALSE(util::read_file(l.job_next_public).has_value());

    Captured nothing;
    EXPECT_EQ(pki_rotate_job_key(tmp.file("empty"), false, nothing.io()), 1);
    EXPECT_NE(nothing.err.str().find("no job-signing key"), std::string::npos);
}

TEST_F(CommandsTest, CommandsOtherThanAppCreateNeedAnExistingDatabase) {
    Captured c;
    EXPECT_EQ(job_create(dir(), "crm", "inv", "extract_metadata", false, c.io()), 1);
    EXPECT_NE(c.err.str().find("no hub database"), std::string::npos);
    EXPECT_FALSE(std::filesystem::exists(store::Layout::of(dir()).database));
}

TEST_F(CommandsTest, CatalogOfAnEmptyHubIsAnEmptyArray) {
    Captured setup;
    ASSERT_EQ(app_create(dir(), "crm", true, setup.io(), testing::fast_scrypt()), 0);
    Captured c;
    ASSERT_EQ(catalog_tables(dir(), std::string("inventory"), std::nullopt, true, c.io()), 0);
    EXPECT_EQ(c.out.str(), "[]\n");
    Captured cols;
    EXPECT_EQ(catalog_columns(dir(), "inventory", "orders", std::nullopt, false, cols.io()), 1);
}

// ---- catalog commands over the model version 2 catalog (issue #7).

class CatalogCommandsTest : public CommandsTest {
  protected:
    void SetUp() override {
        Captured setup;
        ASSERT_EQ(app_create(dir(), "crm", true, setup.io(), testing::fast_scrypt()), 0);
        metadata::Table orders = testing::sample_table("orders", 3);
        orders.database = "shop";
        orders.schema = "sales";
        orders.owner = "app_owner";
        orders.estimated_rows = 42;
        orders.columns[0].identity = "by_default";
        orders.columns[2].generated = "stored";
        orders.columns[2].generation_expression = "(id * 2)";
        orders.columns[2].comment = "twice the id";
        metadata::Table view = testing::sample_table("big_orders", 1, "view");
        view.database = "shop";
        view.schema = "sales";
        view.depends_on = {{"sales", "orders"}};
        metadata::Routine fn;
        fn.database = "shop";
        fn.schema = "sales";
        fn.name = "order_count";
        fn.kind = "function";
        fn.signature = "since date";
        fn.return_type = "bigint";
        fn.language = "sql";
        std::string body = testing::records_chunk({orders, view, fn});

        clock::SystemClock clock;
        auto store = store::Store::open(store::Layout::of(dir()).database);
        ASSERT_TRUE(store.has_value());
        jobs::JobQueue queue(**store, clock);
        ingest::Ingest ingest(**store, clock);
        auto job = queue.create("crm", "shop", "extract_metadata");
        ASSERT_TRUE(job.has_value());
        auto lease = queue.try_lease("crm", "edge-1");
        ASSERT_TRUE(lease && *lease);
        const std::string lease_id = *(*lease)->job.lease_id;
        ASSERT_TRUE(
            ingest
                .put_chunk("crm", job->id, lease_id, 0, protocol::content_digest_sha256(body), body)
                .has_value());
        auto done = ingest.complete(
            "crm", job->id,
            ingest::Completion{lease_id,
                               "edge-1",
                               {{0, crypto::sha256_hex(body), static_cast<int64_t>(body.size())}},
                               1,
                               2});
        ASSERT_TRUE(done.has_value()) << done.error().description;
    }
};

TEST_F(CatalogCommandsTest, TablesAndColumnsKeepTheirKeysAndShowVersionTwoFields) {
    Captured c;
    ASSERT_EQ(catalog_tables(dir(), std::string("shop"), std::nullopt, true, c.io()), 0);
    auto tables = json::parse(c.out.str());
    ASSERT_EQ(tables.size(), 2u);
    // Keys scripts already use, then the new ones.
    for (const char* key : {"source", "database", "schema", "name", "kind", "columns", "definition",
                            "app", "job_id", "ingested_at_ms", "owner", "comment", "estimated_rows",
                            "estimated_bytes", "partition_of", "qualified_name", "fingerprint"}) {
        EXPECT_TRUE(tables[1].contains(key)) << key;
    }
    EXPECT_EQ(tables[1]["name"], "orders");
    EXPECT_EQ(tables[1]["columns"], 3);
    EXPECT_EQ(tables[1]["estimated_rows"], 42);
    EXPECT_EQ(tables[0]["kind"], "view");
    Captured text;
    ASSERT_EQ(catalog_tables(dir(), std::string("shop"), std::nullopt, false, text.io()), 0);
    EXPECT_EQ(text.out.str(),
              "shop/shop/sales/big_orders  view  1 columns\n"
              "shop/shop/sales/orders  table  3 columns  owner app_owner  ~42 rows\n");

    Captured cols;
    ASSERT_EQ(catalog_columns(dir(), "shop", "orders", std::nullopt, true, cols.io()), 0);
    auto columns = json::parse(cols.out.str());
    ASSERT_EQ(columns.size(), 3u);
    EXPECT_EQ(columns[0]["table"], "shop/shop/sales/orders");
    EXPECT_EQ(columns[0]["data_type"], "INTEGER");
    EXPECT_EQ(columns[0]["normalized_type"], "integer");
    EXPECT_EQ(columns[0]["identity"], "by_default");
    EXPECT_EQ(columns[0]["primary_key_position"], 1);
    EXPECT_EQ(columns[1]["default"], "'x'");
    EXPECT_EQ(columns[2]["generated"], "stored");
    EXPECT_EQ(columns[2]["generation_expression"], "(id * 2)");
    Captured cols_text;
    ASSERT_EQ(catalog_columns(dir(), "shop", "orders", std::nullopt, false, cols_text.io()), 0);
    EXPECT_EQ(cols_text.out.str(),
              "shop/shop/sales/orders  1  id  INTEGER  integer  NOT NULL  PK1  IDENTITY "
              "by_default\n"
              "shop/shop/sales/orders  2  c2  TEXT  string  NULL  DEFAULT 'x'\n"
              "shop/shop/sales/orders  3  c3  TEXT  string  NULL  GENERATED stored AS ((id * "
              "2))  -- twice the id\n");
}

TEST_F(CatalogCommandsTest, RoutinesLineageAndShow) {
    Captured r;
    ASSERT_EQ(catalog_routines(dir(), "shop", std::nullopt, false, r.io()), 0) << r.err.str();
    EXPECT_EQ(r.out.str(),
              "shop/shop/sales/order_count(since date)  function  returns bigint  language sql\n");
    Captured rj;
    ASSERT_EQ(catalog_routines(dir(), "shop", std::string("crm"), true, rj.io()), 0);
    auto routines = json::parse(rj.out.str());
    ASSERT_EQ(routines.size(), 1u);
    EXPECT_EQ(routines[0]["signature"], "since date");
    EXPECT_EQ(routines[0]["return_type"], "bigint");

    Captured up;
    ASSERT_EQ(catalog_lineage(dir(), "shop", "sales.big_orders", std::nullopt, false, up.io()), 0)
        << up.err.str();
    EXPECT_EQ(up.out.str(),
              "shop/shop/sales/big_orders  view\nreads:\n  sales.orders  table\nread by: -\n");
    Captured down;
    ASSERT_EQ(catalog_lineage(dir(), "shop", "sales.orders", std::nullopt, true, down.io()), 0);
    auto lineage = json::parse(down.out.str());
    EXPECT_TRUE(lineage["reads"].empty());
    ASSERT_EQ(lineage["read_by"].size(), 1u);
    EXPECT_EQ(lineage["read_by"][0]["name"], "big_orders");

    Captured show;
    ASSERT_EQ(catalog_show(dir(), "shop", "sales.orders", std::nullopt, false, show.io()), 0);
    auto record = json::parse(show.out.str());
    EXPECT_EQ(record["record"], "table");
    EXPECT_EQ(record["columns"][2]["comment"], "twice the id");
    EXPECT_NE(show.out.str().find("\n  \"columns\": ["), std::string::npos);  // pretty
    Captured show_fn;
    ASSERT_EQ(
        catalog_show(dir(), "shop", "order_count(since date)", std::nullopt, true, show_fn.io()),
        0);
    const std::string one_line = show_fn.out.str();
    EXPECT_EQ(json::parse(one_line)["language"], "sql");
    EXPECT_EQ(std::count(one_line.begin(), one_line.end(), '\n'), 1);
}

TEST_F(CatalogCommandsTest, UnknownSourcesAndObjectsAreClearErrors) {
    Captured r;
    EXPECT_EQ(catalog_routines(dir(), "nowhere", std::nullopt, false, r.io()), 1);
    EXPECT_EQ(r.err.str(),
              "agent-hub catalog routines: no metadata has been delivered for source 'nowhere' "
              "(run an extract_metadata job first)\n");
    EXPECT_TRUE(r.out.str().empty());
    Captured l;
    EXPECT_EQ(catalog_lineage(dir(), "shop", "sales.nope", std::nullopt, false, l.io()), 1);
    EXPECT_EQ(l.err.str(),
              "agent-hub catalog lineage: no table or view 'sales.nope' in source 'shop'\n");
    Captured s;
    EXPECT_EQ(catalog_show(dir(), "nowhere", "x", std::nullopt, false, s.io()), 1);
    EXPECT_NE(s.err.str().find("no metadata has been delivered for source 'nowhere'"),
              std::string::npos);
    Captured other_app;
    EXPECT_EQ(
        catalog_show(dir(), "shop", "sales.orders", std::string("other"), false, other_app.io()),
        1);
    // A function is not a relation: lineage refuses it.
    Captured fn;
    EXPECT_EQ(catalog_lineage(dir(), "shop", "order_count", std::nullopt, false, fn.io()), 1);
}

// ---- app rotate / revoke / show (issue #5).

bool file_contains(const std::string& path, const std::string& needle) {
    auto data = util::read_file(path);
    return data && data->find(needle) != std::string::npos;
}

TEST_F(CommandsTest, AppRotatePrintsTheNewSecretOnceAndRecordsTheOperator) {
    Captured created;
    ASSERT_EQ(app_create(dir(), "crm", true, created.io(), testing::fast_scrypt()), 0);
    const std::string old_secret = json::parse(created.out.str())["client_secret"];
    const std::string id = json::parse(created.out.str())["client_id"];

    Captured rotated;
    ASSERT_EQ(app_rotate(dir(), "crm", std::chrono::seconds(600), true, rotated.io(),
                         testing::fast_scrypt()),
              0)
        << rotated.err.str();
    auto out = json::parse(rotated.out.str());
    EXPECT_EQ(out["app"], "crm");
    EXPECT_EQ(out["client_id"], id);
    const std::string new_secret = out["client_secret"];
    EXPECT_EQ(new_secret.size(), 43u);
    EXPECT_NE(new_secret, old_secret);
    EXPECT_TRUE(out["previous_secret_valid_until_ms"].is_number_integer());
    // Neither secret is stored in clear.
    const auto layout = store::Layout::of(dir());
    for (const std::string& secret : {old_secret, new_secret}) {
        EXPECT_FALSE(file_contains(layout.database, secret));
        EXPECT_FALSE(file_contains(layout.database + "-wal", secret));
    }

    Captured shown;
    ASSERT_EQ(app_show(dir(), "crm", true, shown.io()), 0) << shown.err.str();
    auto app = json::parse(shown.out.str());
    EXPECT_EQ(app["state"], "active");
    EXPECT_EQ(app["rotated_by"], current_operator());
    EXPECT_EQ(app["previous_secret_valid_until_ms"], out["previous_secret_valid_until_ms"]);
    ASSERT_EQ(app["history"].size(), 2u);
    EXPECT_EQ(app["history"][0]["event"], "created");
    EXPECT_EQ(app["history"][1]["event"], "rotated");
    EXPECT_EQ(app["history"][1]["actor"], current_operator());
    EXPECT_EQ(shown.out.str().find(new_secret), std::string::npos);

    Captured human;
    ASSERT_EQ(app_rotate(dir(), "crm", std::chrono::seconds(0), false, human.io(),
                         testing::fast_scrypt()),
              0);
    EXPECT_NE(human.out.str().find("client_secret: "), std::string::npos);
    EXPECT_NE(human.out.str().find("previous client secret no longer works"), std::string::npos);

    Captured text;
    ASSERT_EQ(app_show(dir(), "crm", false, text.io()), 0);
    EXPECT_NE(text.out.str().find("state: active\n"), std::string::npos);
    EXPECT_NE(text.out.str().find("rotated  by " + current_operator()), std::string::npos);

    Captured missing;
    EXPECT_EQ(app_rotate(dir(), "nope", std::chrono::seconds(0), false, missing.io()), 1);
    EXPECT_NE(missing.err.str().find("no app named 'nope'"), std::string::npos);
    EXPECT_TRUE(missing.out.str().empty());
}

TEST_F(CommandsTest, AppRevokeShowsInListAndShowAndIsFinal) {
    Captured setup;
    ASSERT_EQ(app_create(dir(), "crm", true, setup.io(), testing::fast_scrypt()), 0);
    ASSERT_EQ(app_create(dir(), "billing", true, setup.io(), testing::fast_scrypt()), 0);

    Captured revoked;
    ASSERT_EQ(app_revoke(dir(), "crm", false, revoked.io()), 0) << revoked.err.str();
    EXPECT_NE(revoked.out.str().find("app crm ("), std::string::npos);
    EXPECT_NE(revoked.out.str().find("revoked at"), std::string::npos);

    Captured list;
    ASSERT_EQ(app_list(dir(), true, list.io()), 0);
    auto apps = json::parse(list.out.str());
    ASSERT_EQ(apps.size(), 2u);
    EXPECT_EQ(apps[0]["app"], "billing");
    EXPECT_EQ(apps[0]["state"], "active");
    EXPECT_EQ(apps[1]["app"], "crm");
    EXPECT_EQ(apps[1]["state"], "revoked");
    EXPECT_TRUE(apps[1]["revoked_at_ms"].is_number_integer());
    EXPECT_EQ(apps[1]["revoked_by"], current_operator());
    Captured text;
    ASSERT_EQ(app_list(dir(), false, text.io()), 0);
    EXPECT_NE(text.out.str().find("  revoked\n"), std::string::npos);

    Captured shown;
    ASSERT_EQ(app_show(dir(), "crm", false, shown.io()), 0);
    EXPECT_NE(shown.out.str().find("state: revoked\n"), std::string::npos);
    EXPECT_NE(shown.out.str().find("revoked  by "), std::string::npos);

    Captured again;
    EXPECT_EQ(app_revoke(dir(), "crm", false, again.io()), 1);
    EXPECT_NE(again.err.str().find("already revoked"), std::string::npos);
    Captured rotate;
    EXPECT_EQ(app_rotate(dir(), "crm", std::chrono::seconds(0), false, rotate.io()), 1);
    EXPECT_NE(rotate.err.str().find("revoked"), std::string::npos);
    Captured job;
    EXPECT_EQ(job_create(dir(), "crm", "inv", "extract_metadata", false, job.io()), 1);
    EXPECT_NE(job.err.str().find("revoked"), std::string::npos);
    Captured none;
    EXPECT_EQ(app_show(dir(), "nope", false, none.io()), 1);
}

TEST_F(CommandsTest, AppCreateWithPublicKeyIssuesNoSecretAndSetKeyRotatesIt) {
    using identity_testing::TestKey;
    const TestKey first = TestKey::generate("EdDSA");
    const TestKey second = TestKey::generate("ES256");
    const std::string first_file = tmp.file("first.pub");
    const std::string second_file = tmp.file("second.pub");
    ASSERT_TRUE(util::write_file_atomic(first_file, first.public_pem(), 0644));
    ASSERT_TRUE(util::write_file_atomic(second_file, second.public_pem(), 0644));

    Captured created;
    ASSERT_EQ(app_create_with_key(dir(), "edge", first_file, false, created.io()), 0)
        << created.err.str();
    const std::string text = created.out.str();
    EXPECT_NE(text.find("client_id: cid_"), std::string::npos);
    EXPECT_NE(text.find("auth_method: private_key_jwt"), std::string::npos);
    EXPECT_NE(text.find("key_thumbprint: " + first.public_key().thumbprint()), std::string::npos);
    EXPECT_EQ(text.find("client_secret:"), std::string::npos);

    // Refusals name the file and the reason; nothing is created.
    const std::string private_file = tmp.file("agent.key");
    ASSERT_TRUE(util::write_file_atomic(private_file, first.private_pem(), 0600));
    Captured bad;
    EXPECT_EQ(app_create_with_key(dir(), "other", private_file, false, bad.io()), 1);
    EXPECT_NE(bad.err.str().find(private_file), std::string::npos);
    EXPECT_NE(bad.err.str().find("private key"), std::string::npos);
    // The message must not quote the key.
    EXPECT_EQ(bad.err.str().find("BEGIN"), std::string::npos);
    Captured missing;
    EXPECT_EQ(app_create_with_key(dir(), "other", tmp.file("none.pub"), false, missing.io()), 1);
    EXPECT_NE(missing.err.str().find("none.pub"), std::string::npos);

    Captured rotate;
    EXPECT_EQ(app_rotate(dir(), "edge", std::chrono::seconds(0), false, rotate.io()), 1);
    EXPECT_NE(rotate.err.str().find("set-key"), std::string::npos);

    Captured set;
    ASSERT_EQ(app_set_key(dir(), "edge", second_file, std::chrono::seconds(600), true, set.io()), 0)
        << set.err.str();
    auto change = json::parse(set.out.str());
    EXPECT_EQ(change["key"]["thumbprint"], second.public_key().thumbprint());
    EXPECT_EQ(change["key"]["algorithm"], "ES256");
    EXPECT_EQ(change["previous_key"]["thumbprint"], first.public_key().thumbprint());
    EXPECT_TRUE(change["previous_key"]["valid_until_ms"].is_number_integer());

    Captured list;
    ASSERT_EQ(app_list(dir(), false, list.io()), 0);
    EXPECT_NE(list.out.str().find("  private_key_jwt  active\n"), std::string::npos)
        << list.out.str();
    Captured shown;
    ASSERT_EQ(app_show(dir(), "edge", true, shown.io()), 0);
    auto app = json::parse(shown.out.str());
    EXPECT_EQ(app["auth_method"], "private_key_jwt");
    ASSERT_EQ(app["keys"].size(), 2u);
    EXPECT_EQ(app["history"].back()["event"], "key-rotated");
    EXPECT_EQ(app["history"].back()["actor"], current_operator());

    Captured secret_app;
    ASSERT_EQ(app_create(dir(), "crm", true, secret_app.io(), testing::fast_scrypt()), 0);
    Captured wrong;
    EXPECT_EQ(app_set_key(dir(), "crm", second_file, std::chrono::seconds(0), false, wrong.io()),
              1);
    EXPECT_NE(wrong.err.str().find("client secret"), std::string::npos);
    Captured secret_list;
    ASSERT_EQ(app_list(dir(), true, secret_list.io()), 0);
    EXPECT_EQ(json::parse(secret_list.out.str())[0]["auth_method"], "client_secret");
}

TEST(CurrentOperator, NamesTheOsUser) {
    std::string who = current_operator();
    const passwd* pw = ::getpwuid(::getuid());
    if (pw != nullptr) {
        EXPECT_EQ(who.rfind(pw->pw_name, 0), 0u) << who;
    } else {
        EXPECT_EQ(who, "uid " + std::to_string(::getuid()));
    }
}

}  // namespace
}  // namespace sa::hub::cli
