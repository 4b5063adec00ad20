#include "agent/worker/sinks.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sa::agent::worker {
namespace {

using delivery::FingerprintEntry;

metadata::Table table(const std::string& schema, const std::string& name,
                      std::vector<std::string> columns = {"id"}) {
    metadata::Table t{.database = "db", .schema = schema, .name = name, .kind = "table"};
    int64_t ordinal = 0;
    for (auto& c : columns) {
        t.columns.push_back({.name = std::move(c),
                             .ordinal = ++ordinal,
                             .data_type = "integer",
                             .normalized_type = "integer"});
    }
    return t;
}

metadata::Routine routine(const std::string& schema, const std::string& name,
                          const std::string& signature) {
    return {.database = "db",
            .schema = schema,
            .name = name,
            .kind = "function",
            .signature = signature,
            .return_type = "integer",
            .language = "sql"};
}

jobs::CompiledFilters compile(std::vector<jobs::ObjectFilters> filters = {}) {
    auto compiled = jobs::CompiledFilters::compile(filters);
    if (!compiled) throw std::runtime_error(compiled.error().describe());
    return std::move(*compiled);
}

// A connector's stream through FilteringSink -> DeltaSink -> ChunkWriter;
// what reached the chunks and what was reported seen.
struct Pipeline {
    explicit Pipeline(std::optional<std::vector<FingerprintEntry>> baseline,
                      std::vector<jobs::ObjectFilters> filter_sets = {})
        : filters(compile(std::move(filter_sets))),
          writer(1 << 20,
                 [this](delivery::Chunk&& chunk) -> Status {
                     body += chunk.body;
                     return {};
                 }),
          delta(std::move(baseline), filters, writer,
                [this](const FingerprintEntry& e) -> Status {
                    seen.push_back(e);
                    return {};
                }),
          sink(filters, 0, delta) {}

    std::vector<metadata::Record> finish() {
        EXPECT_TRUE(delta.finish());
        EXPECT_TRUE(writer.finish());
        auto records = metadata::parse_chunk(body);
        EXPECT_TRUE(records) << records.error().describe();
        return records ? *records : std::vector<metadata::Record>{};
    }

