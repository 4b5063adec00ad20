#include "common/metadata/model.h"

#include <gtest/gtest.h>

#include <random>

#include "common/crypto/digest.h"
#include "common/metadata/testing/schema_check.h"

namespace sa::metadata {
namespace {

using nlohmann::json;

Table sample() {
    Table t{.database = "shop", .schema = "public", .name = "orders", .kind = "table"};
    t.owner = "app_owner";
    t.comment = "one row per order";
    t.estimated_rows = 1200;
    t.estimated_bytes = 65536;
    t.columns.push_back({.name = "id",
                         .ordinal = 1,
                         .data_type = "bigint",
                         .normalized_type = "integer",
                         .nullable = false,
                         .identity = "always",
                         .primary_key_position = 1});
    t.columns.push_back({.name = "note",
                         .ordinal = 3,
                         .data_type = "text",
                         .normalized_type = "string",
                         .default_value = "'none'::text",
                         .comment = "free text"});
    t.columns.push_back({.name = "total",
                         .ordinal = 4,
                         .data_type = "numeric(10,2)",
                         .normalized_type = "decimal",
                         .generated = "stored",
                         .generation_expression = "(price * qty)"});
    t.constraints.push_back({.name = "orders_pkey", .type = "primary_key", .columns = {"id"}});
    t.constraints.push_back({.name = "orders_customer_fkey",
                             .type = "foreign_key",
                             .columns = {"note"},
                             .references = ObjectRef{"crm", "customers"},
                             .referenced_columns = {"name"},
                             .on_update = "NO ACTION",
                             .on_delete = "CASCADE"});
    t.constraints.push_back(
        {.name = "positive", .type = "check", .columns = {"total"}, .definition = "(total > 0)"});
    t.indexes.push_back(
        {.name = "orders_note_lower",
         .unique = false,
         .origin = "create_index",
         .method = "btree",
         .predicate = "(note IS NOT NULL)",
         .keys = {IndexKey{.expression = "lower(note)"}, IndexKey{.column = "id"}}});
    return t;
}

Table partition() {
    Table t{.database = "shop", .schema = "public", .name = "events_2026", .kind = "partition"};
    t.partition_of = ObjectRef{"public", "events"};
    t.partition_bound = "FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')";
    t.columns.push_back(
        {.name = "at", .ordinal = 1, .data_type = "date", .normalized_type = "date"});
    return t;
}

Routine routine() {
    return Routine{.database = "shop",
                   .schema = "public",
                   .name = "total/of",
                   .kind = "function",
                   .signature = "a integer, b text",
                   .return_type = "numeric",
                   .language = "plpgsql",
                   .owner = "app_owner"};
}

TEST(MetadataModel, EveryRecordTypeRoundTrips) {
    Table view{.database = "shop", .schema = "public", .name = "v", .kind = "view"};
    view.definition = "SELECT id FROM public.orders";
    view.depends_on = {ObjectRef{"public", "orders"}};
    view.columns.push_back(
        {.name = "id", .ordinal = 1, .data_type = "bigint", .normalized_type = "integer"});
    Table inherited{.database = "shop", .schema = "s", .name = "child", .kind = "table"};
    inherited.inherits = {ObjectRef{"s", "parent"}, ObjectRef{"t", "other"}};
    const std::vector<Record> records = {
        sample(),
        partition(),
        view,
        inherited,
        routine(),
        Removal{.object = "table", .database = "shop", .schema = "public", .name = "gone"},
        Removal{.object = "routine",
                .database = "shop",
                .schema = "public",
                .name = "f",
                .signature = "integer"},
    };
    for (const auto& record : records) {
        const json j = to_json(record);
        auto back = record_from_json(json::parse(j.dump()));
        ASSERT_TRUE(back) << j.dump() << ": " << back.error().message;
        EXPECT_EQ(*back, record) << j.dump();
    }
}

TEST(MetadataModel, QualifiedNamesAreStableAndUnambiguous) {
    EXPECT_EQ(qualified_name("src", sample()), "src/shop/public/orders");
    EXPECT_EQ(qualified_name("src", sample(), sample().columns[1]), "src/shop/public/orders/note");
    // '/' and '%' inside a name cannot be confused with separators.
    EXPECT_EQ(qualified_name("src", routine()), "src/shop/public/total%2Fof(a integer, b text)");
    Table odd{.database = "d", .schema = "50%", .name = "a/b", .kind = "table"};
    EXPECT_EQ(qualified_name("s", odd), "s/d/50%25/a%2Fb");
    EXPECT_EQ(qualified_name("s", Removal{.object = "routine",
                                          .database = "d",
                                          .schema = "p",
                                          .name = "f",
                                          .signature = "integer"}),
              "s/d/p/f(integer)");
}

std::vector<Record> every_record_type();

// Names with everything the reference serializer escapes or repairs:
// quotes, backslashes, control characters, UTF-8, invalid UTF-8.
std::string awkward_text(std::mt19937& rng) {
    static const std::vector<std::string> pieces = {"a",
                                                    "Z",
                                                    "_",
                                                    " ",
                                                    "\"",
                                                    "\\",
                                                    "/",
                                                    "\n",
                                                    "\t",
                                                    "\x01",
                                                    "\x1f",
                                                    "\x7f",
                                                    "ß",
                                                    "表",
                                                    "\xe2\x82\xac",
                                                    "\xf0\x9f\x98\x80",
                                                    "\xff",
                                                    "\xc3",
                                                    "\xe2\x82",
                                                    "\xed\xa0\x80",
                                                    "%"};
    std::string out;
    const int n = static_cast<int>(rng() % 8);
    for (int i = 0; i < n; ++i) out += pieces[rng() % pieces.size()];
    return out;
}

TEST(MetadataModel, SerializeIsByteForByteTheReferenceDump) {
    std::mt19937 rng(7);
    auto text = [&] { return awkward_text(rng); };
    auto maybe = [&]() -> std::optional<std::string> {
        if (rng() % 3 == 0) return std::nullopt;
        return text();
    };
    std::vector<Record> records = every_record_type();
    for (int i = 0; i < 300; ++i) {
        Table t{.database = text(), .schema = text(), .name = text(), .kind = "view"};
        t.owner = maybe();
        t.comment = maybe();
        if (rng() % 2) t.estimated_rows = static_cast<int64_t>(rng());
        if (rng() % 2) t.estimated_bytes = std::numeric_limits<int64_t>::max() - i;
        t.definition = maybe();
        t.depends_on = {ObjectRef{text(), text()}};
        for (int c = 1; c <= static_cast<int>(rng() % 4); ++c) {
            t.columns.push_back({.name = text(),
                                 .ordinal = c,
                                 .data_type = text(),
                                 .normalized_type = "string",
                                 .nullable = rng() % 2 == 0,
                                 .default_value = maybe(),
                                 .comment = maybe(),
                                 .generated = "stored",
                                 .generation_expression = maybe()});
        }
        t.constraints.push_back({.name = text(),
                                 .type = "foreign_key",
                                 .columns = {text()},
                                 .references = ObjectRef{text(), text()},
                                 .referenced_columns = {text()},
                                 .on_update = text(),
                                 .on_delete = text(),
                                 .definition = maybe()});
        t.indexes.push_back({.name = text(),
                             .method = text(),
                             .predicate = maybe(),
                             .keys = {{.column = "c"}, {.expression = text() + "x"}}});
        records.push_back(t);
        records.push_back(Routine{.database = text(),
                                  .schema = text(),
                                  .name = text(),
                                  .kind = "function",
                                  .signature = text(),
                                  .return_type = maybe(),
                                  .language = text(),
                                  .owner = maybe(),
                                  .comment = maybe()});
    }
    for (const auto& r : records) {
        const std::string reference =
            to_json(r).dump(-1, ' ', false, json::error_handler_t::replace);
        ASSERT_EQ(serialize(r), reference);
        json without = to_json(r);
        without.erase("estimated_rows");
        without.erase("estimated_bytes");
        ASSERT_EQ(fingerprint(r),
                  crypto::sha256_hex(without.dump(-1, ' ', false, json::error_handler_t::replace)));
    }
}

TEST(MetadataModel, FingerprintIgnoresStatisticsButNotStructure) {
    Table a = sample();
    Table b = sample();
    b.estimated_rows = 99999;
    b.estimated_bytes.reset();
    EXPECT_EQ(fingerprint(a), fingerprint(b));
    EXPECT_EQ(fingerprint(a).size(), 64u);
    b.columns[1].comment = "changed";
    EXPECT_NE(fingerprint(a), fingerprint(b));
    Table c = sample();
    c.indexes[0].keys[0].expression = "upper(note)";
    EXPECT_NE(fingerprint(a), fingerprint(c));
    EXPECT_NE(fingerprint(Record(routine())), fingerprint(Record(a)));
}

// A document the parser must reject, the error it must give, and whether
// the JSON Schema can see the problem too (ordinal order, duplicate column
// names and equal lengths of two arrays are beyond what it expresses).
struct Rejected {
    json document;
    std::string error;
    bool schema_rejects = true;
};

std::vector<Rejected> rejected_cases() {
    std::vector<Rejected> cases;
    auto add = [&](json j, std::string error, bool schema_rejects = true) {
        cases.push_back({std::move(j), std::move(error), schema_rejects});
    };
    json j = to_json(sample());
    j["columns"][1]["ordinal"] = "two";
    add(j, "columns[1].ordinal: expected integer");

    j = to_json(sample());
    j["kind"] = "sequence";
    add(j,
        "kind: must be one of table, view, materialized_view, partitioned_table, "
        "partition, foreign_table");

    j = to_json(sample());
    j["model_version"] = 3;
    add(j, "model_version: unsupported (this build reads versions 1 to 2)");

    j = to_json(sample());
    j["constraints"][1]["referenced_columns"] = json::array();
    add(j, "constraints[1]: columns and referenced_columns differ in length", false);

    j = to_json(sample());
    j["constraints"][0]["references"] = {{"schema", "a"}, {"name", "b"}};
    add(j, "constraints[0]: references and actions belong to foreign keys only");

    j = to_json(sample());
    j["constraints"][2]["definition"] = nullptr;
    add(j, "constraints[2].definition: required for a check");

    j = to_json(sample());
    j["columns"][0]["normalized_type"] = "bigint";
    add(j, "columns[0].normalized_type: unknown type family \"bigint\"");

    j = to_json(sample());
    j["columns"][0]["identity"] = "sometimes";
    add(j, "columns[0].identity: must be one of \"\", \"always\", \"by_default\"");

    j = to_json(sample());
    j["columns"][1]["generation_expression"] = "1";
    add(j, "columns[1].generation_expression: set on a column that is not generated");

    j = to_json(sample());
    j["columns"][2]["ordinal"] = 3;
    add(j, "columns[2].ordinal: not increasing", false);

    j = to_json(sample());
    j["columns"][2]["name"] = "id";
    add(j, "columns[2].name: duplicate column \"id\"", false);

    j = to_json(sample());
    j["indexes"][0]["keys"][0] = {{"column", "a"}, {"expression", "b"}};
    add(j, "indexes[0].keys[0]: needs exactly one of column, expression");

    j = to_json(sample());
    j["indexes"][0]["keys"] = json::array();
    add(j, "indexes[0].keys: must not be empty");

    j = to_json(sample());
    j["colums"] = json::array();  // a misspelt field is not silently dropped
    add(j, "colums: unknown field");

    j = to_json(sample());
    j["columns"][0]["extra"] = 1;
    add(j, "columns[0].extra: unknown field");

    j = to_json(partition());
    j["partition_of"] = nullptr;
    add(j, "partition_of: required for a partition");

    j = to_json(partition());
    j["partition_of"] = {{"schema", "public"}};
    add(j, "partition_of.name: expected string");

    j = to_json(sample());
    j["estimated_rows"] = -1;
    add(j, "estimated_rows: out of range");

    j = to_json(Record(routine()));
    j["kind"] = "procedure";
    add(j, "return_type: a procedure returns nothing");

    j = to_json(Record(Removal{.object = "table", .database = "d", .schema = "s", .name = "t"}));
    j["signature"] = "integer";
    add(j, "signature: only routines have one");

    j = to_json(sample());
    j["record"] = "sequence";
    add(j, "record: must be one of \"table\", \"routine\", \"removed\"");
    return cases;
}

TEST(MetadataModel, ErrorsNameTheField) {
    for (const auto& c : rejected_cases()) {
        auto r = record_from_json(c.document);
        ASSERT_FALSE(r) << c.document.dump();
        EXPECT_EQ(r.error().message, c.error) << c.document.dump();
    }
    EXPECT_EQ(table_from_json(to_json(Record(routine()))).error().message,
              "record: expected \"table\"");
}

std::vector<Record> every_record_type() {
    Table view{.database = "shop", .schema = "public", .name = "v", .kind = "materialized_view"};
    view.definition = "SELECT id FROM public.orders";
    view.depends_on = {ObjectRef{"public", "orders"}};
    view.columns.push_back(
        {.name = "id", .ordinal = 1, .data_type = "bigint", .normalized_type = "integer"});
    Table parent{
        .database = "shop", .schema = "public", .name = "events", .kind = "partitioned_table"};
    parent.partition_key = "RANGE (at)";
    Routine procedure{.database = "shop",
                      .schema = "public",
                      .name = "p",
                      .kind = "procedure",
                      .signature = "",
                      .language = "sql"};
    return {sample(),
            partition(),
            view,
            parent,
            routine(),
            procedure,
            Removal{.object = "table", .database = "d", .schema = "s", .name = "t"},
            Removal{.object = "routine",
                    .database = "d",
                    .schema = "s",
                    .name = "f",
                    .signature = "integer"}};
}

// The published JSON Schema and the parser agree: an independent validator
// accepts everything the model writes and rejects what the parser rejects.
TEST(MetadataSchema, AcceptsWhatTheModelWritesAndRejectsWhatTheParserRejects) {
    if (auto why = testing::schema_check_skip_reason(); !why.empty()) GTEST_SKIP() << why;
    auto good = testing::check_against_schema(every_record_type());
    ASSERT_TRUE(good) << good.error().message;
    ASSERT_EQ(good->size(), every_record_type().size());
    for (size_t i = 0; i < good->size(); ++i) {
        EXPECT_EQ((*good)[i], "ok") << to_json(every_record_type()[i]).dump();
    }

    std::string ndjson;
    std::vector<json> checked;
    for (const auto& c : rejected_cases()) {
        // Version 1 documents are the parser's alone (the schema is version 2's).
        if (!c.schema_rejects || c.document.value("model_version", 0) != 2) continue;
        checked.push_back(c.document);
        ndjson += c.document.dump() + "\n";
    }
    ASSERT_GT(checked.size(), 15u);
    auto bad = testing::check_against_schema(ndjson);
    ASSERT_TRUE(bad) << bad.error().message;
    ASSERT_EQ(bad->size(), checked.size());
    for (size_t i = 0; i < bad->size(); ++i) {
        EXPECT_TRUE((*bad)[i].starts_with("invalid")) << checked[i].dump();
    }
}

TEST(MetadataModel, ReadsVersionOneTables) {
    const json v1 = {
        {"model_version", 1},
        {"database", "main"},
        {"schema", "main"},
        {"name", "orders"},
        {"kind", "table"},
        {"definition", nullptr},
        {"columns",
         {{{"name", "id"},
           {"ordinal", 1},
           {"data_type", "INTEGER"},
           {"nullable", false},
           {"default", nullptr},
           {"primary_key_position", 1}},
          {{"name", "c"},
           {"ordinal", 2},
           {"data_type", "TEXT"},
           {"nullable", true},
           {"default", "'x'"},
           {"primary_key_position", 0}}}},
        {"indexes",
         {{{"name", "u1"},
           {"unique", true},
           {"origin", "unique_constraint"},
           {"partial", false},
           {"columns", {"c"}}},
          {{"name", "e1"},
           {"unique", false},
           {"origin", "create_index"},
           {"partial", true},
           {"columns", {"<expr>", "id"}}}}},
        {"foreign_keys",
         {{{"referenced_table", "other.customers"},
           {"columns", {"c"}},
           {"referenced_columns", {"name"}},
           {"on_update", "NO ACTION"},
           {"on_delete", "CASCADE"}}}},
    };
    auto t = table_from_json(v1);
    ASSERT_TRUE(t) << t.error().message;
    EXPECT_EQ(t->columns[0].normalized_type, "other");
    ASSERT_EQ(t->constraints.size(), 3u);
    EXPECT_EQ(t->constraints[0].type, "primary_key");
    EXPECT_EQ(t->constraints[0].columns, std::vector<std::string>{"id"});
    EXPECT_EQ(t->constraints[1].type, "unique");
    EXPECT_EQ(t->constraints[2].type, "foreign_key");
    EXPECT_EQ(t->constraints[2].references, (ObjectRef{"other", "customers"}));
    ASSERT_EQ(t->indexes.size(), 2u);
    EXPECT_TRUE(t->indexes[1].partial());
    EXPECT_EQ(t->indexes[1].keys[0].expression, "<expr>");
    EXPECT_EQ(t->indexes[1].keys[1].column, "id");
    // Read once, written as version 2 from then on.
    EXPECT_EQ(to_json(*t)["model_version"], 2);
}

TEST(MetadataModel, ChunkErrorsCarryLineNumbers) {
    std::string good = to_json(sample()).dump();
    std::string other = to_json(Record(routine())).dump();
    auto ok = parse_chunk(good + "\n" + other + "\n");
    ASSERT_TRUE(ok);
    ASSERT_EQ(ok->size(), 2u);
    EXPECT_TRUE(std::holds_alternative<Routine>((*ok)[1]));
    auto bad = parse_chunk(good + "\n{not json\n");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().message, "line 2: not valid JSON");
    auto notobj = parse_chunk("[1,2]\n");
    ASSERT_FALSE(notobj);
    EXPECT_EQ(notobj.error().message, "line 1: expected object");
}

}  // namespace
}  // namespace sa::metadata
