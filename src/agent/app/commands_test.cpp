#include "agent/app/commands.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "build_info.h"
#include "common/crypto/digest.h"
#include "common/crypto/ed25519.h"
#include "common/crypto/random.h"
#include "common/util/files.h"

namespace sa::agent::app {
namespace {

namespace fs = std::filesystem;

class CommandsTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("sa-cmd-" + crypto::random_token(8));
        fs::create_directories(dir_ / "secrets");
        std::ofstream(dir_ / "job.pub.pem")
            << crypto::Ed25519PrivateKey::generate().public_key().pem();
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string write_config(const std::string& client_secret) {
        const std::string text =
            "agent: {id: edge-1, state_dir: " + (dir_ / "state").string() +
            "}\nhub:\n  url: https://hub.example:8443\n"
            "  job_signing_public_key: " +
            (dir_ / "job.pub.pem").string() +
            "\n  client_id: cid_1\n  client_secret: " + client_secret +
            "\nsecret_stores: {files: {type: file, path: " + (dir_ / "secrets").string() +
            "}}\nsources:\n  - {name: demo, connector: sqlite, path: /x.db}\n";
        std::ofstream(dir_ / "agent.yaml") << text;
        return text;
    }
    fs::path dir_;
};

TEST_F(CommandsTest, CheckConfigPrintsSummaryAndFingerprint) {
    const std::string text = write_config("{secret: \"files/hub\"}");
    std::ostringstream out, err;
    EXPECT_EQ(check_config((dir_ / "agent.yaml").string(), out, err), kExitOk) << err.str();
    const std::string printed = out.str();
    EXPECT_EQ(printed.rfind("config OK\n", 0), 0u);
    EXPECT_NE(printed.find("hub url: https://hub.example:8443"), std::string::npos);
    EXPECT_NE(printed.find("sources: demo (sqlite)"), std::string::npos);
    EXPECT_NE(printed.find("config fingerprint: " + crypto::sha256_hex(text)), std::string::npos);
    EXPECT_TRUE(err.str().empty());
    EXPECT_FALSE(fs::exists(dir_ / "state"));  // check-config changes nothing
}

TEST_F(CommandsTest, CheckConfigErrorsNameTheKeyAndExit2) {
    write_config("\"hunter2\"");
    std::ostringstream out, err;
    EXPECT_EQ(check_config((dir_ / "agent.yaml").string(), out, err), kExitConfig);
    EXPECT_EQ(err.str().rfind("config error: hub.client_secret: literal secrets", 0), 0u)
        << err.str();
    EXPECT_EQ(err.str().find("hunter2"), std::string::npos);
    EXPECT_TRUE(out.str().empty());

    std::ostringstream out2, err2;
    EXPECT_EQ(check_config((dir_ / "missing.yaml").string(), out2, err2), kExitConfig);
    EXPECT_EQ(err2.str().rfind("config error: ", 0), 0u);
}

TEST_F(CommandsTest, RunExitsWith2OnConfigError) {
    write_config("{secret: \"vault/hub\"}");
    EXPECT_EQ(run_agent((dir_ / "agent.yaml").string()), kExitConfig);
}

TEST(VersionTest, PrintsVersionProtocolAndBinaryDigest) {
    std::ostringstream out;
    EXPECT_EQ(print_version(out), kExitOk);
    const std::string text = out.str();
    EXPECT_NE(text.find(std::string("secure-agent ") + build::kVersion + "\n"), std::string::npos);
    EXPECT_NE(text.find("protocol v1\n"), std::string::npos);
    auto self = util::read_file("/proc/self/exe");
    ASSERT_TRUE(self);
    EXPECT_NE(text.find("binary sha256 " + crypto::sha256_hex(*self) + "\n"), std::string::npos);
}

}  // namespace
}  // namespace sa::agent::app
