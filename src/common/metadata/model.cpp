#include "common/metadata/model.h"

namespace sa::metadata {

using nlohmann::json;

namespace {

constexpr size_t kMaxName = 1024;
constexpr size_t kMaxText = 1 << 20;

json opt(const std::optional<std::string>& v) {
    return v ? json(*v) : json(nullptr);
}

// Field readers that record the JSON path of the first problem.
class Reader {
  public:
    Reader(const json& j, std::string path) : j_(j), path_(std::move(path)) {}

    Status object() const {
        if (!j_.is_object()) return fail(ErrorCode::invalid_argument, where() + "expected object");
        return {};
    }
    Result<std::string> string(const char* key, size_t max = kMaxName,
                               bool allow_empty = false) const {
        auto it = j_.find(key);
        if (it == j_.end() || !it->is_string())
            return fail(ErrorCode::invalid_argument, where(key) + "expected string");
        const auto& s = it->get_ref<const std::string&>();
        if (s.size() > max) return fail(ErrorCode::invalid_argument, where(key) + "too long");
        if (s.empty() && !allow_empty)
            return fail(ErrorCode::invalid_argument, where(key) + "must not be empty");
        return s;
    }
    Result<std::optional<std::string>> optional_string(const char* key,
                                                       size_t max = kMaxText) const {
        auto it = j_.find(key);
        if (it == j_.end() || it->is_null()) return std::optional<std::string>();
        if (!it->is_string())
            return fail(ErrorCode::invalid_argument, where(key) + "expected string or null");
        if (it->get_ref<const std::string&>().size() > max)
            return fail(ErrorCode::invalid_argument, where(key) + "too long");
        return std::optional<std::string>(it->get<std::string>());
    }
    Result<int64_t> integer(const char* key, int64_t min, int64_t max) const {
        auto it = j_.find(key);
        if (it == j_.end() || !it->is_number_integer())
            return fail(ErrorCode::invalid_argument, where(key) + "expected integer");
        int64_t v = it->get<int64_t>();
        if (v < min || v > max)
            return fail(ErrorCode::invalid_argument, where(key) + "out of range");
        return v;
    }
    Result<bool> boolean(const char* key) const {
        auto it = j_.find(key);
        if (it == j_.end() || !it->is_boolean())
            return fail(ErrorCode::invalid_argument, where(key) + "expected boolean");
        return it->get<bool>();
    }
    Result<const json*> array(const char* key) const {
        auto it = j_.find(key);
        if (it == j_.end() || !it->is_array())
            return fail(ErrorCode::invalid_argument, where(key) + "expected array");
        return &*it;
    }
    Result<std::vector<std::string>> string_array(const char* key) const {
        auto arr = array(key);
        if (!arr) return std::unexpected(arr.error());
        std::vector<std::string> out;
        for (size_t i = 0; i < (*arr)->size(); ++i) {
            const json& e = (**arr)[i];
            if (!e.is_string() || e.get_ref<const std::string&>().size() > kMaxName) {
                return fail(ErrorCode::invalid_argument,
                            where(key) + "[" + std::to_string(i) + "] expected string");
            }
            out.push_back(e.get<std::string>());
        }
        return out;
    }
    std::string child(const char* key, size_t i) const {
        return prefix() + key + "[" + std::to_string(i) + "]";
    }

