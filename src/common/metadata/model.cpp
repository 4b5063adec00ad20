#include "common/metadata/model.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <initializer_list>
#include <limits>
#include <set>

#include "common/crypto/digest.h"

namespace sa::metadata {

using nlohmann::json;

namespace {

constexpr size_t kMaxName = 1024;
constexpr size_t kMaxText = 1 << 20;
constexpr int64_t kMaxOrdinal = 1 << 20;

constexpr std::array<std::string_view, 6> kRelationKinds = {
    kind::kTable,     kind::kView,         kind::kMaterializedView, kind::kPartitionedTable,
    kind::kPartition, kind::kForeignTable,
};
constexpr std::array<std::string_view, 19> kNormalizedTypes = {
    type::kBoolean,  type::kInteger,  type::kDecimal, type::kFloat,     type::kString,
    type::kBinary,   type::kDate,     type::kTime,    type::kTimestamp, type::kTimestampTz,
    type::kInterval, type::kJson,     type::kUuid,    type::kXml,       type::kArray,
    type::kEnum,     type::kGeometry, type::kNetwork, type::kOther,
};

bool one_of(std::string_view value, std::initializer_list<std::string_view> allowed) {
    return std::find(allowed.begin(), allowed.end(), value) != allowed.end();
}

json opt(const std::optional<std::string>& v) {
    return v ? json(*v) : json(nullptr);
}
json opt(const std::optional<int64_t>& v) {
    return v ? json(*v) : json(nullptr);
}
json ref_json(const ObjectRef& r) {
    return {{"schema", r.schema}, {"name", r.name}};
}
json opt(const std::optional<ObjectRef>& v) {
    return v ? ref_json(*v) : json(nullptr);
}
json refs_json(const std::vector<ObjectRef>& refs) {
    json out = json::array();
    for (const auto& r : refs) out.push_back(ref_json(r));
    return out;
}

Error invalid(std::string message) {
    return Error{ErrorCode::invalid_argument, std::move(message)};
}

// Field readers that record the JSON path of the first problem. Every key
// of an object must be one the reader asked for (check_no_unknown_keys):
// a misspelt field is an error, not silently dropped data.
class Reader {
  public:
    Reader(const json& j, std::string path) : j_(j), path_(std::move(path)) {}

    Status object() const {
        if (!j_.is_object()) return std::unexpected(invalid(where() + "expected object"));
        return {};
    }
    Result<std::string> string(const char* key, size_t max = kMaxName,
                               bool allow_empty = false) const {
        mark(key);
        auto it = j_.find(key);
        if (it == j_.end() || !it->is_string())
            return std::unexpected(invalid(where(key) + "expected string"));
        const auto& s = it->get_ref<const std::string&>();
        if (s.size() > max) return std::unexpected(invalid(where(key) + "too long"));
        if (s.empty() && !allow_empty)
            return std::unexpected(invalid(where(key) + "must not be empty"));
        return s;
    }
    // A string from a fixed set; absent means fallback when one is given.
    Result<std::string> choice(const char* key, std::initializer_list<std::string_view> allowed,
                               std::optional<std::string_view> fallback = std::nullopt) const {
        if (fallback && !j_.contains(key)) {
            mark(key);
            return std::string(*fallback);
        }
        auto s = string(key, kMaxName, true);
        if (!s) return s;
        if (!one_of(*s, allowed)) {
            std::string names;
            for (auto a : allowed)
                names += std::string(names.empty() ? "" : ", ") + "\"" + std::string(a) + "\"";
            return std::unexpected(invalid(where(key) + "must be one of " + names));
        }
        return s;
    }
    // Absent and null both read as "not set".
    Result<std::optional<std::string>> optional_string(const char* key,
                                                       size_t max = kMaxText) const {
        mark(key);
        auto it = j_.find(key);
        if (it == j_.end() || it->is_null()) return std::optional<std::string>();
        if (!it->is_string())
            return std::unexpected(invalid(where(key) + "expected string or null"));
        if (it->get_ref<const std::string&>().size() > max)
            return std::unexpected(invalid(where(key) + "too long"));
        return std::optional<std::string>(it->get<std::string>());
    }
    Result<int64_t> integer(const char* key, int64_t min, int64_t max) const {
        mark(key);
        auto it = j_.find(key);
        if (it == j_.end() || !it->is_number_integer())
            return std::unexpected(invalid(where(key) + "expected integer"));
        if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(max))
            return std::unexpected(invalid(where(key) + "out of range"));
        int64_t v = it->get<int64_t>();
        if (v < min || v > max) return std::unexpected(invalid(where(key) + "out of range"));
        return v;
    }
    Result<std::optional<int64_t>> optional_integer(const char* key, int64_t min,
                                                    int64_t max) const {
        auto it = j_.find(key);
        if (it == j_.end() || it->is_null()) {
            mark(key);
            return std::optional<int64_t>();
        }
        auto v = integer(key, min, max);
        if (!v) return std::unexpected(v.error());
        return std::optional<int64_t>(*v);
    }
    Result<bool> boolean(const char* key) const {
        mark(key);
        auto it = j_.find(key);
        if (it == j_.end() || !it->is_boolean())
            return std::unexpected(invalid(where(key) + "expected boolean"));
        return it->get<bool>();
    }
    // Absent reads as an empty array when optional.
    Result<const json*> array(const char* key, bool optional = false) const {
        mark(key);
        static const json kEmpty = json::array();
        auto it = j_.find(key);
        if (optional && it == j_.end()) return &kEmpty;
        if (it == j_.end() || !it->is_array())
            return std::unexpected(invalid(where(key) + "expected array"));
        return &*it;
    }
    Result<std::vector<std::string>> string_array(const char* key, bool allow_empty_items,
                                                  bool optional = false) const {
        auto arr = array(key, optional);
        if (!arr) return std::unexpected(arr.error());
        std::vector<std::string> out;
        for (size_t i = 0; i < (*arr)->size(); ++i) {
            const json& e = (**arr)[i];
            const std::string at = where(key, i);
            if (!e.is_string()) return std::unexpected(invalid(at + "expected string"));
            const auto& s = e.get_ref<const std::string&>();
            if (s.size() > kMaxName) return std::unexpected(invalid(at + "too long"));
            if (s.empty() && !allow_empty_items)
                return std::unexpected(invalid(at + "must not be empty"));
            out.push_back(s);
        }
        return out;
    }
    Status check_no_unknown_keys() const {
        for (const auto& [key, value] : j_.items()) {
            if (!was_read(key)) {
                return std::unexpected(invalid(where(key.c_str()) + "unknown field"));
            }
        }
        return {};
    }
    bool has(const char* key) const { return j_.contains(key); }
    // The value under key (nullptr when absent), marked as read.
    const json* find(const char* key) const {
        mark(key);
        auto it = j_.find(key);
        return it == j_.end() ? nullptr : &*it;
    }
    std::string child(const char* key) const { return prefix() + key; }
    std::string child(const char* key, size_t i) const {
        return prefix() + key + "[" + std::to_string(i) + "]";
    }
    std::string where(const char* key = nullptr) const {
        std::string p = key ? prefix() + key : path_;
        return p.empty() ? "" : p + ": ";
    }
    std::string where(const char* key, size_t i) const { return child(key, i) + ": "; }

