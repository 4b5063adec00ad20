// AuditServices wired the way run_agent wires it, against real peers: an
// RFC 3161 TSA (`openssl ts -reply` behind HTTPS) and rsyslog over TLS, plus a
// JSON-lines file export.
#include "agent/app/audit_services.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "agent/app/audit_commands.h"
#include "agent/app/auditor.h"
#include "agent/audit/format.h"
#include "agent/audit/verify.h"
#include "agent/egress/testing/tls_test_server.h"
#include "agent/identity/agent_key.h"
#include "agent/observe/agent_metrics.h"
#include "agent/observe/health_server.h"
#include "agent/secrets/file_secret_store.h"
#include "agent/siem/rsyslog_harness.h"
#include "agent/timestamp/stamp_verify.h"
#include "agent/timestamp/tsa_test_support.h"
#include "common/crypto/encoding.h"

namespace sa::agent::app {
namespace {

namespace fs = std::filesystem;
using timestamp::tsa_testing::TempDir;

std::vector<std::string> file_lines(const fs::path& path) {
    std::vector<std::string> lines;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

std::vector<std::string> segment_lines(const std::string& dir) {
    std::vector<std::string> lines;
    auto st = audit::for_each_line(dir, [&](const audit::Position&, std::string_view line, bool) {
        lines.emplace_back(line);
        return true;
    });
    EXPECT_TRUE(st);
    return lines;
}

class AuditServicesTest : public ::testing::Test {
  protected:
    AuditServicesTest() : tsa_server_(pki_) {}

    void SetUp() override {
        timestamp::tsa_testing::make_test_tsa(tmp_.path() / "tsa", "Test TSA CA");
        timestamp::tsa_testing::serve_tsa(tsa_server_, tmp_.path() / "tsa", "/tsr");
        tsa_server_.http().set_keep_alive_max_count(1);
        tsa_server_.start();
        https_ca_ = agent::testing::write_test_file((tmp_.path() / "https-ca.pem").string(),
                                                    pki_.ca.cert_pem);
        rsyslog_.start();

        config_.agent.id = "edge-1";
        config_.agent.state_dir = (tmp_.path() / "state").string();
        config_.audit.dir = config_.agent.state_dir + "/audit";
        config_.audit.tsa = config::TsaSection{tsa_server_.url("/tsr"), tsa_ca(), https_ca_};
        config::SiemExport soc;
        soc.name = "soc";
        soc.type = config::SiemExport::Type::syslog;
        soc.host = "127.0.0.1";
        soc.port = rsyslog_.port();
        soc.tls = true;
        soc.ca_file = rsyslog_.ca_file();
        config::SiemExport file;
        file.name = "archive";
        file.type = config::SiemExport::Type::json_lines;
        file.path = (tmp_.path() / "export.jsonl").string();
        config_.audit.siem = {soc, file};
    }

    std::string tsa_ca() const { return (tmp_.path() / "tsa" / "ca.pem").string(); }

    TempDir tmp_;
    agent::testing::TestPki pki_ = agent::testing::TestPki::generate();
    agent::testing::TlsTestServer tsa_server_;
    std::string https_ca_;
    siem::harness::Rsyslog rsyslog_{true};
    config::Config config_;
    observe::Registry registry_;
    observe::Logger logger_{"edge-1", observe::Level::error, [](std::string_view) {}};
};

TEST_F(AuditServicesTest, CheckpointsAreTimeStampedAndRecordsReachEveryExport) {
    auto key = identity::AgentKey::load_or_create(config_.agent.state_dir);
    ASSERT_TRUE(key) << key.error().describe();
    Auditor auditor;
    auto services = AuditServices::create(config_, logger_, registry_, auditor);
    ASSERT_TRUE(services) << services.error().describe();

    audit::Options options;
    options.agent_id = config_.agent.id;
    options.batch_interval_ms = 1;
    options.checkpoint_every_records = 10;
    options.on_checkpoint = (*services)->checkpoint_hook();
    ASSERT_TRUE(options.on_checkpoint);
    auto opened = audit::AuditLog::open(config_.audit.dir, std::move(options), *key);
    ASSERT_TRUE(opened) << opened.error().describe();
    auto& log = *opened->log;
    ASSERT_TRUE((*services)->start_exports(log));

    for (int i = 0; i < 25; ++i)
        ASSERT_TRUE(log.append("job.finished", {{"n", i}}, {"job-" + std::to_string(i), "", ""}));
    ASSERT_TRUE(log.flush());
    ASSERT_TRUE(log.close());  // the final checkpoint goes to the stamper
    const uint64_t size = log.durable_size();
    // Give the TSA and the exports time to finish everything (far more than needed).
    const auto received = rsyslog_.received(size);
    (*services)->stop(std::chrono::seconds(10));

    // Every checkpoint up to the final one is time-stamped by the real TSA.
    auto stamps = timestamp::verify_timestamps(config_.audit.dir, tsa_ca());
    ASSERT_TRUE(stamps) << stamps.error().describe();
    EXPECT_TRUE(stamps->intact()) << stamps->damage->describe();
    EXPECT_TRUE(stamps->signatures_checked);
    EXPECT_GE(stamps->tokens, 1u);
    EXPECT_EQ(stamps->last_stamped_tree_size, size);

    // rsyslog got every record (at least once), each carrying its seq.
    std::set<uint64_t> seqs;
    for (const auto& line : received) {
        const auto at = line.find("seq=\"");
        if (at == std::string::npos) continue;
        seqs.insert(std::stoull(line.substr(at + 5)));
    }
    EXPECT_EQ(seqs.size(), size) << "rsyslog received " << received.size() << " lines";

    // The JSON-lines export holds the records byte for byte, in order.
    EXPECT_EQ(file_lines(tmp_.path() / "export.jsonl"), segment_lines(config_.audit.dir));

    // /metrics shows both.
    const std::string metrics = registry_.render();
    EXPECT_NE(metrics.find("secure_agent_audit_export_records_total{export=\"archive\"} " +
                           std::to_string(size) + "\n"),
              std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find("secure_agent_audit_export_lag_records{export=\"soc\"} 0\n"),
              std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find("secure_agent_audit_timestamps_total{result=\"stored\"} " +
                           std::to_string(stamps->tokens) + "\n"),
              std::string::npos)
        << metrics;

    // `audit verify --tsa-ca` checks the log and the tokens in one go.
    std::ostringstream out, err;
    EXPECT_EQ(
        audit_verify(config_.audit.dir, config_.agent.state_dir + "/" + identity::kPublicKeyFile,
                     out, err, tsa_ca()),
        kExitOk)
        << err.str();
    EXPECT_NE(out.str().find("RFC 3161 timestamps verified (latest covers tree size " +
                             std::to_string(size)),
              std::string::npos)
        << out.str();
}

TEST_F(AuditServicesTest, VerifyNamesATamperedTimestamp) {
    auto key = identity::AgentKey::load_or_create(config_.agent.state_dir);
    ASSERT_TRUE(key);
    config_.audit.siem.clear();
    Auditor auditor;
    auto services = AuditServices::create(config_, logger_, registry_, auditor);
    ASSERT_TRUE(services) << services.error().describe();
    audit::Options options;
    options.agent_id = "edge-1";
    options.on_checkpoint = (*services)->checkpoint_hook();
    auto opened = audit::AuditLog::open(config_.audit.dir, std::move(options), *key);
    ASSERT_TRUE(opened);
    ASSERT_TRUE(opened->log->append("agent.started", {{"version", "1"}}));
    ASSERT_TRUE(opened->log->close());
    (*services)->stop(std::chrono::seconds(10));
    const fs::path stamps = fs::path(config_.audit.dir) / "timestamps.jsonl";
    auto lines = file_lines(stamps);
    ASSERT_EQ(lines.size(), 1u);

    // Another checkpoint's hash: the token no longer proves this checkpoint.
    const auto at = lines[0].find("\"checkpoint_sha256\":\"") + 21;
    lines[0][at] = lines[0][at] == 'A' ? 'B' : 'A';
    std::ofstream(stamps, std::ios::trunc) << lines[0] << "\n";
    std::ostringstream out, err;
    EXPECT_EQ(
        audit_verify(config_.audit.dir, config_.agent.state_dir + "/" + identity::kPublicKeyFile,
                     out, err, tsa_ca()),
        kExitFailure);
    EXPECT_NE(err.str().find("at timestamps.jsonl:1 (tree size 1)"), std::string::npos)
        << err.str();
}

TEST_F(AuditServicesTest, UnwritableJsonExportIsAStartupError) {
    auto key = identity::AgentKey::load_or_create(config_.agent.state_dir);
    ASSERT_TRUE(key);
    config_.audit.tsa.reset();
    config_.audit.siem.resize(2);
    config_.audit.siem[1].path = (tmp_.path() / "no-such-dir" / "x.jsonl").string();
    Auditor auditor;
    auto services = AuditServices::create(config_, logger_, registry_, auditor);
    ASSERT_TRUE(services);
    EXPECT_FALSE((*services)->checkpoint_hook());
    audit::Options options;
    options.agent_id = "edge-1";
    auto opened = audit::AuditLog::open(config_.audit.dir, std::move(options), *key);
    ASSERT_TRUE(opened);
    auto started = (*services)->start_exports(*opened->log);
    ASSERT_FALSE(started);
    EXPECT_NE(started.error().message.find("audit.siem archive: "), std::string::npos)
        << started.error().message;
    (*services)->stop(std::chrono::seconds(0));
}

// As run_agent does it: the salt is read from the store before the log
// opens, and the read is recorded once it is.
TEST_F(AuditServicesTest, StoreSaltIsReadBeforeTheLogOpensAndAuditedAfter) {
    auto key = identity::AgentKey::load_or_create(config_.agent.state_dir);
    ASSERT_TRUE(key);
    const std::string salt = "0123456789abcdef0123456789abcdef-shared";
    const std::string salt_b64 = crypto::base64_encode(salt);
    agent::testing::write_test_file((tmp_.path() / "secrets" / "audit-salt").string(),
                                    salt_b64 + "\n");
    config_.audit.tsa.reset();
    config_.audit.siem.clear();
    config_.audit.hmac_salt = secrets::SecretRef{.store = "files", .path = "audit-salt", .key = ""};
    Auditor auditor;
    SecretAccessRecorder recorder(auditor);
    secrets::SecretStores stores;
    stores.add("files", std::make_unique<secrets::FileSecretStore>(
                            "files", (tmp_.path() / "secrets").string()));
    stores.set_observer([&](const secrets::AccessEvent& e) { recorder.on_access(e); });

    auto hasher = load_configured_salt(config_, stores);
    ASSERT_TRUE(hasher) << hasher.error().describe();
    ASSERT_TRUE(*hasher);
    audit::Options options;
    options.agent_id = "edge-1";
    options.batch_interval_ms = 1;
    options.hasher = *hasher;
    auto opened = audit::AuditLog::open(config_.audit.dir, std::move(options), *key);
    ASSERT_TRUE(opened) << opened.error().describe();
    auditor.attach(opened->log.get());
    recorder.start();
    ASSERT_TRUE(opened->log->flush());
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), salt.data(), static_cast<int>(salt.size()),
         reinterpret_cast<const unsigned char*>("db-prod-01"), 10, mac, &mac_len);
    EXPECT_EQ(opened->log->hmac("db-prod-01"),
              "hmac-sha256:" + crypto::base64_encode(
                                   std::string_view(reinterpret_cast<const char*>(mac), mac_len)));
    auditor.attach(nullptr);
    ASSERT_TRUE(opened->log->close());