  private:
    std::string prefix() const { return path_.empty() ? "" : path_ + "."; }
    std::string where(const char* key = nullptr) const {
        std::string p = key ? prefix() + key : path_;
        return p.empty() ? "" : p + ": ";
    }
    const json& j_;
    std::string path_;
};

#define SA_TRY_ASSIGN(lhs, expr)                               \
    do {                                                       \
        auto sa_tmp_ = (expr);                                 \
        if (!sa_tmp_) return std::unexpected(sa_tmp_.error()); \
        lhs = std::move(*sa_tmp_);                             \
    } while (0)

Result<Column> column_from_json(const json& j, std::string path) {
    Reader r(j, path);
    if (auto st = r.object(); !st) return std::unexpected(st.error());
    Column c;
    SA_TRY_ASSIGN(c.name, r.string("name"));
    SA_TRY_ASSIGN(c.ordinal, r.integer("ordinal", 1, 1 << 20));
    SA_TRY_ASSIGN(c.data_type, r.string("data_type", kMaxName, true));
    SA_TRY_ASSIGN(c.nullable, r.boolean("nullable"));
    SA_TRY_ASSIGN(c.default_value, r.optional_string("default"));
    SA_TRY_ASSIGN(c.primary_key_position, r.integer("primary_key_position", 0, 1 << 20));
    return c;
}

Result<Index> index_from_json(const json& j, std::string path) {
    Reader r(j, path);
    if (auto st = r.object(); !st) return std::unexpected(st.error());
    Index x;
    SA_TRY_ASSIGN(x.name, r.string("name"));
    SA_TRY_ASSIGN(x.unique, r.boolean("unique"));
    SA_TRY_ASSIGN(x.origin, r.string("origin"));
    SA_TRY_ASSIGN(x.partial, r.boolean("partial"));
    SA_TRY_ASSIGN(x.columns, r.string_array("columns"));
    return x;
}

Result<ForeignKey> foreign_key_from_json(const json& j, std::string path) {
    Reader r(j, path);
    if (auto st = r.object(); !st) return std::unexpected(st.error());
    ForeignKey f;
    SA_TRY_ASSIGN(f.referenced_table, r.string("referenced_table"));
    SA_TRY_ASSIGN(f.columns, r.string_array("columns"));
    SA_TRY_ASSIGN(f.referenced_columns, r.string_array("referenced_columns"));
    SA_TRY_ASSIGN(f.on_update, r.string("on_update", kMaxName, true));
    SA_TRY_ASSIGN(f.on_delete, r.string("on_delete", kMaxName, true));
    if (f.columns.size() != f.referenced_columns.size()) {
        return fail(ErrorCode::invalid_argument,
                    path + ": columns and referenced_columns differ in length");
    }
    return f;
}

}  // namespace

json to_json(const Table& t) {
    json cols = json::array();
    for (const auto& c : t.columns) {
        cols.push_back({{"name", c.name},
                        {"ordinal", c.ordinal},
                        {"data_type", c.data_type},
                        {"nullable", c.nullable},
                        {"default", opt(c.default_value)},
                        {"primary_key_position", c.primary_key_position}});
    }
    json idx = json::array();
    for (const auto& i : t.indexes) {
        idx.push_back({{"name", i.name},
                       {"unique", i.unique},
                       {"origin", i.origin},
                       {"partial", i.partial},
                       {"columns", i.columns}});
    }
    json fks = json::array();
    for (const auto& f : t.foreign_keys) {
        fks.push_back({{"referenced_table", f.referenced_table},
                       {"columns", f.columns},
                       {"referenced_columns", f.referenced_columns},
                       {"on_update", f.on_update},
                       {"on_delete", f.on_delete}});
    }
    return {{"model_version", kModelVersion},
            {"database", t.database},
            {"schema", t.schema},
            {"name", t.name},
            {"kind", t.kind},
            {"definition", opt(t.definition)},
            {"columns", cols},
            {"indexes", idx},
            {"foreign_keys", fks}};
}

Result<Table> table_from_json(const json& j) {
    Reader r(j, "");
    if (auto st = r.object(); !st) return std::unexpected(st.error());
    auto version = r.integer("model_version", kModelVersion, kModelVersion);
    if (!version)
        return fail(ErrorCode::invalid_argument,
                    "model_version: unsupported (this build reads version " +
                        std::to_string(kModelVersion) + ")");
    Table t;
    SA_TRY_ASSIGN(t.database, r.string("database"));
    SA_TRY_ASSIGN(t.schema, r.string("schema"));
    SA_TRY_ASSIGN(t.name, r.string("name"));
    SA_TRY_ASSIGN(t.kind, r.string("kind"));
    if (t.kind != "table" && t.kind != "view")
        return fail(ErrorCode::invalid_argument, "kind: must be \"table\" or \"view\"");
    SA_TRY_ASSIGN(t.definition, r.optional_string("definition"));
    const json* arr = nullptr;
    SA_TRY_ASSIGN(arr, r.array("columns"));
    for (size_t i = 0; i < arr->size(); ++i) {
        auto c = column_from_json((*arr)[i], r.child("columns", i));
        if (!c) return std::unexpected(c.error());
        t.columns.push_back(std::move(*c));
    }
    SA_TRY_ASSIGN(arr, r.array("indexes"));
    for (size_t i = 0; i < arr->size(); ++i) {
        auto x = index_from_json((*arr)[i], r.child("indexes", i));
        if (!x) return std::unexpected(x.error());
        t.indexes.push_back(std::move(*x));
    }
    SA_TRY_ASSIGN(arr, r.array("foreign_keys"));
    for (size_t i = 0; i < arr->size(); ++i) {
        auto f = foreign_key_from_json((*arr)[i], r.child("foreign_keys", i));
        if (!f) return std::unexpected(f.error());
        t.foreign_keys.push_back(std::move(*f));
    }
    return t;
}

Result<std::vector<Table>> parse_chunk(std::string_view ndjson) {
    std::vector<Table> out;
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
        auto t = table_from_json(j);
        if (!t)
            return fail(ErrorCode::invalid_argument,
                        "line " + std::to_string(line_no) + ": " + t.error().message);
        out.push_back(std::move(*t));
    }
    return out;
}

std::string qualified_name(std::string_view source, const Table& table) {
    return std::string(source) + "/" + table.database + "/" + table.schema + "/" + table.name;
}

}  // namespace sa::metadata
