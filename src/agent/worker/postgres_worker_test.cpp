// The PostgreSQL connector inside the real sandboxed worker (sa-test-worker
// with an ordinary source name runs the product's worker path): libpq must
// work under seccomp + Landlock, with credentials sent as credential frames.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "agent/connectors/testing/pg_server_suite.h"
#include "agent/sandbox/sandbox.h"
#include "agent/worker/worker_session.h"
#include "common/crypto/random.h"
#include "common/metadata/model.h"
#include "common/util/files.h"

namespace sa::agent::worker {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using connectors::testing::PgServer;
using nlohmann::json;

constexpr const char* kWorker = SA_TEST_WORKER_PATH;

struct Outcome {
    std::vector<ChunkReady> chunks;
    std::vector<LogLine> logs;
    std::optional<Finished> finished;
    std::optional<Failed> failed;
    std::optional<Exited> exited;
    std::optional<Error> error;
};

Outcome drain(WorkerSession& session) {
    Outcome out;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!out.exited && !out.error && std::chrono::steady_clock::now() < deadline) {
        auto event = session.next(100ms);
        if (!event) {
            out.error = event.error();
            break;
        }
        if (!*event) continue;
        if (auto* c = std::get_if<ChunkReady>(&**event)) out.chunks.push_back(*c);
        if (auto* l = std::get_if<LogLine>(&**event)) out.logs.push_back(*l);
        if (auto* f = std::get_if<Finished>(&**event)) out.finished = *f;
        if (auto* f = std::get_if<Failed>(&**event)) out.failed = *f;
        if (auto* e = std::get_if<Exited>(&**event)) out.exited = *e;
    }
    return out;
}

class PostgresWorkerTest : public connectors::testing::PgServerSuite {
  protected:
    void SetUp() override {
        connectors::testing::PgServerSuite::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        spool_ = fs::temp_directory_path() / ("sa-pgw-" + crypto::random_token(9));
        fs::create_directories(spool_);
        fs::permissions(spool_, fs::perms::owner_all, fs::perm_options::replace);
    }
    void TearDown() override {
        std::error_code ec;
        if (!spool_.empty()) fs::remove_all(spool_, ec);
    }

    WorkerJob job(const std::string& operation, const std::string& name = "shop") const {
        WorkerJob j;
        j.job_id = "job-" + crypto::random_token(6);
        j.operation = operation;
        j.source.name = name;
        j.source.connector = "postgres";
        j.source.host = "localhost";
        j.source.address = "127.0.0.1";
        j.source.port = server_->port();
        j.source.database = server_->database();
        j.source.sslmode = "disable";
        j.spool_dir = spool_.string();
        j.chunk_target_bytes = 600;  // several chunks from the small fixture
        return j;
    }

    std::vector<Credential> credentials(const std::string& password) const {
        std::vector<Credential> c;
        c.push_back({"user", secrets::SecretValue::copy_of(server_->user())});
        c.push_back({"password", secrets::SecretValue::copy_of(password)});
        return c;
    }

    Outcome run(const WorkerJob& j, std::vector<Credential> credentials) {
        auto session = WorkerSession::start(kWorker, j, std::move(credentials));
        EXPECT_TRUE(session) << session.error().describe();
        if (!session) return {};
        Outcome out = drain(*session);
        EXPECT_FALSE(out.error) << out.error->describe();
        EXPECT_TRUE(out.exited) << "the worker did not exit in time";
        return out;
    }

    Outcome run(const WorkerJob& j) { return run(j, credentials(server_->password())); }

    fs::path spool_;
};

std::string failure_of(const Outcome& out) {
    return out.failed ? out.failed->reason_code + ": " + out.failed->message : "";
}

TEST_F(PostgresWorkerTest, TestConnectionInsideTheSandbox) {
    Outcome out = run(job("test_connection"));
    ASSERT_TRUE(out.finished) << failure_of(out);
    const json& r = *out.finished->result;
    EXPECT_EQ(r["connected"], true);
    EXPECT_TRUE(r["server_version"].get<std::string>().starts_with("15."));
    EXPECT_EQ(out.exited->exit_code, kExitSucceeded) << out.exited->description;
}

// TLS inside the sandbox: Landlock lets the worker read the source's
// ca_file, and libpq needs nothing from a home directory.
TEST_F(PostgresWorkerTest, VerifiedTlsInsideTheSandbox) {
    WorkerJob j = job("test_connection");
    j.source.sslmode = "verify-full";
    j.source.ca_file = server_->ca_file();
    Outcome out = run(j);
    ASSERT_TRUE(out.finished) << failure_of(out);
    EXPECT_EQ(out.exited->exit_code, kExitSucceeded) << out.exited->description;

    j.source.host = "db.example.com";  // not the certificate's name
    Outcome refused = run(j);
    ASSERT_TRUE(refused.failed);
    EXPECT_EQ(refused.failed->reason_code, "connection_failed");
    // The ca_file's path is scrubbed from what leaves the worker.
    EXPECT_EQ(refused.failed->message.find(server_->ca_file()), std::string::npos);
}

