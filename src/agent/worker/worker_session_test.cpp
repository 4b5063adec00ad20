#include "agent/worker/worker_session.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "agent/delivery/fingerprint_state.h"
#include "agent/sandbox/sandbox.h"
#include "common/crypto/digest.h"
#include "common/crypto/random.h"
#include "common/metadata/model.h"
#include "common/sqlite/database.h"
#include "common/util/files.h"

namespace sa::agent::worker {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kWorker = SA_TEST_WORKER_PATH;

constexpr const char* kSchema = R"sql(
CREATE TABLE customers(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT);
CREATE TABLE orders(id INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customers(id), total REAL);
CREATE INDEX idx_orders_customer ON orders(customer_id);
CREATE TABLE payroll_salaries(id INTEGER PRIMARY KEY, amount REAL);
CREATE TABLE products(sku TEXT PRIMARY KEY, label TEXT) WITHOUT ROWID;
CREATE VIEW customer_totals AS SELECT customer_id, sum(total) AS total FROM orders GROUP BY 1;
)sql";

// Everything a session produced, up to and including Exited.
struct Outcome {
    std::optional<Ready> ready;
    std::vector<LogLine> logs;
    std::vector<Progress> progress;
    std::vector<ChunkReady> chunks;
    std::optional<Finished> finished;
    std::optional<Failed> failed;
    std::optional<Exited> exited;
    std::optional<Error> error;
    std::vector<std::string> order;  // event kinds as they came
};

Outcome drain(WorkerSession& session, std::chrono::seconds limit = 20s) {
    Outcome out;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!out.exited && std::chrono::steady_clock::now() < deadline) {
        auto event = session.next(100ms);
        if (!event) {
            out.error = event.error();
            return out;
        }
        if (!*event) continue;
        std::visit(
            [&](auto& e) {
                using T = std::decay_t<decltype(e)>;
                if constexpr (std::is_same_v<T, Ready>) {
                    out.order.push_back("ready");
                    out.ready = e;
                } else if constexpr (std::is_same_v<T, LogLine>) {
                    out.order.push_back("log");
                    out.logs.push_back(e);
                } else if constexpr (std::is_same_v<T, Progress>) {
                    out.order.push_back("progress");
                    out.progress.push_back(e);
                } else if constexpr (std::is_same_v<T, ChunkReady>) {
                    out.order.push_back("chunk");
                    out.chunks.push_back(e);
                } else if constexpr (std::is_same_v<T, Finished>) {
                    out.order.push_back("result");
                    out.finished = e;
                } else if constexpr (std::is_same_v<T, Failed>) {
                    out.order.push_back("failure");
                    out.failed = e;
                } else {
                    out.order.push_back("exited");
                    out.exited = e;
                }
            },
            **event);
    }
    return out;
}

// Waits for the first event of a kind (for the long-running fault modes).
template <class T>
bool wait_for(WorkerSession& session, std::chrono::seconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        auto event = session.next(100ms);
        if (!event) return false;
        if (*event && std::holds_alternative<T>(**event)) return true;
    }
    return false;
}

bool is_gone(pid_t pid) {
    int status = 0;
    return ::waitpid(pid, &status, WNOHANG) == -1 && errno == ECHILD;
}

class Listener {
  public:
    Listener() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        EXPECT_EQ(::listen(fd_, 8), 0);
        socklen_t len = sizeof addr;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
    }
    ~Listener() { ::close(fd_); }
    uint16_t port() const { return port_; }

  private:
    int fd_ = -1;
    uint16_t port_ = 0;
};

class WorkerSessionTest : public ::testing::Test {
  protected:
    void SetUp() override {
        root_ = fs::temp_directory_path() / ("sa-worker-" + crypto::random_token(9));
        fs::create_directories(root_ / "source");
        fs::create_directories(root_ / "spool");
        fs::create_directories(root_ / "secret");
        fs::permissions(root_ / "spool", fs::perms::owner_all, fs::perm_options::replace);
        db_path_ = (root_ / "source" / "shop.db").string();
        auto db = sqlite::Database::open(db_path_, sqlite::Database::Mode::read_write_create);
        ASSERT_TRUE(db) << db.error().describe();
        ASSERT_TRUE(db->exec(kSchema));
        // A neighbour of the database the worker must not read.
        ASSERT_TRUE(util::write_file_atomic((root_ / "source" / "other.db").string(), "x", 0600));
        secret_path_ = (root_ / "secret" / "agent-key.pem").string();
        ASSERT_TRUE(util::write_file_atomic(secret_path_, "not really a key", 0600));
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(root_, ec);
    }