  private:
    std::string prefix() const { return path_.empty() ? "" : path_ + "."; }
    const json& j_;
    std::string path_;
    // The keys asked for: string literals, a handful per object, so a flat
    // list beats a set (parsing a large catalog reads millions of fields).
    void mark(std::string_view key) const { seen_.push_back(key); }
    bool was_read(std::string_view key) const {
        return std::find(seen_.begin(), seen_.end(), key) != seen_.end();
    }
    mutable std::vector<std::string_view> seen_;
};

#define SA_TRY_ASSIGN(lhs, expr)                               \
    do {                                                       \
        auto sa_tmp_ = (expr);                                 \
        if (!sa_tmp_) return std::unexpected(sa_tmp_.error()); \
        lhs = std::move(*sa_tmp_);                             \
    } while (0)

#define SA_TRY(expr)                                           \
    do {                                                       \
        auto sa_tmp_ = (expr);                                 \
        if (!sa_tmp_) return std::unexpected(sa_tmp_.error()); \
    } while (0)

Result<ObjectRef> ref_from_json(const json& j, const std::string& path) {
    Reader r(j, path);
    SA_TRY(r.object());
    ObjectRef ref;
    SA_TRY_ASSIGN(ref.schema, r.string("schema"));
    SA_TRY_ASSIGN(ref.name, r.string("name"));
    SA_TRY(r.check_no_unknown_keys());
    return ref;
}

Result<std::optional<ObjectRef>> optional_ref(const Reader& r, const char* key) {
    const json* it = r.find(key);
    if (it == nullptr || it->is_null()) return std::optional<ObjectRef>();
    if (!it->is_object()) return std::unexpected(invalid(r.where(key) + "expected object or null"));
    auto ref = ref_from_json(*it, r.child(key));
    if (!ref) return std::unexpected(ref.error());
    return std::optional<ObjectRef>(std::move(*ref));
}

Result<std::vector<ObjectRef>> refs_from_json(const Reader& r, const char* key) {
    auto arr = r.array(key, true);
    if (!arr) return std::unexpected(arr.error());
    std::vector<ObjectRef> out;
    for (size_t i = 0; i < (*arr)->size(); ++i) {
        auto ref = ref_from_json((**arr)[i], r.child(key, i));
        if (!ref) return std::unexpected(ref.error());
        out.push_back(std::move(*ref));
    }
    return out;
}

Result<Column> column_from_json(const json& j, const std::string& path) {
    Reader r(j, path);
    SA_TRY(r.object());
    Column c;
    SA_TRY_ASSIGN(c.name, r.string("name"));
    SA_TRY_ASSIGN(c.ordinal, r.integer("ordinal", 1, kMaxOrdinal));
    SA_TRY_ASSIGN(c.data_type, r.string("data_type", kMaxName, true));
    SA_TRY_ASSIGN(c.normalized_type, r.string("normalized_type"));
    if (!is_normalized_type(c.normalized_type))
        return std::unexpected(invalid(r.where("normalized_type") + "unknown type family \"" +
                                       c.normalized_type + "\""));
    SA_TRY_ASSIGN(c.nullable, r.boolean("nullable"));
    SA_TRY_ASSIGN(c.default_value, r.optional_string("default"));
    SA_TRY_ASSIGN(c.comment, r.optional_string("comment"));
    SA_TRY_ASSIGN(c.identity, r.choice("identity", {"", "always", "by_default"}, ""));
    SA_TRY_ASSIGN(c.generated, r.choice("generated", {"", "stored", "virtual"}, ""));
    SA_TRY_ASSIGN(c.generation_expression, r.optional_string("generation_expression"));
    if (c.generation_expression && c.generated.empty())
        return std::unexpected(
            invalid(r.where("generation_expression") + "set on a column that is not generated"));
    SA_TRY_ASSIGN(c.primary_key_position, r.integer("primary_key_position", 0, kMaxOrdinal));
    SA_TRY(r.check_no_unknown_keys());
    return c;
}

Result<Constraint> constraint_from_json(const json& j, const std::string& path) {
    Reader r(j, path);
    SA_TRY(r.object());
    Constraint c;
    SA_TRY_ASSIGN(c.name, r.string("name", kMaxName, true));
    SA_TRY_ASSIGN(c.type, r.choice("type", {"primary_key", "unique", "foreign_key", "check"}));
    SA_TRY_ASSIGN(c.columns, r.string_array("columns", false));
    SA_TRY_ASSIGN(c.references, optional_ref(r, "references"));
    SA_TRY_ASSIGN(c.referenced_columns, r.string_array("referenced_columns", true, true));
    SA_TRY_ASSIGN(c.on_update, r.string("on_update", kMaxName, true));
    SA_TRY_ASSIGN(c.on_delete, r.string("on_delete", kMaxName, true));
    SA_TRY_ASSIGN(c.definition, r.optional_string("definition"));
    SA_TRY(r.check_no_unknown_keys());
    const bool foreign = c.type == "foreign_key";
    if (foreign) {
        if (!c.references)
            return std::unexpected(invalid(r.where("references") + "required for a foreign_key"));
        if (c.columns.empty())
            return std::unexpected(invalid(r.where("columns") + "empty for a foreign_key"));
        if (c.columns.size() != c.referenced_columns.size())
            return std::unexpected(
                invalid(path + ": columns and referenced_columns differ in length"));
    } else if (c.references || !c.referenced_columns.empty() || !c.on_update.empty() ||
               !c.on_delete.empty()) {
        return std::unexpected(
            invalid(path + ": references and actions belong to foreign keys only"));
    }
    if ((c.type == "primary_key" || c.type == "unique") && c.columns.empty())
        return std::unexpected(invalid(r.where("columns") + "empty for a " + c.type));
    if (c.type == "check" && !c.definition)
        return std::unexpected(invalid(r.where("definition") + "required for a check"));
    return c;
}

Result<Index> index_from_json(const json& j, const std::string& path) {
    Reader r(j, path);
    SA_TRY(r.object());
    Index x;
    SA_TRY_ASSIGN(x.name, r.string("name"));
    SA_TRY_ASSIGN(x.unique, r.boolean("unique"));
    SA_TRY_ASSIGN(x.origin,
                  r.choice("origin", {"create_index", "primary_key", "unique_constraint"}));
    SA_TRY_ASSIGN(x.method, r.string("method", kMaxName, true));
    SA_TRY_ASSIGN(x.predicate, r.optional_string("predicate"));
    const json* keys = nullptr;
    SA_TRY_ASSIGN(keys, r.array("keys"));
    if (keys->empty()) return std::unexpected(invalid(r.where("keys") + "must not be empty"));
    for (size_t i = 0; i < keys->size(); ++i) {
        Reader k((*keys)[i], r.child("keys", i));
        SA_TRY(k.object());
        IndexKey key;
        const bool has_column = k.has("column");
        if (has_column == k.has("expression"))
            return std::unexpected(invalid(k.where() + "needs exactly one of column, expression"));
        if (has_column) {
            SA_TRY_ASSIGN(key.column, k.string("column"));
        } else {
            SA_TRY_ASSIGN(key.expression, k.string("expression", kMaxText));
        }
        SA_TRY(k.check_no_unknown_keys());
        x.keys.push_back(std::move(key));
    }
    SA_TRY(r.check_no_unknown_keys());
    return x;
}

template <typename T>
using Parse = Result<T> (*)(const json&, const std::string&);

template <typename T>
Status read_list(const Reader& r, const char* key, Parse<T> parse, std::vector<T>& out,
                 bool optional = false) {
    auto arr = r.array(key, optional);
    if (!arr) return std::unexpected(arr.error());
    for (size_t i = 0; i < (*arr)->size(); ++i) {
        auto item = parse((**arr)[i], r.child(key, i));
        if (!item) return std::unexpected(item.error());
        out.push_back(std::move(*item));
    }
    return {};
}

Status check_columns(const Table& t) {
    std::set<std::string_view> names;
    int64_t last = 0;
    for (size_t i = 0; i < t.columns.size(); ++i) {
        const auto& c = t.columns[i];
        const std::string at = "columns[" + std::to_string(i) + "]";
        if (c.ordinal <= last)
            return fail(ErrorCode::invalid_argument, at + ".ordinal: not increasing");
        last = c.ordinal;
        if (!names.insert(c.name).second)
            return fail(ErrorCode::invalid_argument,
                        at + ".name: duplicate column \"" + c.name + "\"");
    }
    return {};
}

Result<Table> table_v2(const Reader& r) {
    Table t;
    SA_TRY_ASSIGN(t.database, r.string("database"));
    SA_TRY_ASSIGN(t.schema, r.string("schema"));
    SA_TRY_ASSIGN(t.name, r.string("name"));
    SA_TRY_ASSIGN(t.kind, r.string("kind"));
    if (!is_relation_kind(t.kind)) {
        return std::unexpected(invalid(
            "kind: must be one of table, view, materialized_view, partitioned_table, partition, "
            "foreign_table"));
    }
    SA_TRY_ASSIGN(t.owner, r.optional_string("owner", kMaxName));
    SA_TRY_ASSIGN(t.comment, r.optional_string("comment"));
    constexpr int64_t kMaxEstimate = std::numeric_limits<int64_t>::max();
    SA_TRY_ASSIGN(t.estimated_rows, r.optional_integer("estimated_rows", 0, kMaxEstimate));
    SA_TRY_ASSIGN(t.estimated_bytes, r.optional_integer("estimated_bytes", 0, kMaxEstimate));
    SA_TRY_ASSIGN(t.definition, r.optional_string("definition"));
    SA_TRY_ASSIGN(t.partition_of, optional_ref(r, "partition_of"));
    SA_TRY_ASSIGN(t.partition_bound, r.optional_string("partition_bound"));
    SA_TRY_ASSIGN(t.partition_key, r.optional_string("partition_key"));
    SA_TRY_ASSIGN(t.inherits, refs_from_json(r, "inherits"));
    SA_TRY_ASSIGN(t.depends_on, refs_from_json(r, "depends_on"));
    SA_TRY(read_list<Column>(r, "columns", column_from_json, t.columns));
    SA_TRY(read_list<Constraint>(r, "constraints", constraint_from_json, t.constraints, true));
    SA_TRY(read_list<Index>(r, "indexes", index_from_json, t.indexes, true));
    SA_TRY(r.check_no_unknown_keys());
    if (t.kind == kind::kPartition && !t.partition_of)
        return std::unexpected(invalid("partition_of: required for a partition"));
    if (t.partition_of && t.kind != kind::kPartition && t.kind != kind::kPartitionedTable)
        return std::unexpected(invalid("partition_of: only partitions have a parent"));
    SA_TRY(check_columns(t));
    return t;
}

// Version 1: tables and views; foreign keys in their own list, a referenced
// table in another schema written "schema.table"; index key parts as
// column names with "<expr>" for expressions.
Result<Table> table_v1(const Reader& r) {
    Table t;
    SA_TRY_ASSIGN(t.database, r.string("database"));
    SA_TRY_ASSIGN(t.schema, r.string("schema"));
    SA_TRY_ASSIGN(t.name, r.string("name"));
    SA_TRY_ASSIGN(t.kind, r.choice("kind", {"table", "view"}));
    SA_TRY_ASSIGN(t.definition, r.optional_string("definition"));
    const json* arr = nullptr;
    SA_TRY_ASSIGN(arr, r.array("columns"));
    std::vector<std::pair<int64_t, std::string>> primary_key;
    for (size_t i = 0; i < arr->size(); ++i) {
        Reader c((*arr)[i], r.child("columns", i));
        SA_TRY(c.object());
        Column col;
        SA_TRY_ASSIGN(col.name, c.string("name"));
        SA_TRY_ASSIGN(col.ordinal, c.integer("ordinal", 1, kMaxOrdinal));
        SA_TRY_ASSIGN(col.data_type, c.string("data_type", kMaxName, true));
        col.normalized_type = std::string(type::kOther);
        SA_TRY_ASSIGN(col.nullable, c.boolean("nullable"));
        SA_TRY_ASSIGN(col.default_value, c.optional_string("default"));
        SA_TRY_ASSIGN(col.primary_key_position, c.integer("primary_key_position", 0, kMaxOrdinal));
        SA_TRY(c.check_no_unknown_keys());
        if (col.primary_key_position > 0)
            primary_key.emplace_back(col.primary_key_position, col.name);
        t.columns.push_back(std::move(col));
    }
    if (!primary_key.empty()) {
        std::sort(primary_key.begin(), primary_key.end());
        Constraint pk{.type = "primary_key"};
        for (auto& [pos, name] : primary_key) pk.columns.push_back(name);
        t.constraints.push_back(std::move(pk));
    }
    SA_TRY_ASSIGN(arr, r.array("indexes"));
    for (size_t i = 0; i < arr->size(); ++i) {
        Reader x((*arr)[i], r.child("indexes", i));
        SA_TRY(x.object());
        Index index;
        SA_TRY_ASSIGN(index.name, x.string("name"));
        SA_TRY_ASSIGN(index.unique, x.boolean("unique"));
        SA_TRY_ASSIGN(index.origin,
                      x.choice("origin", {"create_index", "primary_key", "unique_constraint"}));
        bool partial = false;
        SA_TRY_ASSIGN(partial, x.boolean("partial"));
        if (partial) index.predicate = "";
        std::vector<std::string> columns;
        SA_TRY_ASSIGN(columns, x.string_array("columns", false));
        SA_TRY(x.check_no_unknown_keys());
        if (columns.empty())
            return std::unexpected(invalid(x.where("columns") + "must not be empty"));
        for (auto& c : columns) {
            index.keys.push_back(c == "<expr>" ? IndexKey{.expression = c} : IndexKey{.column = c});
        }
        if (index.origin == "unique_constraint") {
            t.constraints.push_back(
                Constraint{.name = index.name, .type = "unique", .columns = columns});
        }
        t.indexes.push_back(std::move(index));
    }
    SA_TRY_ASSIGN(arr, r.array("foreign_keys"));
    for (size_t i = 0; i < arr->size(); ++i) {
        Reader f((*arr)[i], r.child("foreign_keys", i));
        SA_TRY(f.object());
        Constraint fk{.type = "foreign_key"};
        std::string referenced;
        SA_TRY_ASSIGN(referenced, f.string("referenced_table"));
        const auto dot = referenced.find('.');
        fk.references = dot == std::string::npos
                            ? ObjectRef{t.schema, referenced}
                            : ObjectRef{referenced.substr(0, dot), referenced.substr(dot + 1)};
        SA_TRY_ASSIGN(fk.columns, f.string_array("columns", false));
        SA_TRY_ASSIGN(fk.referenced_columns, f.string_array("referenced_columns", true));
        SA_TRY_ASSIGN(fk.on_update, f.string("on_update", kMaxName, true));
        SA_TRY_ASSIGN(fk.on_delete, f.string("on_delete", kMaxName, true));
        SA_TRY(f.check_no_unknown_keys());
        if (fk.columns.empty() || fk.columns.size() != fk.referenced_columns.size()) {
            return std::unexpected(invalid(r.child("foreign_keys", i) +
                                           ": columns and referenced_columns differ in length"));
        }
        t.constraints.push_back(std::move(fk));
    }
    SA_TRY(r.check_no_unknown_keys());
    SA_TRY(check_columns(t));
    return t;
}

Result<Routine> routine_from_json(const Reader& r) {
    Routine x;
    SA_TRY_ASSIGN(x.database, r.string("database"));
    SA_TRY_ASSIGN(x.schema, r.string("schema"));
    SA_TRY_ASSIGN(x.name, r.string("name"));
    SA_TRY_ASSIGN(x.kind, r.choice("kind", {"function", "procedure", "aggregate", "window"}));
    SA_TRY_ASSIGN(x.signature, r.string("signature", kMaxText, true));
    SA_TRY_ASSIGN(x.return_type, r.optional_string("return_type"));
    SA_TRY_ASSIGN(x.language, r.string("language", kMaxName, true));
    SA_TRY_ASSIGN(x.owner, r.optional_string("owner", kMaxName));
    SA_TRY_ASSIGN(x.comment, r.optional_string("comment"));
    SA_TRY(r.check_no_unknown_keys());
    if (x.kind == "procedure" && x.return_type)
        return std::unexpected(invalid("return_type: a procedure returns nothing"));
    return x;
}

Result<Removal> removal_from_json(const Reader& r) {
    Removal x;
    SA_TRY_ASSIGN(x.object, r.choice("object", {"table", "routine"}));
    SA_TRY_ASSIGN(x.database, r.string("database"));
    SA_TRY_ASSIGN(x.schema, r.string("schema"));
    SA_TRY_ASSIGN(x.name, r.string("name"));
    SA_TRY_ASSIGN(x.signature, r.string("signature", kMaxText, true));
    SA_TRY(r.check_no_unknown_keys());
    if (x.object == "table" && !x.signature.empty())
        return std::unexpected(invalid("signature: only routines have one"));
    return x;
}

// Qualified names stay unambiguous whatever a name contains: '%' and '/'
// inside a part are percent-encoded.
std::string part(std::string_view name) {
    std::string out;
    out.reserve(name.size());
    for (char c : name) {
        if (c == '%') {
            out += "%25";
        } else if (c == '/') {
            out += "%2F";
        } else {
            out += c;
        }
    }
    return out;
}

std::string prefix(std::string_view source, std::string_view database, std::string_view schema) {
    return part(source) + "/" + part(database) + "/" + part(schema) + "/";
}

// Writes canonical JSON directly (see serialize()). Keys are emitted in the
// byte order nlohmann's std::map sorts them in; a test compares the output
// with nlohmann's dump for generated records.
class CanonicalWriter {
  public:
    explicit CanonicalWriter(std::string& out) : out_(out) {}

