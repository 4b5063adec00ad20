#include "hub/ingest/catalog.h"

#include <set>
#include <type_traits>
#include <variant>

#include "common/crypto/digest.h"

namespace sa::hub::ingest {
namespace {

using json = nlohmann::json;
using sqlite::Statement;

constexpr const char* kEntryColumns =
    "t.app, t.source, t.database_name, t.schema_name, t.name, t.kind, t.definition, "
    "(SELECT count(*) FROM catalog_columns c WHERE c.table_id = t.id), t.job_id, "
    "t.ingested_at_ms, t.owner, t.comment, t.estimated_rows, t.estimated_bytes, "
    "t.partition_of_schema, t.partition_of_name, t.partition_bound, t.partition_key, "
    "t.fingerprint, t.id";
constexpr int kEntryColumnCount = 20;  // the next column after kEntryColumns

// ?1 app, ?2 source, ?3 table name; NULL = any.
constexpr const char* kFilter =
    " WHERE (?1 IS NULL OR t.app = ?1) AND (?2 IS NULL OR t.source = ?2) AND "
    "(?3 IS NULL OR t.name = ?3)";

// The spellings of an object name (catalog.h) as SQL, ?3 being the name.
// The slash-separated forms escape "%" and "/" in each part as
// metadata::qualified_name does; the dotted ones are raw. A routine adds
// "(signature)" to each form (escaped in the slash forms) or leaves it off.
std::string esc(const std::string& column) {
    return "replace(replace(" + column + ", '%', '%25'), '/', '%2F')";
}

std::string name_match(const std::string& a, bool routine) {
    const std::string db = a + ".database_name", schema = a + ".schema_name", name = a + ".name";
    const std::string raw_sig = routine ? " || '(' || " + a + ".signature || ')'" : "";
    const std::string esc_sig = routine ? " || '(' || " + esc(a + ".signature") + " || ')'" : "";
    const std::string slash = esc(schema) + " || '/' || " + esc(name);
    std::string forms[] = {
        name + raw_sig,
        schema + " || '.' || " + name + raw_sig,
        slash + esc_sig,
        esc(db) + " || '/' || " + slash + esc_sig,
        esc(a + ".source") + " || '/' || " + esc(db) + " || '/' || " + slash + esc_sig,
    };
    std::string out = " ?3 IN (";
    for (size_t i = 0; i < std::size(forms); ++i) out += (i ? ", " : "") + forms[i];
    out += ")";
    if (routine) out = " (" + out + " OR" + name_match(a, false) + ")";
    return out;
}

constexpr const char* kRoutineColumns =
    "r.app, r.source, r.database_name, r.schema_name, r.name, r.kind, r.signature, "
    "r.return_type, r.language, r.owner, r.comment, r.fingerprint, r.job_id, r.ingested_at_ms, "
    "r.id";

std::string dump(const json& j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

CatalogEntry read_entry(const Statement& s) {
    CatalogEntry e;
    e.app = s.text(0);
    e.source = s.text(1);
    e.database = s.text(2);
    e.schema = s.text(3);
    e.name = s.text(4);
    e.kind = s.text(5);
    e.definition = s.optional_text(6);
    e.columns = s.integer(7);
    e.job_id = s.text(8);
    e.ingested_at_ms = s.integer(9);
    e.owner = s.optional_text(10);
    e.comment = s.optional_text(11);
    e.estimated_rows = store::optional_integer(s, 12);
    e.estimated_bytes = store::optional_integer(s, 13);
    if (!s.is_null(14) || !s.is_null(15)) {
        e.partition_of = metadata::ObjectRef{s.text(14), s.text(15)};
    }
    e.partition_bound = s.optional_text(16);
    e.partition_key = s.optional_text(17);
    e.fingerprint = s.optional_text(18);
    return e;
}

CatalogRoutine read_routine(const Statement& s) {
    CatalogRoutine r;
    r.app = s.text(0);
    r.source = s.text(1);
    r.routine.database = s.text(2);
    r.routine.schema = s.text(3);
    r.routine.name = s.text(4);
    r.routine.kind = s.text(5);
    r.routine.signature = s.text(6);
    r.routine.return_type = s.optional_text(7);
    r.routine.language = s.text(8);
    r.routine.owner = s.optional_text(9);
    r.routine.comment = s.optional_text(10);
    r.fingerprint = s.optional_text(11);
    r.job_id = s.text(12);
    r.ingested_at_ms = s.integer(13);
    return r;
}

// Steps st to the end, calling row(st) for each row.
template <class F>
Status each_row(Statement& st, F&& row) {
    for (;;) {
        auto step = st.step();
        if (!step) return std::unexpected(step.error());
        if (*step == Statement::Step::done) return {};
        row(st);
    }
}

json or_null(const std::optional<std::string>& v) {
    return v ? json(*v) : json(nullptr);
}
json or_null(const std::optional<int64_t>& v) {
    return v ? json(*v) : json(nullptr);
}

std::string json_array(const std::vector<std::string>& items) {
    return dump(json(items));
}

std::string refs_json(const std::vector<metadata::ObjectRef>& refs) {
    json out = json::array();
    for (const auto& r : refs) out.push_back({{"schema", r.schema}, {"name", r.name}});
    return dump(out);
}

std::string keys_json(const std::vector<metadata::IndexKey>& keys) {
    json out = json::array();
    for (const auto& k : keys) {
        if (!k.expression.empty()) {
            out.push_back({{"expression", k.expression}});
        } else {
            out.push_back({{"column", k.column}});
        }
    }
    return dump(out);
}

// Stored JSON columns were written by this file (or the v4 migration); a
// malformed value means a damaged database, reported as an error.
Result<json> parse_stored(const std::string& text, const char* what) {
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) {
        return fail(ErrorCode::integrity, std::string("catalog: stored ") + what + " is not JSON");
    }
    return j;
}

Result<std::vector<std::string>> string_list(const std::string& text, const char* what) {
    auto j = parse_stored(text, what);
    if (!j) return std::unexpected(j.error());
    std::vector<std::string> out;
    if (!j->is_array()) return fail(ErrorCode::integrity, std::string("catalog: bad ") + what);
    for (const auto& item : *j) {
        if (!item.is_string())
            return fail(ErrorCode::integrity, std::string("catalog: bad ") + what);
        out.push_back(item.get<std::string>());
    }
    return out;
}

// The prepared statements of one replace or delta, reused for every record.
class Writer final {
  public:
    static Result<Writer> prepare(sqlite::Database& db) {
        Writer w(db);
        struct Sql {
            std::optional<Statement>* slot;
            const char* text;
        };
        const Sql all[] = {
            {&w.table_,
             "INSERT INTO catalog_tables(app, source, database_name, schema_name, name, kind, "
             "definition, job_id, ingested_at_ms, owner, comment, estimated_rows, "
             "estimated_bytes, partition_of_schema, partition_of_name, partition_bound, "
             "partition_key, inherits, fingerprint, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
             "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"},
            {&w.column_,
             "INSERT INTO catalog_columns(table_id, name, ordinal, data_type, nullable, "
             "default_value, primary_key_position, normalized_type, comment, identity, "
             "generated, generation_expression) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"},
            {&w.constraint_,
             "INSERT INTO catalog_constraints(table_id, position, name, type, columns, "
             "referenced_schema, referenced_name, referenced_columns, on_update, on_delete, "
             "definition) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"},
            {&w.index_,
             "INSERT INTO catalog_indexes(table_id, position, name, is_unique, origin, method, "
             "keys, predicate) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"},
            {&w.lineage_,
             "INSERT INTO catalog_lineage(table_id, position, referenced_schema, "
             "referenced_name) VALUES (?, ?, ?, ?)"},
            {&w.routine_,
             "INSERT INTO catalog_routines(app, source, database_name, schema_name, name, "
             "signature, kind, return_type, language, owner, comment, fingerprint, record, "
             "job_id, ingested_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"},
            {&w.find_table_,
             "SELECT id FROM catalog_tables WHERE app = ? AND source = ? AND database_name = ? "
             "AND schema_name = ? AND name = ?"},
            {&w.delete_routine_,
             "DELETE FROM catalog_routines WHERE app = ? AND source = ? AND database_name = ? "
             "AND schema_name = ? AND name = ? AND signature = ?"},
        };
        for (const auto& sql : all) {
            auto st = db.prepare(sql.text);
            if (!st) return std::unexpected(st.error());
            sql.slot->emplace(std::move(*st));
        }
        for (const char* child :
             {"catalog_columns", "catalog_constraints", "catalog_indexes", "catalog_lineage"}) {
            auto st = db.prepare(std::string("DELETE FROM ") + child + " WHERE table_id = ?");
            if (!st) return std::unexpected(st.error());
            w.delete_children_.push_back(std::move(*st));
        }
        auto st = db.prepare("DELETE FROM catalog_tables WHERE id = ?");
        if (!st) return std::unexpected(st.error());
        w.delete_table_.emplace(std::move(*st));
        return w;
    }