    WorkerJob job(const std::string& operation = "extract_metadata",
                  const std::string& source_name = "shop") const {
        WorkerJob j;
        j.job_id = "job-" + crypto::random_token(6);
        j.operation = operation;
        j.source.name = source_name;
        j.source.connector = "sqlite";
        j.source.path = db_path_;
        j.spool_dir = (root_ / "spool").string();
        j.chunk_target_bytes = 400;  // several chunks from a small fixture
        return j;
    }

    Outcome run(const WorkerJob& j, std::vector<Credential> credentials = {}) {
        auto session = WorkerSession::start(kWorker, j, std::move(credentials));
        EXPECT_TRUE(session) << session.error().describe();
        if (!session) return {};
        const pid_t pid = session->pid();
        Outcome out = drain(*session);
        EXPECT_TRUE(out.exited) << "the worker did not exit in time";
        EXPECT_TRUE(is_gone(pid)) << "the worker was not reaped";
        return out;
    }

    fs::path root_;
    std::string db_path_;
    std::string secret_path_;
};

std::set<std::string> table_names(const std::vector<ChunkReady>& chunks) {
    std::set<std::string> names;
    for (const auto& c : chunks) {
        auto body = util::read_file(c.path);
        EXPECT_TRUE(body);
        if (!body) continue;
        auto tables = metadata::parse_chunk(*body);
        EXPECT_TRUE(tables) << tables.error().describe();
        if (!tables) continue;
        for (const auto& t : *tables) names.insert(std::get<metadata::Table>(t).name);
    }
    return names;
}