    void string(std::string_view s) {
        bool plain = true;
        for (unsigned char c : s) {
            if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') {
                plain = false;
                break;
            }
        }
        if (plain) {
            out_ += '"';
            out_ += s;
            out_ += '"';
            return;
        }
        // Escapes and UTF-8 repair exactly as the reference serializer does.
        out_ += json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
    }
    void integer(int64_t v) {
        char buffer[24];
        auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, v);
        out_.append(buffer, end);
    }
    void boolean(bool v) { out_ += v ? "true" : "false"; }
    void null() { out_ += "null"; }
    void optional(const std::optional<std::string>& v) { v ? string(*v) : null(); }
    void optional(const std::optional<int64_t>& v) { v ? integer(*v) : null(); }
    void ref(const ObjectRef& r) {
        key("name", true);
        string(r.name);
        key("schema");
        string(r.schema);
        out_ += '}';
    }
    void optional(const std::optional<ObjectRef>& v) { v ? ref(*v) : null(); }
    void refs(const std::vector<ObjectRef>& v) {
        out_ += '[';
        for (size_t i = 0; i < v.size(); ++i) {
            if (i) out_ += ',';
            ref(v[i]);
        }
        out_ += ']';
    }
    void strings(const std::vector<std::string>& v) {
        out_ += '[';
        for (size_t i = 0; i < v.size(); ++i) {
            if (i) out_ += ',';
            string(v[i]);
        }
        out_ += ']';
    }
    // Opens an object with its first key when first, else adds a key.
    void key(std::string_view name, bool first = false) {
        out_ += first ? "{\"" : ",\"";
        out_ += name;
        out_ += "\":";
    }
    void close() { out_ += '}'; }
    std::string& out() { return out_; }

  private:
    std::string& out_;
};