    // prepared holds t with its canonical JSON and fingerprint.
    Status insert(const std::string& app, const std::string& source, const metadata::Table& t,
                  const PreparedRecord& prepared, const std::string& job_id, int64_t now_ms) {
        Statement& s = *table_;
        s.reset();
        int i = 0;
        store::bind_one(s, ++i, app);
        store::bind_one(s, ++i, source);
        store::bind_one(s, ++i, t.database);
        store::bind_one(s, ++i, t.schema);
        store::bind_one(s, ++i, t.name);
        store::bind_one(s, ++i, t.kind);
        store::bind_one(s, ++i, t.definition);
        store::bind_one(s, ++i, job_id);
        store::bind_one(s, ++i, now_ms);
        store::bind_one(s, ++i, t.owner);
        store::bind_one(s, ++i, t.comment);
        store::bind_one(s, ++i, t.estimated_rows);
        store::bind_one(s, ++i, t.estimated_bytes);
        if (t.partition_of) {
            store::bind_one(s, ++i, t.partition_of->schema);
            store::bind_one(s, ++i, t.partition_of->name);
        } else {
            store::bind_one(s, ++i, std::nullopt);
            store::bind_one(s, ++i, std::nullopt);
        }
        store::bind_one(s, ++i, t.partition_bound);
        store::bind_one(s, ++i, t.partition_key);
        store::bind_one(s, ++i, refs_json(t.inherits));
        store::bind_one(s, ++i, prepared.fingerprint);
        store::bind_one(s, ++i, prepared.text);
        if (auto r = s.run(); !r) return r;
        const int64_t id = db_.last_insert_rowid();
        for (const auto& c : t.columns) {
            Statement& cs = *column_;
            cs.reset();
            int k = 0;
            store::bind_one(cs, ++k, id);
            store::bind_one(cs, ++k, c.name);
            store::bind_one(cs, ++k, c.ordinal);
            store::bind_one(cs, ++k, c.data_type);
            store::bind_one(cs, ++k, c.nullable);
            store::bind_one(cs, ++k, c.default_value);
            store::bind_one(cs, ++k, c.primary_key_position);
            store::bind_one(cs, ++k, c.normalized_type);
            store::bind_one(cs, ++k, c.comment);
            store::bind_one(cs, ++k, c.identity);
            store::bind_one(cs, ++k, c.generated);
            store::bind_one(cs, ++k, c.generation_expression);
            if (auto r = cs.run(); !r) return r;
        }
        int64_t position = 0;
        for (const auto& c : t.constraints) {
            Statement& cs = *constraint_;
            cs.reset();
            int k = 0;
            store::bind_one(cs, ++k, id);
            store::bind_one(cs, ++k, position++);
            store::bind_one(cs, ++k, c.name);
            store::bind_one(cs, ++k, c.type);
            store::bind_one(cs, ++k, json_array(c.columns));
            if (c.references) {
                store::bind_one(cs, ++k, c.references->schema);
                store::bind_one(cs, ++k, c.references->name);
            } else {
                store::bind_one(cs, ++k, std::nullopt);
                store::bind_one(cs, ++k, std::nullopt);
            }
            store::bind_one(cs, ++k, json_array(c.referenced_columns));
            store::bind_one(cs, ++k, c.on_update);
            store::bind_one(cs, ++k, c.on_delete);
            store::bind_one(cs, ++k, c.definition);
            if (auto r = cs.run(); !r) return r;
        }
        position = 0;
        for (const auto& x : t.indexes) {
            Statement& is = *index_;
            is.reset();
            int k = 0;
            store::bind_one(is, ++k, id);
            store::bind_one(is, ++k, position++);
            store::bind_one(is, ++k, x.name);
            store::bind_one(is, ++k, x.unique);
            store::bind_one(is, ++k, x.origin);
            store::bind_one(is, ++k, x.method);
            store::bind_one(is, ++k, keys_json(x.keys));
            store::bind_one(is, ++k, x.predicate);
            if (auto r = is.run(); !r) return r;
        }
        position = 0;
        for (const auto& d : t.depends_on) {
            Statement& ls = *lineage_;
            ls.reset();
            store::bind_one(ls, 1, id);
            store::bind_one(ls, 2, position++);
            store::bind_one(ls, 3, d.schema);
            store::bind_one(ls, 4, d.name);
            if (auto r = ls.run(); !r) return r;
        }
        return {};
    }