    jobs::CompiledFilters filters;
    std::string body;
    std::vector<FingerprintEntry> seen;
    delivery::ChunkWriter writer;
    DeltaSink delta;
    FilteringSink sink;
};

std::vector<std::string> names(const std::vector<metadata::Record>& records) {
    std::vector<std::string> out;
    for (const auto& r : records) {
        if (const auto* t = std::get_if<metadata::Table>(&r)) out.push_back("table " + t->name);
        if (const auto* f = std::get_if<metadata::Routine>(&r)) {
            out.push_back("routine " + f->name + "(" + f->signature + ")");
        }
        if (const auto* x = std::get_if<metadata::Removal>(&r)) {
            out.push_back("removed " + x->object + " " + x->name +
                          (x->object == "routine" ? "(" + x->signature + ")" : ""));
        }
    }
    return out;
}

TEST(DeltaSinkTest, AFullRunDeliversEverythingAndReportsEveryObjectSeen) {
    Pipeline p(std::nullopt);
    ASSERT_TRUE(p.sink.write(table("main", "a")));
    ASSERT_TRUE(p.sink.write(routine("main", "f", "x integer")));
    const auto records = p.finish();
    EXPECT_EQ(names(records), (std::vector<std::string>{"table a", "routine f(x integer)"}));
    EXPECT_FALSE(p.delta.delta());
    EXPECT_EQ(p.delta.summary().tables, 1);
    EXPECT_EQ(p.delta.summary().routines, 1);
    EXPECT_EQ(p.delta.removed(), 0);
    ASSERT_EQ(p.seen.size(), 2u);
    EXPECT_EQ(p.seen[0], delivery::entry_of(table("main", "a")));
    EXPECT_EQ(p.seen[1], delivery::entry_of(routine("main", "f", "x integer")));
}

TEST(DeltaSinkTest, UnchangedObjectsAreSkippedChangedAndNewDeliveredGoneRemoved) {
    const std::vector<FingerprintEntry> baseline{
        delivery::entry_of(table("main", "same")),
        delivery::entry_of(table("main", "altered")),
        delivery::entry_of(table("main", "dropped")),
        delivery::entry_of(routine("main", "f", "x integer")),  // unchanged
        delivery::entry_of(routine("main", "f", "x text")),     // an overload, dropped
        delivery::entry_of(routine("main", "g", "")),           // changed
    };
    Pipeline p(baseline);
    auto same = table("main", "same");
    same.estimated_rows = 1000;  // statistics are not a change
    ASSERT_TRUE(p.sink.write(same));
    ASSERT_TRUE(p.sink.write(table("main", "altered", {"id", "note"})));
    ASSERT_TRUE(p.sink.write(table("main", "added")));
    ASSERT_TRUE(p.sink.write(routine("main", "f", "x integer")));
    auto g = routine("main", "g", "");
    g.return_type = "text";
    ASSERT_TRUE(p.sink.write(g));
    const auto records = p.finish();

    EXPECT_TRUE(p.delta.delta());
    EXPECT_EQ(names(records),
              (std::vector<std::string>{"table altered", "table added", "routine g()",
                                        "removed routine f(x text)", "removed table dropped"}));
    const auto* removal = std::get_if<metadata::Removal>(&records.back());
    ASSERT_NE(removal, nullptr);
    EXPECT_EQ(*removal, (metadata::Removal{"table", "db", "main", "dropped", ""}));
    // Counts: what was delivered, not what was seen.
    EXPECT_EQ(p.delta.summary().tables, 2);
    EXPECT_EQ(p.delta.summary().columns, 3);
    EXPECT_EQ(p.delta.summary().routines, 1);
    EXPECT_EQ(p.delta.unchanged(), 2);
    EXPECT_EQ(p.delta.removed(), 2);
    EXPECT_EQ(p.sink.objects(), 5);
    // Everything seen is reported, delivered or not, with its new fingerprint.
    ASSERT_EQ(p.seen.size(), 5u);
    EXPECT_EQ(p.seen[1], delivery::entry_of(table("main", "altered", {"id", "note"})));
    EXPECT_EQ(p.seen[4], delivery::entry_of(g));
}

TEST(DeltaSinkTest, AnEmptyBaselineDeliversEverythingAsNew) {
    Pipeline p(std::vector<FingerprintEntry>{});
    ASSERT_TRUE(p.sink.write(table("main", "a")));
    EXPECT_EQ(names(p.finish()), std::vector<std::string>{"table a"});
    EXPECT_TRUE(p.delta.delta());
    EXPECT_EQ(p.delta.removed(), 0);
}

TEST(DeltaSinkTest, FiltersDecideWhatIsSeenDeliveredAndDeclaredRemoved) {
    jobs::ObjectFilters f;
    f.tables.exclude = {"secret_.*"};
    f.schemas.exclude = {"hidden"};
    const std::vector<FingerprintEntry> baseline{
        delivery::entry_of(table("main", "kept")),
        // Outside the filters: never declared removed, even though unseen.
        delivery::entry_of(table("main", "secret_pay")),
        delivery::entry_of(routine("hidden", "h", "")),
    };
    Pipeline p(baseline, {f});
    ASSERT_TRUE(p.sink.write(table("main", "kept", {"id", "changed"})));
    ASSERT_TRUE(p.sink.write(table("main", "secret_new")));
    ASSERT_TRUE(p.sink.write(routine("hidden", "h2", "")));
    const auto records = p.finish();
    EXPECT_EQ(names(records), std::vector<std::string>{"table kept"});
    ASSERT_EQ(p.seen.size(), 1u);
    EXPECT_EQ(p.seen[0].name, "kept");
    EXPECT_EQ(p.delta.removed(), 0);
}

TEST(DeltaSinkTest, ASeenCallbackErrorStopsTheRun) {
    auto filters = compile();
    delivery::ChunkWriter writer(1 << 20, [](delivery::Chunk&&) -> Status { return {}; });
    DeltaSink delta(std::nullopt, filters, writer, [](const FingerprintEntry&) -> Status {
        return fail(ErrorCode::io, "disk full");
    });
    auto st = delta.write(table("main", "a"));
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().message, "disk full");
}

TEST(FilteringSinkTest, TheObjectLimitCountsEveryKeptObject) {
    auto filters = compile();
    delivery::ChunkWriter writer(1 << 20, [](delivery::Chunk&&) -> Status { return {}; });
    DeltaSink delta(std::vector<FingerprintEntry>{delivery::entry_of(table("main", "a"))}, filters,
                    writer, nullptr);
    FilteringSink sink(filters, 2, delta);
    // Unchanged objects are not delivered but still count towards the limit.
    ASSERT_TRUE(sink.write(table("main", "a")));
    ASSERT_TRUE(sink.write(table("main", "b")));
    EXPECT_FALSE(sink.write(table("main", "c")));
    EXPECT_TRUE(sink.limit_exceeded());
    EXPECT_EQ(delta.summary().tables, 1);
}

}  // namespace
}  // namespace sa::agent::worker