void write_column(CanonicalWriter& w, const Column& c) {
    w.key("comment", true);
    w.optional(c.comment);
    w.key("data_type");
    w.string(c.data_type);
    w.key("default");
    w.optional(c.default_value);
    w.key("generated");
    w.string(c.generated);
    w.key("generation_expression");
    w.optional(c.generation_expression);
    w.key("identity");
    w.string(c.identity);
    w.key("name");
    w.string(c.name);
    w.key("normalized_type");
    w.string(c.normalized_type);
    w.key("nullable");
    w.boolean(c.nullable);
    w.key("ordinal");
    w.integer(c.ordinal);
    w.key("primary_key_position");
    w.integer(c.primary_key_position);
    w.close();
}

void write_constraint(CanonicalWriter& w, const Constraint& c) {
    w.key("columns", true);
    w.strings(c.columns);
    w.key("definition");
    w.optional(c.definition);
    w.key("name");
    w.string(c.name);
    w.key("on_delete");
    w.string(c.on_delete);
    w.key("on_update");
    w.string(c.on_update);
    w.key("referenced_columns");
    w.strings(c.referenced_columns);
    w.key("references");
    w.optional(c.references);
    w.key("type");
    w.string(c.type);
    w.close();
}

void write_index(CanonicalWriter& w, const Index& x) {
    w.key("keys", true);
    w.out() += '[';
    for (size_t i = 0; i < x.keys.size(); ++i) {
        if (i) w.out() += ',';
        const auto& k = x.keys[i];
        if (k.column.empty()) {
            w.key("expression", true);
            w.string(k.expression);
        } else {
            w.key("column", true);
            w.string(k.column);
        }
        w.close();
    }
    w.out() += ']';
    w.key("method");
    w.string(x.method);
    w.key("name");
    w.string(x.name);
    w.key("origin");
    w.string(x.origin);
    w.key("predicate");
    w.optional(x.predicate);
    w.key("unique");
    w.boolean(x.unique);
    w.close();
}