    Status insert(const std::string& app, const std::string& source, const metadata::Routine& r,
                  const PreparedRecord& prepared, const std::string& job_id, int64_t now_ms) {
        Statement& s = *routine_;
        s.reset();
        int i = 0;
        store::bind_one(s, ++i, app);
        store::bind_one(s, ++i, source);
        store::bind_one(s, ++i, r.database);
        store::bind_one(s, ++i, r.schema);
        store::bind_one(s, ++i, r.name);
        store::bind_one(s, ++i, r.signature);
        store::bind_one(s, ++i, r.kind);
        store::bind_one(s, ++i, r.return_type);
        store::bind_one(s, ++i, r.language);
        store::bind_one(s, ++i, r.owner);
        store::bind_one(s, ++i, r.comment);
        store::bind_one(s, ++i, prepared.fingerprint);
        store::bind_one(s, ++i, prepared.text);
        store::bind_one(s, ++i, job_id);
        store::bind_one(s, ++i, now_ms);
        return s.run();
    }

    // Deletes a relation and its children; absent is fine.
    Status remove_table(const std::string& app, const std::string& source,
                        const std::string& database, const std::string& schema,
                        const std::string& name) {
        Statement& f = *find_table_;
        f.reset();
        store::bind_one(f, 1, app);
        store::bind_one(f, 2, source);
        store::bind_one(f, 3, database);
        store::bind_one(f, 4, schema);
        store::bind_one(f, 5, name);
        auto step = f.step();
        if (!step) return std::unexpected(step.error());
        if (*step == Statement::Step::done) return {};
        const int64_t id = f.integer(0);
        f.reset();
        // Children first: correct whether or not foreign_keys is enabled.
        for (auto& d : delete_children_) {
            d.reset();
            store::bind_one(d, 1, id);
            if (auto r = d.run(); !r) return r;
        }
        delete_table_->reset();
        store::bind_one(*delete_table_, 1, id);
        return delete_table_->run();
    }

