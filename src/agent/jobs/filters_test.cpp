#include "agent/jobs/filters.h"

#include <gtest/gtest.h>

namespace sa::agent::jobs {
namespace {

using nlohmann::json;

CompiledFilters compile(const std::vector<ObjectFilters>& all_of) {
    auto compiled = CompiledFilters::compile(all_of);
    EXPECT_TRUE(compiled) << compiled.error().message;
    return std::move(*compiled);
}

ObjectFilters parse(const json& value) {
    auto filters = filters_from_json(value, "job filters");
    EXPECT_TRUE(filters) << filters.error().message;
    return filters.value_or(ObjectFilters{});
}

std::string parse_error(const json& value) {
    auto filters = filters_from_json(value, "job filters");
    EXPECT_FALSE(filters);
    if (filters) return "";
    EXPECT_EQ(filters.error().code, ErrorCode::invalid_argument);
    return filters.error().message;
}

TEST(FiltersTest, NoFiltersAllowEverything) {
    auto f = compile({});
    EXPECT_TRUE(f.schema_allowed("public"));
    EXPECT_TRUE(f.table_allowed("public", "users"));
    auto g = compile({ObjectFilters{}});
    EXPECT_TRUE(g.schema_allowed(""));
    EXPECT_TRUE(g.table_allowed("x", "y"));
}

TEST(FiltersTest, IncludeMatchesTheWholeName) {
    auto f = compile({parse({{"schemas", {{"include", {"public", "sales_.*"}}}}})});
    EXPECT_TRUE(f.schema_allowed("public"));
    EXPECT_TRUE(f.schema_allowed("sales_eu"));
    EXPECT_FALSE(f.schema_allowed("public_secret"));
    EXPECT_FALSE(f.schema_allowed("xpublic"));
    EXPECT_FALSE(f.schema_allowed("hr"));
    EXPECT_FALSE(f.table_allowed("hr", "users"));
    EXPECT_TRUE(f.table_allowed("public", "anything"));
}

TEST(FiltersTest, ExcludeWinsOverInclude) {
    auto f = compile({parse({{"schemas", {{"include", {".*"}}, {"exclude", {"tmp_.*"}}}},
                             {"tables", {{"exclude", {"secret_.*"}}}}})});
    EXPECT_TRUE(f.schema_allowed("public"));
    EXPECT_FALSE(f.schema_allowed("tmp_1"));
    EXPECT_TRUE(f.table_allowed("public", "users"));
    EXPECT_FALSE(f.table_allowed("public", "secret_keys"));
    EXPECT_FALSE(f.table_allowed("tmp_1", "users"));
}

TEST(FiltersTest, CaseSensitive) {
    auto f = compile({parse({{"tables", {{"include", {"Users"}}}}})});
    EXPECT_TRUE(f.table_allowed("s", "Users"));
    EXPECT_FALSE(f.table_allowed("s", "users"));
}

TEST(FiltersTest, SeveralSetsAreIntersected) {
    ObjectFilters policy = parse({{"schemas", {{"include", {"public", "sales_.*"}}}},
                                  {"tables", {{"exclude", {"secret_.*"}}}}});
    ObjectFilters job = parse({{"schemas", {{"include", {"sales_.*", "hr"}}}},
                               {"tables", {{"include", {"orders.*", "secret_x"}}}}});
    auto f = compile({policy, job});
    EXPECT_TRUE(f.schema_allowed("sales_eu"));
    EXPECT_FALSE(f.schema_allowed("public"));  // policy yes, job no
    EXPECT_FALSE(f.schema_allowed("hr"));      // job yes, policy no
    EXPECT_TRUE(f.table_allowed("sales_eu", "orders_2024"));
    EXPECT_FALSE(f.table_allowed("sales_eu", "secret_x"));  // the job cannot widen
    EXPECT_FALSE(f.table_allowed("sales_eu", "customers"));
}

TEST(FiltersTest, JsonRoundTrip) {
    json in = {{"schemas", {{"include", {"public"}}, {"exclude", {"tmp_.*", "x"}}}},
               {"tables", {{"exclude", {"secret_.*"}}}}};
    ObjectFilters f = parse(in);
    EXPECT_EQ(f.schemas.include, std::vector<std::string>{"public"});
    EXPECT_EQ(f.schemas.exclude, (std::vector<std::string>{"tmp_.*", "x"}));
    EXPECT_TRUE(f.tables.include.empty());
    EXPECT_EQ(to_json(f), in);
    ObjectFilters again = parse(to_json(f));
    EXPECT_EQ(to_json(again), in);
    EXPECT_EQ(to_json(ObjectFilters{}), json::object());
    EXPECT_TRUE(parse(json::object()).empty());
}

TEST(FiltersTest, ErrorsNameTheField) {
    EXPECT_EQ(parse_error({{"schemas", {{"include", {"a", "b", "("}}}}})
                  .rfind("job filters.schemas.include[2]: ", 0),
              0u);
    EXPECT_EQ(parse_error({{"tables", {{"exclude", {1}}}}}),
              "job filters.tables.exclude[0]: must be a string");
    EXPECT_EQ(parse_error({{"views", json::object()}}), "job filters.views: unknown key");
    EXPECT_EQ(parse_error({{"tables", {{"only", json::array()}}}}),
              "job filters.tables.only: unknown key");
    EXPECT_EQ(parse_error({{"tables", {{"include", "x"}}}}),
              "job filters.tables.include: must be a list of strings");
    EXPECT_EQ(parse_error({{"tables", "x"}}).rfind("job filters.tables: must be an object", 0), 0u);
    EXPECT_EQ(parse_error(json::array()).rfind("job filters: must be an object", 0), 0u);
    EXPECT_EQ(parse_error({{"tables", {{"include", {""}}}}}),
              "job filters.tables.include[0]: must not be empty");
}

TEST(FiltersTest, Limits) {
    json list = json::array();
    for (int i = 0; i < 64; ++i) list.push_back("t" + std::to_string(i));
    EXPECT_TRUE(filters_from_json({{"tables", {{"include", list}}}}, "f"));
    list.push_back("one-too-many");
    EXPECT_EQ(parse_error({{"tables", {{"include", list}}}}),
              "job filters.tables.include: more than 64 patterns");

    EXPECT_TRUE(filters_from_json({{"tables", {{"include", {std::string(256, 'a')}}}}}, "f"));
    std::string msg = parse_error({{"tables", {{"include", {std::string(257, 'a')}}}}});
    EXPECT_EQ(msg, "job filters.tables.include[0]: pattern is longer than 256 bytes");

    // compile() enforces the same bounds on structs built by hand.
    ObjectFilters big;
    big.schemas.exclude.assign(65, "x");
    auto c = CompiledFilters::compile({big});
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().message, "filters[0].schemas.exclude: more than 64 patterns");
    ObjectFilters bad;
    bad.tables.include = {"ok", "[unclosed"};
    c = CompiledFilters::compile({ObjectFilters{}, bad});
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(c.error().message.rfind("filters[1].tables.include[1]: ", 0), 0u);
}

TEST(FiltersTest, OverlongNamesFailClosedOnlyWhenThereArePatterns) {
    const std::string long_name(5000, 'a');
    EXPECT_TRUE(compile({}).schema_allowed(long_name));
    auto f = compile({parse({{"tables", {{"exclude", {"b.*"}}}}})});
    EXPECT_TRUE(f.table_allowed("s", std::string(1024, 'a')));
    EXPECT_FALSE(f.table_allowed("s", long_name));
    EXPECT_TRUE(f.schema_allowed(long_name));  // no schema patterns
    auto g = compile({parse({{"schemas", {{"include", {".*"}}}}})});
    EXPECT_TRUE(g.schema_allowed(std::string(1024, 'a')));
    EXPECT_FALSE(g.schema_allowed(long_name));
}

TEST(FiltersTest, MovedFromAllowsNothing) {
    auto f = compile({});
    CompiledFilters g = std::move(f);
    EXPECT_TRUE(g.schema_allowed("a"));
    // NOLINTNEXTLINE(bugprone-use-after-move): the fail-closed behaviour is the point.
    EXPECT_FALSE(f.schema_allowed("a"));
}

}  // namespace
}  // namespace sa::agent::jobs