TEST_F(WorkerSessionTest, ExtractMetadataWritesChunksWhoseDigestsMatch) {
    Outcome out = run(job());
    ASSERT_FALSE(out.error) << out.error->describe();
    ASSERT_TRUE(out.ready);
    EXPECT_EQ(out.order.front(), "ready");
    EXPECT_EQ(out.ready->report.layers.size(), 6u);
    if (sandbox::landlock_abi_version() >= 4) {
        for (const auto& layer : out.ready->report.layers) {
            EXPECT_TRUE(layer.applied) << sandbox::layer_name(layer.layer) << ": " << layer.detail;
        }
        EXPECT_TRUE(out.logs.empty());
    }
    ASSERT_TRUE(out.finished) << (out.failed ? out.failed->message : "no result");
    EXPECT_EQ(out.exited->exit_code, kExitSucceeded);
    EXPECT_EQ(out.exited->description, "exited with status 0");
    EXPECT_FALSE(out.finished->result);
    EXPECT_EQ(out.finished->summary.tables, 4);
    EXPECT_EQ(out.finished->summary.views, 1);
    EXPECT_EQ(out.finished->summary.foreign_keys, 1);

    ASSERT_GE(out.chunks.size(), 2u);
    int64_t total = 0;
    for (size_t i = 0; i < out.chunks.size(); ++i) {
        const ChunkReady& c = out.chunks[i];
        EXPECT_EQ(c.seq, static_cast<int64_t>(i));
        EXPECT_EQ(c.path, (root_ / "spool" / chunk_file_name(c.seq)).string());
        auto body = util::read_file(c.path);
        ASSERT_TRUE(body);
        EXPECT_EQ(crypto::sha256_hex(*body), c.sha256_hex);
        EXPECT_EQ(static_cast<int64_t>(body->size()), c.size);
        struct stat st {};
        ASSERT_EQ(::stat(c.path.c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0600u);
        total += c.size;
    }
    // Progress after each chunk; the last one counts everything.
    ASSERT_EQ(out.progress.size(), out.chunks.size());
    EXPECT_EQ(out.progress.back().bytes, total);
    EXPECT_EQ(out.progress.back().chunks, static_cast<int64_t>(out.chunks.size()));
    EXPECT_EQ(table_names(out.chunks),
              (std::set<std::string>{"customer_totals", "customers", "orders", "payroll_salaries",
                                     "products"}));
    EXPECT_FALSE(out.finished->delta);
    // No temporary file is left behind: the chunks and the run's fingerprints.
    size_t files = 0;
    for (const auto& entry : fs::directory_iterator(root_ / "spool")) {
        const std::string name = entry.path().filename().string();
        if (name == delivery::kFingerprintsFile) continue;
        EXPECT_EQ(name.rfind("chunk-", 0), 0u) << entry.path();
        ++files;
    }
    EXPECT_EQ(files, out.chunks.size());
    // One fingerprint per object kept, written atomically with mode 0600.
    const std::string fingerprints = (root_ / "spool" / delivery::kFingerprintsFile).string();
    auto text = util::read_file(fingerprints);
    ASSERT_TRUE(text) << text.error().describe();
    auto entries = delivery::parse_entries(*text);
    ASSERT_TRUE(entries) << entries.error().describe();
    std::set<std::string> seen;
    for (const auto& e : *entries) seen.insert(e.name);
    EXPECT_EQ(seen, table_names(out.chunks));
    struct stat st {};
    ASSERT_EQ(::stat(fingerprints.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// Every record of the chunks as "table NAME" / "removed table NAME".
std::vector<std::string> chunk_records(const std::vector<ChunkReady>& chunks) {
    std::vector<std::string> out;
    for (const auto& c : chunks) {
        auto body = util::read_file(c.path);
        EXPECT_TRUE(body);
        if (!body) continue;
        auto records = metadata::parse_chunk(*body);
        EXPECT_TRUE(records) << records.error().describe();
        if (!records) continue;
        for (const auto& r : *records) {
            if (const auto* t = std::get_if<metadata::Table>(&r)) out.push_back("table " + t->name);
            if (const auto* x = std::get_if<metadata::Removal>(&r)) {
                out.push_back("removed " + x->object + " " + x->name);
            }
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

TEST_F(WorkerSessionTest, WithABaselineOnlyChangesAndRemovalsAreDelivered) {
    const fs::path spool = root_ / "spool";
    Outcome first = run(job());
    ASSERT_TRUE(first.finished) << (first.failed ? first.failed->message : "no result");
    auto baseline = util::read_file((spool / delivery::kFingerprintsFile).string());
    ASSERT_TRUE(baseline);
    for (const auto& entry : fs::directory_iterator(spool)) fs::remove(entry.path());

    {
        auto db = sqlite::Database::open(db_path_, sqlite::Database::Mode::read_write_create);
        ASSERT_TRUE(db);
        ASSERT_TRUE(
            db->exec("ALTER TABLE customers ADD COLUMN phone TEXT;"
                     "DROP TABLE products;"
                     "CREATE TABLE shipments(id INTEGER PRIMARY KEY, order_id INTEGER);"));
    }
    ASSERT_TRUE(
        util::write_file_atomic((spool / delivery::kBaselineFile).string(), *baseline, 0600));
    WorkerJob delta_job = job();
    delta_job.baseline = true;
    Outcome second = run(delta_job);
    ASSERT_TRUE(second.finished) << (second.failed ? second.failed->message : "no result");
    EXPECT_TRUE(second.finished->delta);
    EXPECT_EQ(
        chunk_records(second.chunks),
        (std::vector<std::string>{"removed table products", "table customers", "table shipments"}));
    // Counts are what was delivered.
    EXPECT_EQ(second.finished->summary.tables, 2);
    EXPECT_EQ(second.finished->summary.views, 0);
    // The new fingerprints list everything seen, delivered or not.
    auto text = util::read_file((spool / delivery::kFingerprintsFile).string());
    ASSERT_TRUE(text);
    auto entries = delivery::parse_entries(*text);
    ASSERT_TRUE(entries);
    std::set<std::string> seen;
    for (const auto& e : *entries) seen.insert(e.name);
    EXPECT_EQ(seen, (std::set<std::string>{"customer_totals", "customers", "orders",
                                           "payroll_salaries", "shipments"}));
}

TEST_F(WorkerSessionTest, AnUnusableBaselineMakesAFullRun) {
    ASSERT_TRUE(util::write_file_atomic((root_ / "spool" / delivery::kBaselineFile).string(),
                                        "{not json\n", 0600));
    WorkerJob j = job();
    j.baseline = true;
    Outcome out = run(j);
    ASSERT_TRUE(out.finished) << (out.failed ? out.failed->message : "no result");
    EXPECT_FALSE(out.finished->delta);
    EXPECT_EQ(out.finished->summary.tables, 4);
    bool warned = false;
    for (const auto& line : out.logs) {
        warned = warned || line.message.find("baseline cannot be used") != std::string::npos;
    }
    EXPECT_TRUE(warned);
}

TEST_F(WorkerSessionTest, EveryFilterSetMustPass) {
    WorkerJob j = job();
    jobs::ObjectFilters policy;
    policy.tables.exclude = {"payroll_.*"};
    jobs::ObjectFilters requested;
    requested.tables.include = {"customers", "orders", "payroll_salaries"};
    j.filters = {policy, requested};
    Outcome out = run(j);
    ASSERT_TRUE(out.finished) << (out.failed ? out.failed->message : "no result");
    EXPECT_EQ(out.finished->summary.tables, 2);
    EXPECT_EQ(out.finished->summary.views, 0);
    EXPECT_EQ(table_names(out.chunks), (std::set<std::string>{"customers", "orders"}));
}

TEST_F(WorkerSessionTest, ObjectLimitStopsTheJob) {
    WorkerJob j = job();
    j.limits.max_objects = 2;
    Outcome out = run(j);
    EXPECT_FALSE(out.finished);
    ASSERT_TRUE(out.failed);
    EXPECT_EQ(out.failed->reason_code, "limit_exceeded");
    EXPECT_EQ(out.failed->message, "the job's limit of 2 objects was exceeded");
    EXPECT_EQ(out.exited->exit_code, kExitFailed);
}

TEST_F(WorkerSessionTest, ByteLimitStopsTheJobBeforeTheChunkIsWritten) {
    WorkerJob j = job();
    j.limits.max_bytes = 500;
    Outcome out = run(j);
    ASSERT_TRUE(out.failed);
    EXPECT_EQ(out.failed->reason_code, "limit_exceeded");
    EXPECT_EQ(out.failed->message, "the job's limit of 500 bytes was exceeded");
    int64_t written = 0;
    for (const auto& c : out.chunks) written += c.size;
    EXPECT_LE(written, 500);
}

TEST_F(WorkerSessionTest, TestConnectionReportsVersionAndLatency) {
    std::vector<Credential> credentials;
    credentials.push_back({"user", secrets::SecretValue::copy_of("reader")});
    credentials.push_back({"password", secrets::SecretValue::copy_of("hunter2-hunter2")});
    Outcome out = run(job("test_connection"), std::move(credentials));
    ASSERT_TRUE(out.finished) << (out.failed ? out.failed->message : "no result");
    ASSERT_TRUE(out.finished->result);
    const json& r = *out.finished->result;
    EXPECT_EQ(r["connected"], true);
    EXPECT_EQ(r["server_version"], sqlite3_libversion());
    EXPECT_TRUE(r["latency_ms"].is_number_integer());
    EXPECT_TRUE(out.chunks.empty());
}

TEST_F(WorkerSessionTest, PreflightListsItsChecks) {
    Outcome out = run(job("preflight"));
    ASSERT_TRUE(out.finished) << (out.failed ? out.failed->message : "no result");
    const json& r = *out.finished->result;
    EXPECT_EQ(r["server_version"], sqlite3_libversion());
    ASSERT_EQ(r["checks"].size(), 3u);
    EXPECT_EQ(r["checks"][0]["name"], "open");
    EXPECT_EQ(r["checks"][1]["name"], "read_catalog");
    EXPECT_EQ(r["checks"][1]["detail"], "4 tables, 1 views");
    EXPECT_EQ(r["checks"][2]["name"], "describe_objects");
    for (const auto& check : r["checks"]) EXPECT_EQ(check["ok"], true) << check.dump();
}

TEST_F(WorkerSessionTest, PreflightReportsASourceThatCannotBeOpened) {
    WorkerJob j = job("preflight");
    j.source.path = (root_ / "source" / "missing.db").string();
    Outcome out = run(j);
    ASSERT_TRUE(out.finished) << (out.failed ? out.failed->message : "no result");
    const json& r = *out.finished->result;
    ASSERT_EQ(r["checks"].size(), 1u);
    EXPECT_EQ(r["checks"][0]["ok"], false);
    const std::string detail = r["checks"][0]["detail"];
    EXPECT_EQ(detail.find(root_.string()), std::string::npos) << detail;
    EXPECT_NE(detail.find("\"shop\""), std::string::npos) << detail;
}

TEST_F(WorkerSessionTest, ListSchemasHonoursSchemaFilters) {
    Outcome out = run(job("list_schemas"));
    ASSERT_TRUE(out.finished) << (out.failed ? out.failed->message : "no result");
    EXPECT_EQ(*out.finished->result,
              json::parse(R"({"schemas":[{"database":"main","schema":"main","tables":5}]})"));

    WorkerJob j = job("list_schemas");
    jobs::ObjectFilters f;
    f.schemas.exclude = {"main"};
    j.filters = {f};
    Outcome filtered = run(j);
    ASSERT_TRUE(filtered.finished);
    EXPECT_EQ(*filtered.finished->result, json::parse(R"({"schemas":[]})"));
}

TEST_F(WorkerSessionTest, ConnectorErrorsNameTheSourceButNotItsPath) {
    WorkerJob j = job();
    j.source.path = (root_ / "source" / "missing.db").string();
    Outcome out = run(j);
    ASSERT_TRUE(out.failed);
    EXPECT_EQ(out.failed->reason_code, "connection_failed");
    EXPECT_EQ(out.failed->message.find(root_.string()), std::string::npos) << out.failed->message;
    EXPECT_NE(out.failed->message.find("\"shop\""), std::string::npos) << out.failed->message;
}

TEST_F(WorkerSessionTest, UnknownOperationFails) {
    Outcome out = run(job("drop_everything"));
    ASSERT_TRUE(out.failed);
    EXPECT_EQ(out.failed->reason_code, "unsupported_operation");
    EXPECT_EQ(out.exited->exit_code, kExitFailed);
}

TEST_F(WorkerSessionTest, CrashIsAnExitWithoutResult) {
    Outcome out = run(job("extract_metadata", "crash-1"));
    EXPECT_TRUE(out.ready);
    EXPECT_FALSE(out.finished);
    EXPECT_FALSE(out.failed);
    ASSERT_TRUE(out.exited);
    EXPECT_EQ(out.exited->signal, SIGSEGV);
    EXPECT_EQ(out.exited->exit_code, -1);
    EXPECT_EQ(out.exited->description, "killed by signal 11 (SIGSEGV)");
}

TEST_F(WorkerSessionTest, HangingWorkerIsKilledAfterTheGrace) {
    auto session = WorkerSession::start(kWorker, job("extract_metadata", "hang-1"), {});
    ASSERT_TRUE(session) << session.error().describe();
    ASSERT_TRUE(wait_for<LogLine>(*session));  // "ignoring SIGTERM"
    const auto started = std::chrono::steady_clock::now();
    Exited exited = session->terminate(200ms);
    EXPECT_GE(std::chrono::steady_clock::now() - started, 200ms);
    EXPECT_EQ(exited.signal, SIGKILL);
    EXPECT_EQ(exited.description, "killed by signal 9 (SIGKILL)");
    EXPECT_TRUE(is_gone(session->pid()));
    auto after = session->next(0ms);
    ASSERT_FALSE(after);
    EXPECT_EQ(after.error().code, ErrorCode::conflict);
}

TEST_F(WorkerSessionTest, SlowWorkerEndsOnSigterm) {
    auto session = WorkerSession::start(kWorker, job("extract_metadata", "slow-1"), {});
    ASSERT_TRUE(session) << session.error().describe();
    ASSERT_TRUE(wait_for<Ready>(*session));
    ASSERT_TRUE(wait_for<Progress>(*session));
    Exited exited = session->terminate(5s);
    EXPECT_EQ(exited.signal, SIGTERM);
    EXPECT_TRUE(is_gone(session->pid()));
}

TEST_F(WorkerSessionTest, DestroyingASessionKillsAndReapsItsWorker) {
    pid_t pid = -1;
    {
        auto session = WorkerSession::start(kWorker, job("extract_metadata", "hang-2"), {});
        ASSERT_TRUE(session) << session.error().describe();
        pid = session->pid();
        ASSERT_TRUE(wait_for<Ready>(*session));
        // Moving keeps one owner: the moved-from session must not kill it.
        WorkerSession moved = std::move(*session);
        EXPECT_EQ(moved.pid(), pid);
    }
    EXPECT_TRUE(is_gone(pid));
}

TEST_F(WorkerSessionTest, SecretDirectoryAndShadowAreUnreadable) {
    for (const std::string what : {"secretdir", "shadow"}) {
        WorkerJob j = job("extract_metadata", "escape-" + what + "-1");
        j.source.database = secret_path_;
        Outcome out = run(j);
        ASSERT_TRUE(out.finished) << what;
        EXPECT_EQ(*out.finished->result,
                  (json{{"attempt", what}, {"blocked", true}, {"errno", "EACCES"}}))
            << what;
    }
    // The database's own neighbour is not readable either (only the file is).
    WorkerJob j = job("extract_metadata", "escape-secretdir-2");
    j.source.database = (root_ / "source" / "other.db").string();
    Outcome out = run(j);
    ASSERT_TRUE(out.finished);
    EXPECT_EQ((*out.finished->result)["blocked"], true);
}

TEST_F(WorkerSessionTest, ExecAndPtraceAreKilledBySeccomp) {
    for (const std::string what : {"exec", "ptrace"}) {
        Outcome out = run(job("extract_metadata", "escape-" + what + "-1"));
        EXPECT_FALSE(out.finished) << what << ": " << out.finished->result->dump();
        ASSERT_TRUE(out.exited) << what;
        EXPECT_EQ(out.exited->signal, SIGSYS) << what;
        EXPECT_EQ(out.exited->description,
                  "killed by signal 31 (SIGSYS, a system call the sandbox forbids)");
    }
}

TEST_F(WorkerSessionTest, ConnectIsLimitedToTheSourcePort) {
    if (sandbox::landlock_abi_version() < 4) GTEST_SKIP() << "Landlock ABI < 4: no TCP rules";
    Listener source;
    Listener other;
    WorkerJob j = job("extract_metadata", "escape-connect-1");
    j.source.port = source.port();
    j.source.database = std::to_string(other.port());
    Outcome out = run(j);
    ASSERT_TRUE(out.finished);
    EXPECT_EQ(*out.finished->result,
              (json{{"attempt", "connect"}, {"blocked", true}, {"errno", "EACCES"}}));

    // The source's own port is allowed.
    j.source.database = std::to_string(source.port());
    j.source.name = "escape-connect-2";
    Outcome allowed = run(j);
    ASSERT_TRUE(allowed.finished);
    EXPECT_EQ((*allowed.finished->result)["blocked"], false);
}

TEST_F(WorkerSessionTest, WorkerSeesOnlyDescriptorsZeroToThree) {
    // Not CLOEXEC: only the explicit close in the child keeps it out.
    util::UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    util::UniqueFd leak(::fcntl(devnull.get(), F_DUPFD, 20));
    ASSERT_TRUE(leak.valid());
    ASSERT_EQ(::fcntl(leak.get(), F_GETFD), 0);
    Outcome out = run(job("extract_metadata", "fds-1"));
    ASSERT_TRUE(out.finished);
    EXPECT_EQ((*out.finished->result)["fds"], json::array({0, 1, 2, 3}));
}

TEST_F(WorkerSessionTest, AWorkerCrashLeavesNoCoreDump) {
    // Not dumpable and a core limit of 0: a crashing worker's memory (its
    // credential) never reaches a core file or a ptrace-style reader.
    Outcome out = run(job("extract_metadata", "dump-1"));
    ASSERT_TRUE(out.finished);
    EXPECT_EQ((*out.finished->result)["dumpable"], 0);
    EXPECT_EQ((*out.finished->result)["core_limit"], 0);
}

TEST_F(WorkerSessionTest, EnvironmentHoldsOnlyLang) {
    Outcome out = run(job("extract_metadata", "env-1"));
    ASSERT_TRUE(out.finished);
    EXPECT_EQ((*out.finished->result)["env"], json::array({"LANG=C.UTF-8"}));
}

TEST_F(WorkerSessionTest, ForgedChunkNameEndsTheSession) {
    auto session = WorkerSession::start(kWorker, job("extract_metadata", "forge-1"), {});
    ASSERT_TRUE(session) << session.error().describe();
    Outcome out = drain(*session);
    ASSERT_TRUE(out.error);
    EXPECT_EQ(out.error->code, ErrorCode::invalid_argument);
    EXPECT_EQ(out.error->message,
              "worker sent a malformed chunk frame: chunk.file: expected \"chunk-000000.ndjson\"");
    EXPECT_TRUE(out.chunks.empty());
    session->terminate(1s);
    EXPECT_TRUE(is_gone(session->pid()));
}

TEST_F(WorkerSessionTest, SupervisorOnlyFrameFromTheWorkerEndsTheSession) {
    auto session = WorkerSession::start(kWorker, job("extract_metadata", "impostor-1"), {});
    ASSERT_TRUE(session) << session.error().describe();
    Outcome out = drain(*session);
    ASSERT_TRUE(out.error);
    EXPECT_EQ(out.error->message, "worker sent a job frame, which only the supervisor sends");
    session->terminate(1s);
}

TEST_F(WorkerSessionTest, UnknownCredentialNameIsRefusedBeforeStarting) {
    std::vector<Credential> credentials;
    credentials.push_back({"api_key", secrets::SecretValue::copy_of("k-1234567890")});
    auto session = WorkerSession::start(kWorker, job(), std::move(credentials));
    ASSERT_FALSE(session);
    EXPECT_EQ(session.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(session.error().message.find("k-1234567890"), std::string::npos);
}

TEST_F(WorkerSessionTest, MissingExecutableIsAnError) {
    auto session = WorkerSession::start((root_ / "no-such-worker").string(), job(), {});
    ASSERT_FALSE(session);
    EXPECT_EQ(session.error().code, ErrorCode::io);
    EXPECT_NE(session.error().message.find("No such file or directory"), std::string::npos);
}

// The worker's own side of the protocol, driven by hand: a worker started
// with the channel on fd 3, without WorkerSession.
struct RawWorker {
    pid_t pid = -1;
    std::optional<Channel> channel;
};

RawWorker spawn_raw_worker() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
        if (sv[1] == 3) {
            ::fcntl(3, F_SETFD, 0);
        } else {
            ::dup2(sv[1], 3);
        }
        ::execl(kWorker, kWorker, "worker", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(sv[1]);
    return {pid, Channel(util::UniqueFd(sv[0]))};
}

// The worker's failure frame, then its exit status.
std::pair<std::optional<Failed>, int> worker_answer(RawWorker& w) {
    std::optional<Failed> failed;
    auto received = w.channel->receive(10s);
    EXPECT_TRUE(received);
    if (received && std::holds_alternative<Frame>(*received)) {
        Frame& frame = std::get<Frame>(*received);
        EXPECT_EQ(frame.type, static_cast<uint8_t>(FrameType::failure));
        if (auto f = decode_failure(frame.payload)) failed = *f;
    }
    int status = 0;
    EXPECT_EQ(::waitpid(w.pid, &status, 0), w.pid);
    return {failed, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

TEST_F(WorkerSessionTest, WorkerRefusesInputOutOfOrder) {
    RawWorker w = spawn_raw_worker();
    ASSERT_TRUE(w.channel->send(static_cast<uint8_t>(FrameType::start), ""));
    auto [failed, status] = worker_answer(w);
    ASSERT_TRUE(failed);
    EXPECT_EQ(failed->reason_code, "protocol_error");
    EXPECT_EQ(failed->message, "worker input refused: expected a job frame, got start");
    EXPECT_EQ(status, kExitProtocolError);
}

TEST_F(WorkerSessionTest, WorkerRefusesAMalformedJob) {
    RawWorker w = spawn_raw_worker();
    ASSERT_TRUE(w.channel->send(static_cast<uint8_t>(FrameType::job), "{\"job_id\":"));
    auto [failed, status] = worker_answer(w);
    ASSERT_TRUE(failed);
    EXPECT_EQ(failed->message, "worker input refused: job: payload is not valid JSON");
    EXPECT_EQ(status, kExitProtocolError);
}

TEST_F(WorkerSessionTest, WorkerRefusesMoreThanEightCredentials) {
    RawWorker w = spawn_raw_worker();
    ASSERT_TRUE(w.channel->send(static_cast<uint8_t>(FrameType::job), encode_job(job())));
    for (size_t i = 0; i <= kMaxCredentials; ++i) {
        ASSERT_TRUE(send_credential(*w.channel, {"user", secrets::SecretValue::copy_of("u")}));
    }
    auto [failed, status] = worker_answer(w);
    ASSERT_TRUE(failed);
    EXPECT_EQ(failed->message, "worker input refused: more than 8 credentials");
    EXPECT_EQ(status, kExitProtocolError);
}

TEST(DescribeWaitStatusTest, NamesExitsAndSignals) {
    EXPECT_EQ(describe_wait_status(3 << 8), "exited with status 3");
    EXPECT_EQ(describe_wait_status(SIGSYS),
              "killed by signal 31 (SIGSYS, a system call the sandbox forbids)");
    EXPECT_EQ(describe_wait_status(SIGXCPU), "killed by signal 24 (SIGXCPU, the CPU time limit)");
}

}  // namespace
}  // namespace sa::agent::worker
