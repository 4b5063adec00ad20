#include "agent/jobs/policy.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "common/crypto/digest.h"
#include "common/crypto/random.h"

namespace sa::agent::jobs {
namespace {

// Monday 2025-12-01 00:00:00 UTC.
constexpr int64_t kMonday = 1'764'547'200;
constexpr int64_t kDay = 86'400;
constexpr int64_t at(int64_t day_offset, int hour, int minute) {
    return kMonday + day_offset * kDay + hour * 3600 + minute * 60;
}

constexpr const char* kExample = R"(version: 1
max_concurrent_jobs: 4
rules:
  - name: nightly-catalog
    sources: [warehouse, "crm-*"]
    operations: [extract_metadata]
    schemas: {include: ["public", "sales_.*"], exclude: ["tmp_.*"]}
    tables:  {exclude: ["secret_.*"]}
    limits: {max_duration: 30m, max_objects: 100000, max_bytes: 1GiB}
    windows:
      - days: [mon, tue, wed, thu, fri]
        from: "01:00"
        to: "05:00"
  - name: setup
    sources: ["*"]
    operations: [test_connection, preflight, list_schemas]
    limits: {max_duration: 2m}
)";

Policy parse_ok(const std::string& text) {
    auto policy = parse_policy(text, "policy.yaml");
    EXPECT_TRUE(policy) << policy.error().message;
    return policy.value_or(Policy{});
}

// The one-line error for text, which must fail.
std::string parse_error(const std::string& text) {
    auto policy = parse_policy(text, "policy.yaml");
    EXPECT_FALSE(policy) << text;
    if (policy) return "";
    EXPECT_EQ(policy.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(policy.error().message.find('\n'), std::string::npos) << policy.error().message;
    return policy.error().message;
}

// A one-rule policy with the given rule body lines (indented under "- ").
std::string one_rule(const std::string& extra) {
    return "version: 1\nrules:\n  - name: r\n    sources: [warehouse]\n"
           "    operations: [extract_metadata]\n" +
           extra;
}

Job job(std::string source = "warehouse", std::string operation = "extract_metadata") {
    Job j;
    j.job_id = "job-1";
    j.source = std::move(source);
    j.operation = std::move(operation);
    return j;
}

TEST(PolicyParseTest, TheReferenceExampleParses) {
    Policy p = parse_ok(kExample);
    EXPECT_EQ(p.max_concurrent_jobs, 4);
    EXPECT_EQ(p.source_name, "policy.yaml");
    EXPECT_EQ(p.sha256_hex, crypto::sha256_hex(kExample));
    ASSERT_EQ(p.rules.size(), 2u);
    const PolicyRule& r = p.rules[0];
    EXPECT_EQ(r.name, "nightly-catalog");
    EXPECT_EQ(r.sources, (std::vector<std::string>{"warehouse", "crm-*"}));
    EXPECT_EQ(r.operations, std::vector<std::string>{"extract_metadata"});
    EXPECT_EQ(r.filters.schemas.include, (std::vector<std::string>{"public", "sales_.*"}));
    EXPECT_EQ(r.filters.schemas.exclude, std::vector<std::string>{"tmp_.*"});
    EXPECT_EQ(r.filters.tables.exclude, std::vector<std::string>{"secret_.*"});
    EXPECT_EQ(r.limits.max_duration, std::chrono::minutes(30));
    EXPECT_EQ(r.limits.max_objects, 100000);
    EXPECT_EQ(r.limits.max_bytes, int64_t{1} << 30);
    ASSERT_EQ(r.windows.size(), 1u);
    EXPECT_EQ(r.windows[0].days_mask, 0x1f);
    EXPECT_EQ(r.windows[0].from_minute, 60);
    EXPECT_EQ(r.windows[0].to_minute, 300);
    EXPECT_EQ(describe(r.windows[0]), "mon,tue,wed,thu,fri 01:00-05:00");
    const PolicyRule& s = p.rules[1];
    EXPECT_EQ(s.limits.max_duration, std::chrono::minutes(2));
    EXPECT_EQ(s.limits.max_objects, 0);
    EXPECT_EQ(s.limits.max_bytes, 0);
    EXPECT_TRUE(s.windows.empty());
    EXPECT_TRUE(s.filters.empty());
}

TEST(PolicyParseTest, Defaults) {
    Policy p = parse_ok(one_rule(""));
    EXPECT_EQ(p.max_concurrent_jobs, 1);
    EXPECT_EQ(p.rules[0].limits.max_duration, std::chrono::hours(1));
    Policy empty = parse_ok("version: 1\nrules: []\n");
    EXPECT_TRUE(empty.rules.empty());
    Policy w = parse_ok(one_rule("    windows: [{from: \"22:00\", to: \"24:00\"}]\n"));
    EXPECT_EQ(w.rules[0].windows[0].days_mask, 0x7f);
    EXPECT_EQ(w.rules[0].windows[0].to_minute, 1440);
    EXPECT_EQ(describe(w.rules[0].windows[0]), "every day 22:00-24:00");
    Policy d = parse_ok(one_rule("    limits: {max_duration: 24h}\n"));
    EXPECT_EQ(d.rules[0].limits.max_duration, std::chrono::hours(24));
    d = parse_ok(one_rule("    limits: {max_duration: 1s, max_bytes: 0}\n"));
    EXPECT_EQ(d.rules[0].limits.max_duration, std::chrono::seconds(1));
}

TEST(PolicyParseTest, ErrorsNameTheFileAndTheKey) {
    const struct {
        std::string text;
        std::string expected_prefix;
    } cases[] = {
        {"", "policy.yaml: (root): the policy file is empty"},
        {"[1, 2]", "policy.yaml: (root): must be a mapping"},
        {"version: 2\nrules: []\n", "policy.yaml: version: must be 1"},
        {"rules: []\n", "policy.yaml: version: missing required key"},
        {"version: 1\n", "policy.yaml: rules: missing required key"},
        {"version: 1\nrules: []\nextra: 1\n", "policy.yaml: extra: unknown key"},
        {"version: 1\nmax_concurrent_jobs: 65\nrules: []\n",
         "policy.yaml: max_concurrent_jobs: must be an integer between 1 and 64"},
        {"version: 1\nmax_concurrent_jobs: 0\nrules: []\n", "policy.yaml: max_concurrent_jobs: "},
        {"version: 1\nrules: {}\n", "policy.yaml: rules: must be a list"},
        {"version: 1\nrules:\n  - sources: [a]\n    operations: [preflight]\n",
         "policy.yaml: rules[0].name: missing required key"},
        {"version: 1\nrules:\n  - name: bad name\n    sources: [a]\n    operations: [preflight]\n",
         "policy.yaml: rules[0].name: must match"},
        {one_rule("  - name: r\n    sources: [a]\n    operations: [preflight]\n"),
         "policy.yaml: rules[1].name: duplicate rule name \"r\""},
        {one_rule("    color: blue\n"), "policy.yaml: rules[0].color: unknown key"},
        {"version: 1\nrules:\n  - name: r\n    operations: [preflight]\n",
         "policy.yaml: rules[0].sources: missing required key"},
        {"version: 1\nrules:\n  - name: r\n    sources: []\n    operations: [preflight]\n",
         "policy.yaml: rules[0].sources: must not be empty"},
        {"version: 1\nrules:\n  - name: r\n    sources: [\"a*b\"]\n    operations: [preflight]\n",
         "policy.yaml: rules[0].sources[0]: must be a source name"},
        {"version: 1\nrules:\n  - name: r\n    sources: [ok, \"*x\"]\n    operations: "
         "[preflight]\n",
         "policy.yaml: rules[0].sources[1]: must be a source name"},
        {"version: 1\nrules:\n  - name: r\n    sources: [a]\n",
         "policy.yaml: rules[0].operations: missing required key"},
        {"version: 1\nrules:\n  - name: r\n    sources: [a]\n    operations: [preflight, drop]\n",
         "policy.yaml: rules[0].operations[1]: unknown operation \"drop\""},
        {one_rule("    schemas: {include: [\"ok\", \"(bad\"]}\n"),
         "policy.yaml: rules[0].schemas.include[1]: \"(bad\" is not a valid regular expression"},
        {one_rule("    tables: {only: [x]}\n"), "policy.yaml: rules[0].tables.only: unknown key"},
        {one_rule("    tables: {exclude: x}\n"),
         "policy.yaml: rules[0].tables.exclude: must be a list"},
        {one_rule("    limits: {max_duration: 90}\n"),
         "policy.yaml: rules[0].limits.max_duration: must be a duration"},
        {one_rule("    limits: {max_duration: 25h}\n"),
         "policy.yaml: rules[0].limits.max_duration: must be a duration"},
        {one_rule("    limits: {max_duration: 0s}\n"),
         "policy.yaml: rules[0].limits.max_duration: must be a duration"},
        {one_rule("    limits: {max_objects: -1}\n"),
         "policy.yaml: rules[0].limits.max_objects: must be 0 (no limit)"},
        {one_rule("    limits: {max_bytes: 12parsecs}\n"),
         "policy.yaml: rules[0].limits.max_bytes: must be 0 (no limit)"},
        {one_rule("    limits: {max_bytes: 10}\n"),
         "policy.yaml: rules[0].limits.max_bytes: must be 0 (no limit)"},
        {one_rule("    limits: {timeout: 1m}\n"),
         "policy.yaml: rules[0].limits.timeout: unknown key"},
        {one_rule("    windows: []\n"), "policy.yaml: rules[0].windows: must not be empty"},
        {one_rule("    windows:\n      - {from: \"01:00\", to: \"05:00\"}\n"
                  "      - {from: \"1:00\", to: \"05:00\"}\n"),
         "policy.yaml: rules[0].windows[1].from: must be a UTC time"},
        {one_rule("    windows: [{from: \"24:00\", to: \"05:00\"}]\n"),
         "policy.yaml: rules[0].windows[0].from: must be a UTC time \"HH:MM\" from 00:00 to 23:59"},
        {one_rule("    windows: [{from: \"01:00\", to: \"24:01\"}]\n"),
         "policy.yaml: rules[0].windows[0].to: must be a UTC time"},
        {one_rule("    windows: [{from: \"01:60\", to: \"02:00\"}]\n"),
         "policy.yaml: rules[0].windows[0].from: must be a UTC time"},
        {one_rule("    windows: [{from: \"01:00\", to: \"01:00\"}]\n"),
         "policy.yaml: rules[0].windows[0].to: must differ from \"from\""},
        {one_rule("    windows: [{to: \"01:00\"}]\n"),
         "policy.yaml: rules[0].windows[0].from: missing required key"},
        {one_rule("    windows: [{days: [mon, funday], from: \"01:00\", to: \"02:00\"}]\n"),
         "policy.yaml: rules[0].windows[0].days[1]: unknown day \"funday\""},
        {one_rule("    windows: [{days: [], from: \"01:00\", to: \"02:00\"}]\n"),
         "policy.yaml: rules[0].windows[0].days: must not be empty"},
        {one_rule("    windows: [{from: \"01:00\", to: \"02:00\", tz: CET}]\n"),
         "policy.yaml: rules[0].windows[0].tz: unknown key"},
        {"version: 1\nrules: [\n", "policy.yaml: line "},
    };
    for (const auto& c : cases) {
        std::string message = parse_error(c.text);
        EXPECT_EQ(message.rfind(c.expected_prefix, 0), 0u) << "got: " << message;
    }
}

TEST(PolicyParseTest, DefaultPolicyAllowsEverythingOneAtATime) {
    Policy p = default_policy();
    EXPECT_EQ(p.max_concurrent_jobs, 1);
    EXPECT_EQ(p.source_name, "built-in default");
    ASSERT_EQ(p.rules.size(), 1u);
    EXPECT_EQ(p.rules[0].name, "default");
    for (const char* op : {"extract_metadata", "test_connection", "preflight", "list_schemas"}) {
        PolicyDecision d = evaluate(p, job("anything", op), at(3, 12, 0));
        EXPECT_TRUE(d.allowed) << op << ": " << d.message;
        EXPECT_EQ(d.rule, "default");
        EXPECT_EQ(d.limits.max_duration, std::chrono::hours(1));
    }
    PolicyDecision d = evaluate(p, job("x", "drop_tables"), at(0, 0, 0));
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.reason_code, "operation_not_allowed");
}

// The two examples of the operator documentation.
TEST(PolicyParseTest, DocumentedExamples) {
    Policy nightly = parse_ok(R"(version: 1
max_concurrent_jobs: 2
rules:
  - name: nightly-catalog
    sources: [warehouse, "crm-*"]
    operations: [extract_metadata]
    schemas: {include: ["public", "sales_.*", "finance"], exclude: ["tmp_.*"]}
    tables: {exclude: ["secret_.*", ".*_keys"]}
    limits: {max_duration: 45m, max_objects: 200000, max_bytes: 2GiB}
    windows:
      - days: [mon, tue, wed, thu, fri]
        from: "22:00"
        to: "04:00"
  - name: setup
    sources: ["*"]
    operations: [test_connection, preflight, list_schemas]
    limits: {max_duration: 2m}
)");
    PolicyDecision d = evaluate(nightly, job(), at(5, 12, 0));
    EXPECT_EQ(d.reason_code, "outside_time_window");
    EXPECT_EQ(d.message,
              "rule nightly-catalog allows extract_metadata on source warehouse only "
              "mon,tue,wed,thu,fri 22:00-04:00 UTC");
    EXPECT_EQ(evaluate(nightly, job("hr"), at(0, 23, 0)).reason_code, "operation_not_allowed");
    EXPECT_TRUE(evaluate(nightly, job(), at(5, 3, 0)).allowed);  // Friday night into Saturday

    Policy erp = parse_ok(R"(version: 1
rules:
  - name: erp-weekend
    sources: [erp]
    operations: [extract_metadata, test_connection, preflight, list_schemas]
    schemas: {exclude: ["payroll", "audit_.*"]}
    limits: {max_duration: 6h}
    windows:
      - days: [sat]
        from: "02:00"
        to: "08:00"
      - days: [sun]
        from: "00:00"
        to: "24:00"
)");
    EXPECT_EQ(evaluate(erp, job("crm"), at(6, 1, 0)).reason_code, "source_not_allowed");
    Job payroll = job("erp");
    payroll.filters.schemas.include = {"payroll"};
    EXPECT_EQ(evaluate(erp, payroll, at(6, 1, 0)).reason_code, "filter_outside_policy");
    EXPECT_TRUE(evaluate(erp, job("erp"), at(6, 23, 59)).allowed);
    EXPECT_EQ(evaluate(erp, job("erp"), at(5, 8, 0)).reason_code, "outside_time_window");
}

class PolicyEvaluateTest : public ::testing::Test {
  protected:
    Policy policy_ = parse_ok(kExample);
};

TEST_F(PolicyEvaluateTest, AllowedInsideTheWindowWithTheRulesLimitsAndFilters) {
    Job j = job("crm-eu");
    j.filters.tables.include = {"orders.*"};
    PolicyDecision d = evaluate(policy_, j, at(0, 1, 0));  // Monday 01:00
    ASSERT_TRUE(d.allowed) << d.message;
    EXPECT_EQ(d.rule, "nightly-catalog");
    EXPECT_TRUE(d.reason_code.empty());
    EXPECT_EQ(d.limits.max_duration, std::chrono::minutes(30));
    EXPECT_EQ(d.limits.max_objects, 100000);
    ASSERT_EQ(d.filters.size(), 2u);
    EXPECT_EQ(to_json(d.filters[0]), to_json(policy_.rules[0].filters));
    EXPECT_EQ(to_json(d.filters[1]), to_json(j.filters));
    EXPECT_NE(d.message.find("nightly-catalog"), std::string::npos);
    EXPECT_NE(d.message.find("crm-eu"), std::string::npos);
}

TEST_F(PolicyEvaluateTest, OutsideTimeWindow) {
    for (int64_t t : {at(0, 0, 59), at(0, 5, 0), at(5, 2, 0) /* Saturday */, at(6, 3, 0)}) {
        PolicyDecision d = evaluate(policy_, job(), t);
        EXPECT_FALSE(d.allowed) << t;
        EXPECT_EQ(d.reason_code, "outside_time_window");
        EXPECT_EQ(d.rule, "nightly-catalog");
        EXPECT_NE(d.message.find("mon,tue,wed,thu,fri 01:00-05:00 UTC"), std::string::npos)
            << d.message;
    }
    EXPECT_TRUE(evaluate(policy_, job(), at(4, 4, 59)).allowed);  // Friday 04:59
}

TEST_F(PolicyEvaluateTest, OperationNotAllowed) {
    // "setup" names every source but does not allow extract_metadata either;
    // list_schemas is allowed by it at any time.
    EXPECT_TRUE(evaluate(policy_, job("hr", "list_schemas"), at(5, 12, 0)).allowed);
    Policy p = parse_ok(one_rule(""));
    PolicyDecision d = evaluate(p, job("warehouse", "preflight"), at(0, 0, 0));
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.reason_code, "operation_not_allowed");
    EXPECT_EQ(d.rule, "default-deny");
    EXPECT_NE(d.message.find("preflight"), std::string::npos);
    EXPECT_NE(d.message.find("warehouse"), std::string::npos);
}