template <typename T, typename Write>
void write_list(CanonicalWriter& w, const std::vector<T>& items, Write write) {
    w.out() += '[';
    for (size_t i = 0; i < items.size(); ++i) {
        if (i) w.out() += ',';
        write(w, items[i]);
    }
    w.out() += ']';
}

// with_statistics false leaves estimated_rows/bytes out (the fingerprint).
void write_table(CanonicalWriter& w, const Table& t, bool with_statistics) {
    w.key("columns", true);
    write_list(w, t.columns, write_column);
    w.key("comment");
    w.optional(t.comment);
    w.key("constraints");
    write_list(w, t.constraints, write_constraint);
    w.key("database");
    w.string(t.database);
    w.key("definition");
    w.optional(t.definition);
    w.key("depends_on");
    w.refs(t.depends_on);
    if (with_statistics) {
        w.key("estimated_bytes");
        w.optional(t.estimated_bytes);
        w.key("estimated_rows");
        w.optional(t.estimated_rows);
    }
    w.key("indexes");
    write_list(w, t.indexes, write_index);
    w.key("inherits");
    w.refs(t.inherits);
    w.key("kind");
    w.string(t.kind);
    w.key("model_version");
    w.integer(kModelVersion);
    w.key("name");
    w.string(t.name);
    w.key("owner");
    w.optional(t.owner);
    w.key("partition_bound");
    w.optional(t.partition_bound);
    w.key("partition_key");
    w.optional(t.partition_key);
    w.key("partition_of");
    w.optional(t.partition_of);
    w.key("record");
    w.string("table");
    w.key("schema");
    w.string(t.schema);
    w.close();
}

