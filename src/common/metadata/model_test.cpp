#include "common/metadata/model.h"

#include <gtest/gtest.h>

namespace sa::metadata {
namespace {

Table sample() {
    Table t{.database = "main", .schema = "main", .name = "orders", .kind = "table"};
    t.columns.push_back({.name = "id",
                         .ordinal = 1,
                         .data_type = "INTEGER",
                         .nullable = false,
                         .primary_key_position = 1});
    t.columns.push_back(
        {.name = "note", .ordinal = 2, .data_type = "TEXT", .default_value = "'none'"});
    t.indexes.push_back(
        {.name = "i1", .unique = true, .origin = "create_index", .columns = {"note"}});
    t.foreign_keys.push_back({.referenced_table = "c",
                              .columns = {"id"},
                              .referenced_columns = {"id"},
                              .on_update = "NO ACTION",
                              .on_delete = "CASCADE"});
    return t;
}

TEST(MetadataModel, RoundTrip) {
    auto back = table_from_json(to_json(sample()));
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(to_json(*back), to_json(sample()));
    EXPECT_EQ(qualified_name("src", *back), "src/main/main/orders");
}

TEST(MetadataModel, ErrorsNameTheField) {
    auto j = to_json(sample());
    j["columns"][1]["ordinal"] = "two";
    auto r = table_from_json(j);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message, "columns[1].ordinal: expected integer");

    j = to_json(sample());
    j["kind"] = "sequence";
    EXPECT_EQ(table_from_json(j).error().message, "kind: must be \"table\" or \"view\"");

    j = to_json(sample());
    j["model_version"] = 2;
    EXPECT_NE(table_from_json(j).error().message.find("model_version"), std::string::npos);

    j = to_json(sample());
    j["foreign_keys"][0]["referenced_columns"] = nlohmann::json::array();
    EXPECT_NE(table_from_json(j).error().message.find("differ in length"), std::string::npos);
}

TEST(MetadataModel, ChunkErrorsCarryLineNumbers) {
    std::string good = to_json(sample()).dump();
    auto ok = parse_chunk(good + "\n" + good + "\n");
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->size(), 2u);
    auto bad = parse_chunk(good + "\n{not json\n");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().message, "line 2: not valid JSON");
    auto notobj = parse_chunk("[1,2]\n");
    ASSERT_FALSE(notobj);
    EXPECT_EQ(notobj.error().message, "line 1: expected object");
}

}  // namespace
}  // namespace sa::metadata
