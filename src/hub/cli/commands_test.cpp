#include "hub/cli/commands.h"

#include <gtest/gtest.h>
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "common/util/files.h"
#include "hub/store/layout.h"
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