void write_routine(CanonicalWriter& w, const Routine& r) {
    w.key("comment", true);
    w.optional(r.comment);
    w.key("database");
    w.string(r.database);
    w.key("kind");
    w.string(r.kind);
    w.key("language");
    w.string(r.language);
    w.key("model_version");
    w.integer(kModelVersion);
    w.key("name");
    w.string(r.name);
    w.key("owner");
    w.optional(r.owner);
    w.key("record");
    w.string("routine");
    w.key("return_type");
    w.optional(r.return_type);
    w.key("schema");
    w.string(r.schema);
    w.key("signature");
    w.string(r.signature);
    w.close();
}

void write_removal(CanonicalWriter& w, const Removal& r) {
    w.key("database", true);
    w.string(r.database);
    w.key("model_version");
    w.integer(kModelVersion);
    w.key("name");
    w.string(r.name);
    w.key("object");
    w.string(r.object);
    w.key("record");
    w.string("removed");
    w.key("schema");
    w.string(r.schema);
    w.key("signature");
    w.string(r.signature);
    w.close();
}

std::string canonical(const Record& record, bool with_statistics) {
    std::string out;
    out.reserve(1024);
    CanonicalWriter w(out);
    if (const auto* t = std::get_if<Table>(&record)) {
        write_table(w, *t, with_statistics);
    } else if (const auto* r = std::get_if<Routine>(&record)) {
        write_routine(w, *r);
    } else {
        write_removal(w, std::get<Removal>(record));
    }
    return out;
}

}  // namespace