TEST_F(PolicyEvaluateTest, SourceNotAllowed) {
    Policy p = parse_ok(one_rule(""));
    PolicyDecision d = evaluate(p, job("hr"), at(0, 0, 0));
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.reason_code, "source_not_allowed");
    EXPECT_EQ(d.rule, "default-deny");
    EXPECT_NE(d.message.find("hr"), std::string::npos);
    // A prefix matches from the start only.
    Policy prefix = parse_ok(
        "version: 1\nrules:\n  - name: r\n    sources: [\"crm-*\"]\n"
        "    operations: [preflight]\n");
    EXPECT_TRUE(evaluate(prefix, job("crm-", "preflight"), 0).allowed);
    EXPECT_FALSE(evaluate(prefix, job("my-crm-1", "preflight"), 0).allowed);
    EXPECT_FALSE(evaluate(prefix, job("crm", "preflight"), 0).allowed);
    // An empty policy refuses everything.
    EXPECT_EQ(evaluate(parse_ok("version: 1\nrules: []\n"), job(), 0).reason_code,
              "source_not_allowed");
}

TEST_F(PolicyEvaluateTest, FirstMatchingRuleWinsAndLaterRulesCanAllow) {
    Policy p = parse_ok(R"(version: 1
rules:
  - name: weekend
    sources: [warehouse]
    operations: [extract_metadata]
    limits: {max_duration: 4h}
    windows: [{days: [sat, sun], from: "00:00", to: "24:00"}]
  - name: weekday-nights
    sources: [warehouse]
    operations: [extract_metadata]
    windows: [{days: [mon, tue, wed, thu, fri], from: "22:00", to: "02:00"}]
)");
    EXPECT_EQ(evaluate(p, job(), at(5, 12, 0)).rule, "weekend");
    EXPECT_EQ(evaluate(p, job(), at(5, 12, 0)).limits.max_duration, std::chrono::hours(4));
    // Across midnight: Friday 22:00 .. Saturday 02:00 belongs to Friday's
    // window (and Saturday is also the weekend rule's).
    EXPECT_EQ(evaluate(p, job(), at(4, 23, 0)).rule, "weekday-nights");
    // Monday 01:59: that window would have started on Sunday, which it does not list.
    EXPECT_EQ(evaluate(p, job(), at(0, 1, 59)).reason_code, "outside_time_window");
    EXPECT_EQ(evaluate(p, job(), at(1, 1, 59)).rule, "weekday-nights");  // Tue 01:59 from Monday
    EXPECT_EQ(evaluate(p, job(), at(1, 2, 0)).reason_code, "outside_time_window");
    EXPECT_EQ(evaluate(p, job(), at(1, 21, 59)).reason_code, "outside_time_window");
    PolicyDecision d = evaluate(p, job(), at(2, 12, 0));
    EXPECT_EQ(d.reason_code, "outside_time_window");
    // The first rule that would have allowed it is named.
    EXPECT_EQ(d.rule, "weekend");
}