    const auto lines = segment_lines(config_.audit.dir);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_NE(lines[0].find("\"type\":\"secret.accessed\""), std::string::npos) << lines[0];
    EXPECT_NE(lines[0].find("\"purpose\":\"audit hmac salt\""), std::string::npos) << lines[0];
    EXPECT_NE(lines[0].find("\"outcome\":\"ok\""), std::string::npos) << lines[0];
    EXPECT_EQ(lines[0].find(salt_b64), std::string::npos);
    EXPECT_EQ(lines[0].find("0123456789abcdef"), std::string::npos);
    EXPECT_FALSE(fs::exists(fs::path(config_.audit.dir) / audit::kSaltFile));
}

TEST_F(AuditServicesTest, SiemExportPresentsTheClientCertificateFromTheStore) {
    if (!siem::harness::rsyslog_available()) GTEST_SKIP() << siem::harness::kNoRsyslog;
    siem::harness::Rsyslog mtls(/*tls=*/true, siem::harness::ClientAuth::certvalid);
    mtls.start();
    const std::string cert = agent::testing::write_test_file((tmp_.path() / "client.pem").string(),
                                                             mtls.pki().client.cert_pem);
    agent::testing::write_test_file((tmp_.path() / "secrets" / "siem.key").string(),
                                    mtls.pki().client.key_pem);
    auto key = identity::AgentKey::load_or_create(config_.agent.state_dir);
    ASSERT_TRUE(key);
    config_.audit.tsa.reset();
    config_.audit.siem.resize(1);
    config_.audit.siem[0].port = mtls.port();
    config_.audit.siem[0].ca_file = mtls.ca_file();
    config_.audit.siem[0].client_cert = cert;
    config_.audit.siem[0].client_key =
        secrets::SecretRef{.store = "files", .path = "siem.key", .key = ""};
    secrets::SecretStores stores;
    stores.add("files", std::make_unique<secrets::FileSecretStore>(
                            "files", (tmp_.path() / "secrets").string()));
    std::mutex mu;
    std::vector<std::string> purposes;
    stores.set_observer([&](const secrets::AccessEvent& e) {
        std::lock_guard lock(mu);
        purposes.push_back(e.purpose);
    });
    Auditor auditor;
    EXPECT_FALSE(AuditServices::create(config_, logger_, registry_, auditor));  // no stores
    auto services = AuditServices::create(config_, logger_, registry_, auditor, {}, &stores);
    ASSERT_TRUE(services) << services.error().describe();
    audit::Options options;
    options.agent_id = "edge-1";
    options.batch_interval_ms = 1;
    auto opened = audit::AuditLog::open(config_.audit.dir, std::move(options), *key);
    ASSERT_TRUE(opened);
    ASSERT_TRUE((*services)->start_exports(*opened->log));
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(opened->log->append("job.finished", {{"n", i}}));
    ASSERT_TRUE(opened->log->close());
    EXPECT_EQ(mtls.received(5).size(), 5u);
    (*services)->stop(std::chrono::seconds(5));
    std::lock_guard lock(mu);
    ASSERT_FALSE(purposes.empty());
    EXPECT_EQ(purposes[0], "siem client key soc");
}

}  // namespace
}  // namespace sa::agent::app