    Status remove_routine(const std::string& app, const std::string& source,
                          const std::string& database, const std::string& schema,
                          const std::string& name, const std::string& signature) {
        Statement& d = *delete_routine_;
        d.reset();
        store::bind_one(d, 1, app);
        store::bind_one(d, 2, source);
        store::bind_one(d, 3, database);
        store::bind_one(d, 4, schema);
        store::bind_one(d, 5, name);
        store::bind_one(d, 6, signature);
        return d.run();
    }

  private:
    explicit Writer(sqlite::Database& db) : db_(db) {}
    sqlite::Database& db_;
    std::optional<Statement> table_, column_, constraint_, index_, lineage_, routine_;
    std::optional<Statement> find_table_, delete_routine_, delete_table_;
    std::vector<Statement> delete_children_;
};

// Refuses two records for one object.
Status check_unique(const std::string& source, const std::vector<PreparedRecord>& records) {
    std::set<std::string> seen;
    for (const auto& r : records) {
        std::string key = object_key(source, r.record);
        if (!seen.insert(key).second) {
            return fail(ErrorCode::invalid_argument, key + " is delivered more than once");
        }
    }
    return {};
}

// Finds the relations of (app?, source) that object names (catalog.h).
Result<std::vector<std::pair<int64_t, CatalogEntry>>> find_tables(
    sqlite::Database& db, const std::optional<std::string>& app, const std::string& source,
    const std::string& object) {
    auto st = store::prepare(db,
                             std::string("SELECT ") + kEntryColumns +
                                 " FROM catalog_tables t WHERE (?1 IS NULL OR t.app = ?1) AND "
                                 "t.source = ?2 AND" +
                                 name_match("t", false) +
                                 " ORDER BY t.app, t.database_name, "
                                 "t.schema_name, t.name",
                             app, source, object);
    if (!st) return std::unexpected(st.error());
    std::vector<std::pair<int64_t, CatalogEntry>> out;
    auto s = each_row(*st, [&](const Statement& row) {
        out.emplace_back(row.integer(kEntryColumnCount - 1), read_entry(row));
    });
    if (!s) return std::unexpected(s.error());
    return out;
}

Result<std::vector<std::pair<int64_t, CatalogRoutine>>> find_routines(
    sqlite::Database& db, const std::optional<std::string>& app, const std::string& source,
    const std::string& object) {
    auto st = store::prepare(db,
                             std::string("SELECT ") + kRoutineColumns +
                                 " FROM catalog_routines r WHERE (?1 IS NULL OR r.app = ?1) AND "
                                 "r.source = ?2 AND" +
                                 name_match("r", true) +
                                 " ORDER BY r.app, r.database_name, r.schema_name, r.name, "
                                 "r.signature",
                             app, source, object);
    if (!st) return std::unexpected(st.error());
    std::vector<std::pair<int64_t, CatalogRoutine>> out;
    auto s = each_row(
        *st, [&](const Statement& row) { out.emplace_back(row.integer(14), read_routine(row)); });
    if (!s) return std::unexpected(s.error());
    return out;
}

Result<bool> source_known(sqlite::Database& db, const std::optional<std::string>& app,
                          const std::string& source) {
    auto st = store::prepare(
        db,
        "SELECT EXISTS (SELECT 1 FROM catalog_tables WHERE (?1 IS NULL OR app = ?1) AND "
        "source = ?2) OR EXISTS (SELECT 1 FROM catalog_routines WHERE (?1 IS NULL OR app = ?1) "
        "AND source = ?2) OR EXISTS (SELECT 1 FROM jobs WHERE (?1 IS NULL OR app = ?1) AND "
        "source = ?2 AND operation = 'extract_metadata' AND status = 'succeeded')",
        app, source);
    if (!st) return std::unexpected(st.error());
    auto step = st->step();
    if (!step) return std::unexpected(step.error());
    return st->integer(0) != 0;
}

Error unknown_source(const std::string& source) {
    return Error{ErrorCode::not_found, "no metadata has been delivered for source '" + source +
                                           "' (run an extract_metadata job first)"};
}

// Picks the one match, or explains why there is none or several.
template <class T, class Name>
Result<T> the_one(sqlite::Database& db, std::vector<T> matches,
                  const std::optional<std::string>& app, const std::string& source,
                  const std::string& object, const char* what, Name qualified) {
    if (matches.size() == 1) return std::move(matches.front());
    if (matches.empty()) {
        auto known = source_known(db, app, source);
        if (!known) return std::unexpected(known.error());
        if (!*known) return std::unexpected(unknown_source(source));
        return fail(ErrorCode::not_found,
                    std::string("no ") + what + " '" + object + "' in source '" + source + "'");
    }
    // The fully qualified spelling wins over a shorter one that also fits.
    std::vector<T> exact;
    for (auto& m : matches) {
        if (qualified(m) == object) exact.push_back(m);
    }
    if (exact.size() == 1) return std::move(exact.front());
    std::string names;
    for (size_t i = 0; i < matches.size() && i < 10; ++i) {
        names += (i ? ", " : "") + qualified(matches[i]);
    }
    if (matches.size() > 10) names += ", ...";
    return fail(ErrorCode::invalid_argument, "'" + object + "' names " +
                                                 std::to_string(matches.size()) +
                                                 " objects in source '" + source + "': " + names +
                                                 "; give SCHEMA.NAME or DATABASE/SCHEMA/NAME");
}

// Rebuilds a relation from its rows.
Result<metadata::Table> load_table(sqlite::Database& db, int64_t id, const CatalogEntry& e) {
    metadata::Table t;
    t.database = e.database;
    t.schema = e.schema;
    t.name = e.name;
    t.kind = e.kind;
    t.owner = e.owner;
    t.comment = e.comment;
    t.estimated_rows = e.estimated_rows;
    t.estimated_bytes = e.estimated_bytes;
    t.definition = e.definition;
    t.partition_of = e.partition_of;
    t.partition_bound = e.partition_bound;
    t.partition_key = e.partition_key;
    {
        auto st = store::prepare(db, "SELECT inherits FROM catalog_tables WHERE id = ?", id);
        if (!st) return std::unexpected(st.error());
        auto step = st->step();
        if (!step) return std::unexpected(step.error());
        auto refs = parse_stored(st->text(0), "inherits");
        if (!refs) return std::unexpected(refs.error());
        for (const auto& r : *refs) {
            t.inherits.push_back(
                {r.value("schema", std::string()), r.value("name", std::string())});
        }
    }
    auto columns = store::prepare(
        db,
        "SELECT name, ordinal, data_type, normalized_type, nullable, default_value, comment, "
        "identity, generated, generation_expression, primary_key_position FROM "
        "catalog_columns WHERE table_id = ? ORDER BY ordinal",
        id);
    if (!columns) return std::unexpected(columns.error());
    auto s = each_row(*columns, [&](const Statement& r) {
        t.columns.push_back(metadata::Column{
            r.text(0), r.integer(1), r.text(2), r.text(3), r.integer(4) != 0, r.optional_text(5),
            r.optional_text(6), r.text(7), r.text(8), r.optional_text(9), r.integer(10)});
    });
    if (!s) return std::unexpected(s.error());

    auto constraints = store::prepare(
        db,
        "SELECT name, type, columns, referenced_schema, referenced_name, referenced_columns, "
        "on_update, on_delete, definition FROM catalog_constraints WHERE table_id = ? "
        "ORDER BY position",
        id);
    if (!constraints) return std::unexpected(constraints.error());
    std::optional<Error> bad;
    s = each_row(*constraints, [&](const Statement& r) {
        metadata::Constraint c;
        c.name = r.text(0);
        c.type = r.text(1);
        auto cols = string_list(r.text(2), "constraint columns");
        auto refcols = string_list(r.text(5), "constraint referenced_columns");
        if (!cols || !refcols) {
            bad = cols ? refcols.error() : cols.error();
            return;
        }
        c.columns = std::move(*cols);
        if (!r.is_null(3)) c.references = metadata::ObjectRef{r.text(3), r.text(4)};
        c.referenced_columns = std::move(*refcols);
        c.on_update = r.text(6);
        c.on_delete = r.text(7);
        c.definition = r.optional_text(8);
        t.constraints.push_back(std::move(c));
    });
    if (!s) return std::unexpected(s.error());
    if (bad) return std::unexpected(*bad);

    auto indexes = store::prepare(
        db,
        "SELECT name, is_unique, origin, method, keys, predicate FROM catalog_indexes WHERE "
        "table_id = ? ORDER BY position",
        id);
    if (!indexes) return std::unexpected(indexes.error());
    s = each_row(*indexes, [&](const Statement& r) {
        metadata::Index x;
        x.name = r.text(0);
        x.unique = r.integer(1) != 0;
        x.origin = r.text(2);
        x.method = r.text(3);
        auto keys = parse_stored(r.text(4), "index keys");
        if (!keys || !keys->is_array()) {
            bad = Error{ErrorCode::integrity, "catalog: bad index keys"};
            return;
        }
        for (const auto& k : *keys) {
            x.keys.push_back(
                {k.value("column", std::string()), k.value("expression", std::string())});
        }
        x.predicate = r.optional_text(5);
        t.indexes.push_back(std::move(x));
    });
    if (!s) return std::unexpected(s.error());
    if (bad) return std::unexpected(*bad);

    auto lineage = store::prepare(db,
                                  "SELECT referenced_schema, referenced_name FROM catalog_lineage "
                                  "WHERE table_id = ? ORDER BY position",
                                  id);
    if (!lineage) return std::unexpected(lineage.error());
    s = each_row(*lineage, [&](const Statement& r) {
        t.depends_on.push_back({r.text(0), r.text(1)});
    });
    if (!s) return std::unexpected(s.error());
    return t;
}

using TableMatch = std::pair<int64_t, CatalogEntry>;
using RoutineMatch = std::pair<int64_t, CatalogRoutine>;

Result<TableMatch> resolve_table(sqlite::Database& db, const std::optional<std::string>& app,
                                 const std::string& source, const std::string& relation) {
    auto found = find_tables(db, app, source, relation);
    if (!found) return std::unexpected(found.error());
    return the_one(db, std::move(*found), app, source, relation, "table or view",
                   [](const TableMatch& m) { return m.second.qualified_name(); });
}

}  // namespace

std::string CatalogEntry::qualified_name() const {
    metadata::Table t;
    t.database = database;
    t.schema = schema;
    t.name = name;
    return metadata::qualified_name(source, t);
}

std::string CatalogRoutine::qualified_name() const {
    return metadata::qualified_name(source, routine);
}

std::string object_key(const std::string& source, const metadata::Record& record) {
    if (const auto* t = std::get_if<metadata::Table>(&record)) {
        return "table " + metadata::qualified_name(source, *t);
    }
    if (const auto* r = std::get_if<metadata::Routine>(&record)) {
        return "routine " + metadata::qualified_name(source, *r);
    }
    const auto& x = std::get<metadata::Removal>(record);
    return (x.object == "routine" ? "routine " : "table ") + metadata::qualified_name(source, x);
}

json to_json(const CatalogEntry& e) {
    json partition_of = nullptr;
    if (e.partition_of) {
        partition_of = {{"schema", e.partition_of->schema}, {"name", e.partition_of->name}};
    }
    return {
        {"app", e.app},
        {"source", e.source},
        {"database", e.database},
        {"schema", e.schema},
        {"name", e.name},
        {"qualified_name", e.qualified_name()},
        {"kind", e.kind},
        {"columns", e.columns},
        {"definition", or_null(e.definition)},
        {"owner", or_null(e.owner)},
        {"comment", or_null(e.comment)},
        {"estimated_rows", or_null(e.estimated_rows)},
        {"estimated_bytes", or_null(e.estimated_bytes)},
        {"partition_of", partition_of},
        {"partition_bound", or_null(e.partition_bound)},
        {"partition_key", or_null(e.partition_key)},
        {"fingerprint", or_null(e.fingerprint)},
        {"job_id", e.job_id},
        {"ingested_at_ms", e.ingested_at_ms},
    };
}

json to_json(const CatalogColumn& c) {
    const metadata::Column& col = c.column;
    return {{"table", c.table.qualified_name()},
            {"name", col.name},
            {"ordinal", col.ordinal},
            {"data_type", col.data_type},
            {"normalized_type", col.normalized_type},
            {"nullable", col.nullable},
            {"default", or_null(col.default_value)},
            {"comment", or_null(col.comment)},
            {"identity", col.identity},
            {"generated", col.generated},
            {"generation_expression", or_null(col.generation_expression)},
            {"primary_key_position", col.primary_key_position}};
}

json to_json(const CatalogRoutine& r) {
    const metadata::Routine& x = r.routine;
    return {{"app", r.app},
            {"source", r.source},
            {"database", x.database},
            {"schema", x.schema},
            {"name", x.name},
            {"signature", x.signature},
            {"qualified_name", r.qualified_name()},
            {"kind", x.kind},
            {"return_type", or_null(x.return_type)},
            {"language", x.language},
            {"owner", or_null(x.owner)},
            {"comment", or_null(x.comment)},
            {"fingerprint", or_null(r.fingerprint)},
            {"job_id", r.job_id},
            {"ingested_at_ms", r.ingested_at_ms}};
}

json to_json(const Lineage& l) {
    json reads = json::array();
    for (const auto& r : l.reads) {
        reads.push_back(
            {{"schema", r.ref.schema}, {"name", r.ref.name}, {"kind", or_null(r.kind)}});
    }
    json read_by = json::array();
    for (const auto& e : l.read_by) read_by.push_back(to_json(e));
    return {{"object", to_json(l.object)}, {"reads", reads}, {"read_by", read_by}};
}

Result<std::vector<CatalogEntry>> Catalog::tables(const CatalogFilter& filter) {
    return store_.with([&](sqlite::Database& db) -> Result<std::vector<CatalogEntry>> {
        auto st = store::prepare(db,
                                 std::string("SELECT ") + kEntryColumns + " FROM catalog_tables t" +
                                     kFilter +
                                     " ORDER BY t.app, t.source, t.database_name, "
                                     "t.schema_name, t.name",
                                 filter.app, filter.source, filter.table);
        if (!st) return std::unexpected(st.error());
        std::vector<CatalogEntry> out;
        auto s = each_row(*st, [&](const Statement& row) { out.push_back(read_entry(row)); });
        if (!s) return std::unexpected(s.error());
        return out;
    });
}

Result<std::vector<CatalogColumn>> Catalog::columns(const CatalogFilter& filter) {
    return store_.with([&](sqlite::Database& db) -> Result<std::vector<CatalogColumn>> {
        auto st = store::prepare(
            db,
            std::string("SELECT ") + kEntryColumns +
                ", c.name, c.ordinal, c.data_type, c.nullable, c.default_value, "
                "c.primary_key_position, c.normalized_type, c.comment, c.identity, c.generated, "
                "c.generation_expression FROM catalog_tables t JOIN catalog_columns c ON "
                "c.table_id = t.id" +
                kFilter +
                " ORDER BY t.app, t.source, t.database_name, t.schema_name, t.name, c.ordinal",
            filter.app, filter.source, filter.table);
        if (!st) return std::unexpected(st.error());
        std::vector<CatalogColumn> out;
        auto s = each_row(*st, [&](const Statement& row) {
            const int k = kEntryColumnCount;
            metadata::Column c;
            c.name = row.text(k);
            c.ordinal = row.integer(k + 1);
            c.data_type = row.text(k + 2);
            c.nullable = row.integer(k + 3) != 0;
            c.default_value = row.optional_text(k + 4);
            c.primary_key_position = row.integer(k + 5);
            c.normalized_type = row.text(k + 6);
            c.comment = row.optional_text(k + 7);
            c.identity = row.text(k + 8);
            c.generated = row.text(k + 9);
            c.generation_expression = row.optional_text(k + 10);
            out.push_back(CatalogColumn{read_entry(row), std::move(c)});
        });
        if (!s) return std::unexpected(s.error());
        return out;
    });
}

Result<std::vector<CatalogRoutine>> Catalog::routines(const CatalogFilter& filter) {
    return store_.with([&](sqlite::Database& db) -> Result<std::vector<CatalogRoutine>> {
        auto st = store::prepare(
            db,
            std::string("SELECT ") + kRoutineColumns +
                " FROM catalog_routines r WHERE (?1 IS NULL OR r.app = ?1) AND (?2 IS NULL OR "
                "r.source = ?2) AND (?3 IS NULL OR r.name = ?3) ORDER BY r.app, r.source, "
                "r.database_name, r.schema_name, r.name, r.signature",
            filter.app, filter.source, filter.table);
        if (!st) return std::unexpected(st.error());
        std::vector<CatalogRoutine> out;
        auto s = each_row(*st, [&](const Statement& row) { out.push_back(read_routine(row)); });
        if (!s) return std::unexpected(s.error());
        return out;
    });
}

Result<bool> Catalog::has_source(const std::optional<std::string>& app, const std::string& source) {
    return store_.with(
        [&](sqlite::Database& db) -> Result<bool> { return source_known(db, app, source); });
}

Result<Lineage> Catalog::lineage(const std::optional<std::string>& app, const std::string& source,
                                 const std::string& relation) {
    return store_.with([&](sqlite::Database& db) -> Result<Lineage> {
        auto found = resolve_table(db, app, source, relation);
        if (!found) return std::unexpected(found.error());
        Lineage out;
        out.object = std::move(found->second);
        const CatalogEntry& o = out.object;
        auto reads = store::prepare(
            db,
            "SELECT l.referenced_schema, l.referenced_name, (SELECT t.kind FROM catalog_tables "
            "t WHERE t.app = ?2 AND t.source = ?3 AND t.database_name = ?4 AND t.schema_name = "
            "l.referenced_schema AND t.name = l.referenced_name) FROM catalog_lineage l WHERE "
            "l.table_id = ?1 ORDER BY l.position",
            found->first, o.app, o.source, o.database);
        if (!reads) return std::unexpected(reads.error());
        auto s = each_row(*reads, [&](const Statement& r) {
            out.reads.push_back(LineageRef{{r.text(0), r.text(1)}, r.optional_text(2)});
        });
        if (!s) return std::unexpected(s.error());
        auto read_by = store::prepare(
            db,
            std::string("SELECT ") + kEntryColumns +
                " FROM catalog_lineage l JOIN catalog_tables t ON t.id = l.table_id WHERE "
                "l.referenced_schema = ?1 AND l.referenced_name = ?2 AND t.app = ?3 AND "
                "t.source = ?4 AND t.database_name = ?5 GROUP BY t.id ORDER BY t.schema_name, "
                "t.name",
            o.schema, o.name, o.app, o.source, o.database);
        if (!read_by) return std::unexpected(read_by.error());
        s = each_row(*read_by, [&](const Statement& r) { out.read_by.push_back(read_entry(r)); });
        if (!s) return std::unexpected(s.error());
        return out;
    });
}

Result<json> Catalog::record(const std::optional<std::string>& app, const std::string& source,
                             const std::string& object) {
    return store_.with([&](sqlite::Database& db) -> Result<json> {
        auto tables = find_tables(db, app, source, object);
        if (!tables) return std::unexpected(tables.error());
        auto routines = find_routines(db, app, source, object);
        if (!routines) return std::unexpected(routines.error());
        // One list of candidates across both kinds, for the same ambiguity rule.
        using Match = std::variant<TableMatch, RoutineMatch>;
        std::vector<Match> all;
        for (auto& t : *tables) all.emplace_back(std::move(t));
        for (auto& r : *routines) all.emplace_back(std::move(r));
        auto one = the_one(db, std::move(all), app, source, object, "object", [](const Match& m) {
            return std::visit([](const auto& x) { return x.second.qualified_name(); }, m);
        });
        if (!one) return std::unexpected(one.error());
        const bool is_table = std::holds_alternative<TableMatch>(*one);
        const int64_t id = std::visit([](const auto& x) { return x.first; }, *one);
        auto st = store::prepare(db,
                                 is_table ? "SELECT record FROM catalog_tables WHERE id = ?"
                                          : "SELECT record FROM catalog_routines WHERE id = ?",
                                 id);
        if (!st) return std::unexpected(st.error());
        auto step = st->step();
        if (!step) return std::unexpected(step.error());
        if (!st->is_null(0)) return parse_stored(st->text(0), "record");
        if (!is_table) return fail(ErrorCode::integrity, "catalog: routine without its record");
        // Converted from schema version 3: rebuild it from the rows.
        auto table = load_table(db, id, std::get<TableMatch>(*one).second);
        if (!table) return std::unexpected(table.error());
        return metadata::to_json(*table);
    });
}

Result<metadata::Table> Catalog::relation(const std::optional<std::string>& app,
                                          const std::string& source, const std::string& relation) {
    return store_.with([&](sqlite::Database& db) -> Result<metadata::Table> {
        auto found = resolve_table(db, app, source, relation);
        if (!found) return std::unexpected(found.error());
        return load_table(db, found->first, found->second);
    });
}

Status replace_catalog(sqlite::Database& db, const std::string& app, const std::string& source,
                       const std::vector<PreparedRecord>& records, const std::string& job_id,
                       int64_t now_ms) {
    if (auto s = check_unique(source, records); !s) return s;
    for (const auto& r : records) {
        if (std::holds_alternative<metadata::Removal>(r.record)) {
            return fail(ErrorCode::invalid_argument, "a full extraction cannot carry a removal (" +
                                                         object_key(source, r.record) +
                                                         "): removals belong to incremental runs");
        }
    }
    // Children first: correct whether or not foreign_keys is enabled.
    for (const char* child :
         {"catalog_columns", "catalog_constraints", "catalog_indexes", "catalog_lineage"}) {
        if (auto s = store::execute(db,
                                    std::string("DELETE FROM ") + child +
                                        " WHERE table_id IN (SELECT id FROM catalog_tables "
                                        "WHERE app = ? AND source = ?)",
                                    app, source);
            !s) {
            return s;
        }
    }
    for (const char* parent : {"catalog_tables", "catalog_routines"}) {
        if (auto s = store::execute(
                db, std::string("DELETE FROM ") + parent + " WHERE app = ? AND source = ?", app,
                source);
            !s) {
            return s;
        }
    }
    auto writer = Writer::prepare(db);
    if (!writer) return std::unexpected(writer.error());
    for (const auto& r : records) {
        Status s = std::visit(
            [&](const auto& x) -> Status {
                using T = std::decay_t<decltype(x)>;
                if constexpr (std::is_same_v<T, metadata::Removal>) {
                    return {};  // refused above
                } else {
                    return writer->insert(app, source, x, r, job_id, now_ms);
                }
            },
            r.record);
        if (!s) return s;
    }
    return {};
}

Status apply_catalog_delta(sqlite::Database& db, const std::string& app, const std::string& source,
                           const std::vector<PreparedRecord>& changed_and_removed,
                           const std::string& job_id, int64_t now_ms) {
    if (auto s = check_unique(source, changed_and_removed); !s) return s;
    auto writer = Writer::prepare(db);
    if (!writer) return std::unexpected(writer.error());
    for (const auto& prepared : changed_and_removed) {
        const metadata::Record& r = prepared.record;
        Status s;
        if (const auto* t = std::get_if<metadata::Table>(&r)) {
            s = writer->remove_table(app, source, t->database, t->schema, t->name);
            if (s) s = writer->insert(app, source, *t, prepared, job_id, now_ms);
        } else if (const auto* rt = std::get_if<metadata::Routine>(&r)) {
            s = writer->remove_routine(app, source, rt->database, rt->schema, rt->name,
                                       rt->signature);
            if (s) s = writer->insert(app, source, *rt, prepared, job_id, now_ms);
        } else {
            const auto& x = std::get<metadata::Removal>(r);
            if (x.object == "routine") {
                s = writer->remove_routine(app, source, x.database, x.schema, x.name, x.signature);
            } else if (x.object == "table") {
                s = writer->remove_table(app, source, x.database, x.schema, x.name);
            } else {
                return fail(ErrorCode::invalid_argument,
                            "removal of an unknown object type '" + x.object.substr(0, 32) + "'");
            }
        }
        if (!s) return s;
    }
    return {};
}

}  // namespace sa::hub::ingest