TEST_F(PolicyEvaluateTest, LiteralJobIncludeOutsideThePolicyIsRefused) {
    Policy p =
        parse_ok(one_rule("    schemas: {include: [\"public\", \"sales_.*\"], exclude: "
                          "[\"sales_tmp\"]}\n    tables: {exclude: [\"secret_.*\"]}\n"));
    Job j = job();
    j.filters.schemas.include = {"payroll"};
    PolicyDecision d = evaluate(p, j, 0);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.reason_code, "filter_outside_policy");
    EXPECT_EQ(d.rule, "r");
    EXPECT_EQ(d.message, "job asks for schema \"payroll\", which rule r excludes");

    j.filters.schemas.include = {"^sales_tmp$"};
    EXPECT_EQ(evaluate(p, j, 0).reason_code, "filter_outside_policy");

    j.filters.schemas.include = {"sales_eu", "public"};
    j.filters.tables.include = {"secret_keys"};
    d = evaluate(p, j, 0);
    EXPECT_EQ(d.reason_code, "filter_outside_policy");
    EXPECT_EQ(d.message, "job asks for table \"secret_keys\", which rule r excludes");

    // Patterns that are not plain names are left to the intersection.
    j.filters.tables.include = {"secret_.*", "orders"};
    d = evaluate(p, j, 0);
    ASSERT_TRUE(d.allowed) << d.message;
    auto compiled = CompiledFilters::compile(d.filters);
    ASSERT_TRUE(compiled);
    EXPECT_FALSE(compiled->table_allowed("sales_eu", "secret_x"));
    EXPECT_TRUE(compiled->table_allowed("sales_eu", "orders"));
    EXPECT_FALSE(compiled->table_allowed("hr", "orders"));
    // An exclude in the job only narrows: always fine.
    j.filters = {};
    j.filters.schemas.exclude = {"payroll"};
    EXPECT_TRUE(evaluate(p, j, 0).allowed);
}

class PolicyFileTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() / ("sa-policy-" + crypto::random_token(8));
        std::filesystem::create_directories(dir_);
        path_ = (dir_ / "policy.yaml").string();
        std::ofstream(path_) << kExample;
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::filesystem::path dir_;
    std::string path_;
};

TEST_F(PolicyFileTest, LoadsAPrivateFile) {
    ASSERT_EQ(::chmod(path_.c_str(), 0644), 0);
    auto p = load_policy_file(path_);
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_EQ(p->source_name, path_);
    EXPECT_EQ(p->sha256_hex, crypto::sha256_hex(kExample));
    EXPECT_EQ(p->rules.size(), 2u);
}

TEST_F(PolicyFileTest, RefusesAFileOthersCanWrite) {
    for (unsigned mode : {0664u, 0646u, 0666u}) {
        ASSERT_EQ(::chmod(path_.c_str(), mode), 0);
        auto p = load_policy_file(path_);
        ASSERT_FALSE(p) << mode;
        EXPECT_EQ(p.error().code, ErrorCode::permission_denied);
        EXPECT_NE(p.error().message.find("is writable by group or others"), std::string::npos);
    }
}

TEST_F(PolicyFileTest, MissingFileAndContentErrors) {
    auto p = load_policy_file((dir_ / "nope.yaml").string());
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error().code, ErrorCode::not_found);
    std::ofstream(path_) << "version: 1\nrules: [{name: r}]\n";
    ASSERT_EQ(::chmod(path_.c_str(), 0600), 0);
    p = load_policy_file(path_);
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error().message, path_ + ": rules[0].sources: missing required key");
    p = load_policy_file(dir_.string());
    ASSERT_FALSE(p);
}

}  // namespace
}  // namespace sa::agent::jobs