TEST_F(PostgresWorkerTest, ListSchemasInsideTheSandbox) {
    Outcome out = run(job("list_schemas"));
    ASSERT_TRUE(out.finished) << failure_of(out);
    EXPECT_EQ(out.exited->exit_code, kExitSucceeded) << out.exited->description;
    std::set<std::string> schemas;
    for (const auto& s : (*out.finished->result)["schemas"]) {
        EXPECT_EQ(s["database"], server_->database());
        schemas.insert(s["schema"].get<std::string>());
    }
    EXPECT_EQ(schemas, (std::set<std::string>{"hr", "public", "sales"}));
}

TEST_F(PostgresWorkerTest, PreflightInsideTheSandbox) {
    Outcome out = run(job("preflight"));
    ASSERT_TRUE(out.finished) << failure_of(out);
    EXPECT_EQ(out.exited->exit_code, kExitSucceeded) << out.exited->description;
    for (const auto& check : (*out.finished->result)["checks"]) {
        EXPECT_EQ(check["ok"], true) << check.dump();
    }
}

TEST_F(PostgresWorkerTest, ExtractMetadataInsideTheSandboxHonoursFilters) {
    WorkerJob j = job("extract_metadata");
    jobs::ObjectFilters filters;
    filters.tables.exclude = {"payroll"};
    j.filters = {filters};
    Outcome out = run(j);
    ASSERT_TRUE(out.finished) << failure_of(out);
    EXPECT_EQ(out.exited->exit_code, kExitSucceeded) << out.exited->description;
    EXPECT_EQ(out.finished->summary.tables, 4);
    EXPECT_EQ(out.finished->summary.views, 1);
    EXPECT_GT(out.chunks.size(), 1U);
    std::set<std::string> names;
    for (const auto& c : out.chunks) {
        auto body = util::read_file(c.path);
        ASSERT_TRUE(body);
        EXPECT_EQ(body->find("content-never-read"), std::string::npos);
        auto records = metadata::parse_chunk(*body);
        ASSERT_TRUE(records) << records.error().describe();
        for (const auto& record : *records) {
            const auto* t = std::get_if<metadata::Table>(&record);
            ASSERT_NE(t, nullptr) << "sa_shop has no routines";
            names.insert(t->schema + "." + t->name);
        }
    }
    EXPECT_EQ(names,
              (std::set<std::string>{"hr.Mixed Case", "sales.customer_totals", "sales.customers",
                                     "sales.order_lines", "sales.orders"}));
}

TEST_F(PostgresWorkerTest, WrongPasswordIsAConnectionFailureWithoutThePassword) {
    const std::string wrong = "wrong-" + crypto::random_token(12);
    Outcome out = run(job("test_connection"), credentials(wrong));
    ASSERT_TRUE(out.failed);
    EXPECT_EQ(out.failed->reason_code, "connection_failed");
    EXPECT_NE(out.failed->message.find("authentication failed"), std::string::npos);
    EXPECT_EQ(out.failed->message.find(wrong), std::string::npos);
    EXPECT_EQ(out.failed->message.find(server_->password()), std::string::npos);
}

TEST_F(PostgresWorkerTest, AnotherPortIsAConnectionFailure) {
    WorkerJob j = job("test_connection");
    j.source.port = static_cast<uint16_t>(server_->port() == 65535 ? 65534 : server_->port() + 1);
    Outcome out = run(j);
    ASSERT_TRUE(out.failed);
    EXPECT_EQ(out.failed->reason_code, "connection_failed");
}

// The other half of the port rule: a worker allowed another port cannot
// reach the server's real one (Landlock answers EACCES).
TEST_F(PostgresWorkerTest, TheServerPortIsBlockedWhenTheJobNamesAnother) {
    if (sandbox::landlock_abi_version() < 4) GTEST_SKIP() << "Landlock ABI < 4: no TCP rules";
    WorkerJob j = job("test_connection", "escape-connect-pg");
    j.source.port = static_cast<uint16_t>(server_->port() == 65535 ? 65534 : server_->port() + 1);
    j.source.database = std::to_string(server_->port());
    Outcome out = run(j);
    ASSERT_TRUE(out.finished) << failure_of(out);
    EXPECT_EQ(*out.finished->result,
              (json{{"attempt", "connect"}, {"blocked", true}, {"errno", "EACCES"}}));
}

}  // namespace
}  // namespace sa::agent::worker