bool is_relation_kind(std::string_view k) {
    return std::find(kRelationKinds.begin(), kRelationKinds.end(), k) != kRelationKinds.end();
}

bool is_view_kind(std::string_view k) {
    return k == kind::kView || k == kind::kMaterializedView;
}

bool is_normalized_type(std::string_view name) {
    return std::find(kNormalizedTypes.begin(), kNormalizedTypes.end(), name) !=
           kNormalizedTypes.end();
}

json to_json(const Table& t) {
    json cols = json::array();
    for (const auto& c : t.columns) {
        cols.push_back({{"name", c.name},
                        {"ordinal", c.ordinal},
                        {"data_type", c.data_type},
                        {"normalized_type", c.normalized_type},
                        {"nullable", c.nullable},
                        {"default", opt(c.default_value)},
                        {"comment", opt(c.comment)},
                        {"identity", c.identity},
                        {"generated", c.generated},
                        {"generation_expression", opt(c.generation_expression)},
                        {"primary_key_position", c.primary_key_position}});
    }
    json constraints = json::array();
    for (const auto& c : t.constraints) {
        constraints.push_back({{"name", c.name},
                               {"type", c.type},
                               {"columns", c.columns},
                               {"references", opt(c.references)},
                               {"referenced_columns", c.referenced_columns},
                               {"on_update", c.on_update},
                               {"on_delete", c.on_delete},
                               {"definition", opt(c.definition)}});
    }
    json idx = json::array();
    for (const auto& i : t.indexes) {
        json keys = json::array();
        for (const auto& k : i.keys) {
            keys.push_back(k.column.empty() ? json{{"expression", k.expression}}
                                            : json{{"column", k.column}});
        }
        idx.push_back({{"name", i.name},
                       {"unique", i.unique},
                       {"origin", i.origin},
                       {"method", i.method},
                       {"predicate", opt(i.predicate)},
                       {"keys", keys}});
    }
    return {{"model_version", kModelVersion},
            {"record", "table"},
            {"database", t.database},
            {"schema", t.schema},
            {"name", t.name},
            {"kind", t.kind},
            {"owner", opt(t.owner)},
            {"comment", opt(t.comment)},
            {"estimated_rows", opt(t.estimated_rows)},
            {"estimated_bytes", opt(t.estimated_bytes)},
            {"definition", opt(t.definition)},
            {"partition_of", opt(t.partition_of)},
            {"partition_bound", opt(t.partition_bound)},
            {"partition_key", opt(t.partition_key)},
            {"inherits", refs_json(t.inherits)},
            {"depends_on", refs_json(t.depends_on)},
            {"columns", cols},
            {"constraints", constraints},
            {"indexes", idx}};
}

json to_json(const Routine& r) {
    return {{"model_version", kModelVersion},
            {"record", "routine"},
            {"database", r.database},
            {"schema", r.schema},
            {"name", r.name},
            {"kind", r.kind},
            {"signature", r.signature},
            {"return_type", opt(r.return_type)},
            {"language", r.language},
            {"owner", opt(r.owner)},
            {"comment", opt(r.comment)}};
}

json to_json(const Removal& r) {
    return {{"model_version", kModelVersion}, {"record", "removed"}, {"object", r.object},
            {"database", r.database},         {"schema", r.schema},  {"name", r.name},
            {"signature", r.signature}};
}

json to_json(const Record& record) {
    return std::visit([](const auto& r) { return to_json(r); }, record);
}

Result<Record> record_from_json(const json& j) {
    Reader r(j, "");
    SA_TRY(r.object());
    auto version = r.integer("model_version", 1, kModelVersion);
    if (!version) {
        return fail(ErrorCode::invalid_argument,
                    "model_version: unsupported (this build reads versions 1 to " +
                        std::to_string(kModelVersion) + ")");
    }
    if (*version == 1) {
        auto t = table_v1(r);
        if (!t) return std::unexpected(t.error());
        return Record(std::move(*t));
    }
    std::string record;
    SA_TRY_ASSIGN(record, r.choice("record", {"table", "routine", "removed"}));
    if (record == "table") {
        auto t = table_v2(r);
        if (!t) return std::unexpected(t.error());
        return Record(std::move(*t));
    }
    if (record == "routine") {
        auto x = routine_from_json(r);
        if (!x) return std::unexpected(x.error());
        return Record(std::move(*x));
    }
    auto x = removal_from_json(r);
    if (!x) return std::unexpected(x.error());
    return Record(std::move(*x));
}

Result<Table> table_from_json(const json& j) {
    auto record = record_from_json(j);
    if (!record) return std::unexpected(record.error());
    if (auto* t = std::get_if<Table>(&*record)) return std::move(*t);
    return fail(ErrorCode::invalid_argument, "record: expected \"table\"");
}

Result<std::vector<Record>> parse_chunk(std::string_view ndjson) {
    std::vector<Record> out;
    size_t line_no = 0;
    size_t pos = 0;
    while (pos < ndjson.size()) {
        size_t end = ndjson.find('\n', pos);
        if (end == std::string_view::npos) end = ndjson.size();
        std::string_view line = ndjson.substr(pos, end - pos);
        pos = end + 1;
        ++line_no;
        if (line.empty()) continue;
        json j = json::parse(line, nullptr, false);
        if (j.is_discarded())
            return fail(ErrorCode::invalid_argument,
                        "line " + std::to_string(line_no) + ": not valid JSON");
        auto record = record_from_json(j);
        if (!record)
            return fail(ErrorCode::invalid_argument,
                        "line " + std::to_string(line_no) + ": " + record.error().message);
        out.push_back(std::move(*record));
    }
    return out;
}

std::string qualified_name(std::string_view source, const Table& table) {
    return prefix(source, table.database, table.schema) + part(table.name);
}

std::string qualified_name(std::string_view source, const Table& table, const Column& column) {
    return qualified_name(source, table) + "/" + part(column.name);
}

std::string qualified_name(std::string_view source, const Routine& routine) {
    return prefix(source, routine.database, routine.schema) + part(routine.name) + "(" +
           part(routine.signature) + ")";
}

std::string qualified_name(std::string_view source, const Removal& removal) {
    std::string name = prefix(source, removal.database, removal.schema) + part(removal.name);
    if (removal.object == "routine") name += "(" + part(removal.signature) + ")";
    return name;
}

std::string serialize(const Record& record) {
    return canonical(record, true);
}

std::string fingerprint(const Record& record) {
    return crypto::sha256_hex(canonical(record, false));
}

}  // namespace sa::metadata
