#include "agent/delivery/fingerprint_state.h"

#include <initializer_list>
#include <set>
#include <utility>

#include "common/util/files.h"

namespace sa::agent::delivery {
namespace {

using nlohmann::json;

constexpr size_t kMaxNameBytes = 64 * 1024;

std::unexpected<Error> malformed(const std::string& where, const std::string& what) {
    return fail(ErrorCode::invalid_argument, where + ": " + what);
}

// Never throws: a name that is not valid UTF-8 becomes U+FFFD, as in chunks.
std::string dump(const json& value) {
    return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool is_sha256_hex(std::string_view s) {
    if (s.size() != 64) return false;
    for (char c : s) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

Status exact_keys(const json& object, const std::string& where,
                  std::initializer_list<std::string_view> keys) {
    if (!object.is_object()) return malformed(where, "expected a JSON object");
    for (const auto& [key, _] : object.items()) {
        bool known = false;
        for (auto k : keys) known = known || key == k;
        if (!known) return malformed(where + "." + key, "unknown field");
    }
    for (auto k : keys) {
        if (!object.contains(k)) return malformed(where + "." + std::string(k), "missing");
    }
    return {};
}

Result<std::string> string_field(const json& object, const char* key, const std::string& where) {
    const json& v = object.at(key);
    if (!v.is_string()) return malformed(where + "." + key, "expected a string");
    const auto& s = v.get_ref<const std::string&>();
    if (s.size() > kMaxNameBytes) return malformed(where + "." + key, "too long");
    return s;
}

// Calls line(text, where) for each line; every line must end with '\n' and
// none may be empty.
template <typename F>
Status for_each_line(std::string_view text, size_t first_line, F&& line) {
    size_t number = first_line - 1;
    while (!text.empty()) {
        ++number;
        const std::string where = "line " + std::to_string(number);
        const size_t end = text.find('\n');
        if (end == std::string_view::npos) return malformed(where, "not terminated by a newline");
        if (end == 0) return malformed(where, "empty");
        if (auto st = line(text.substr(0, end), where); !st) return st;
        text.remove_prefix(end + 1);
    }
    return {};
}

Result<json> parse_line(std::string_view text, const std::string& where) {
    json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) return malformed(where, "not valid JSON");
    return value;
}

}  // namespace

FingerprintEntry entry_of(const metadata::Table& table) {
    return {"table",      table.database,
            table.schema, table.name,
            "",           metadata::fingerprint(metadata::Record{table})};
}

FingerprintEntry entry_of(const metadata::Routine& routine) {
    return {"routine",    routine.database,  routine.schema,
            routine.name, routine.signature, metadata::fingerprint(metadata::Record{routine})};
}

metadata::Removal removal_of(const FingerprintEntry& entry) {
    return {entry.object, entry.database, entry.schema, entry.name, entry.signature};
}

std::string identity_of(const FingerprintEntry& entry) {
    // The kind first: a table named "f(x)" is not the routine f(x).
    return entry.object + ":" + metadata::qualified_name("", removal_of(entry));
}

std::string entry_line(const FingerprintEntry& entry) {
    return dump({{"object", entry.object},
                 {"database", entry.database},
                 {"schema", entry.schema},
                 {"name", entry.name},
                 {"signature", entry.signature},
                 {"fingerprint", entry.fingerprint}}) +
           "\n";
}

Result<FingerprintEntry> entry_from_json(const json& value, const std::string& where) {
    if (auto st = exact_keys(value, where,
                             {"object", "database", "schema", "name", "signature", "fingerprint"});
        !st) {
        return std::unexpected(st.error());
    }
    FingerprintEntry entry;
    std::pair<const char*, std::string*> fields[] = {
        {"object", &entry.object},       {"database", &entry.database},
        {"schema", &entry.schema},       {"name", &entry.name},
        {"signature", &entry.signature}, {"fingerprint", &entry.fingerprint}};
    for (auto& [key, out] : fields) {
        auto v = string_field(value, key, where);
        if (!v) return std::unexpected(v.error());
        *out = std::move(*v);
    }
    if (entry.object != "table" && entry.object != "routine") {
        return malformed(where + ".object", "expected \"table\" or \"routine\"");
    }
    if (entry.name.empty()) return malformed(where + ".name", "empty");
    if (entry.object == "table" && !entry.signature.empty()) {
        return malformed(where + ".signature", "a table has no signature");
    }
    if (!is_sha256_hex(entry.fingerprint)) {
        return malformed(where + ".fingerprint", "expected 64 lowercase hex characters");
    }
    return entry;
}

namespace {

Result<std::vector<FingerprintEntry>> parse_object_lines(std::string_view ndjson,
                                                         size_t first_line) {
    std::vector<FingerprintEntry> entries;
    std::set<std::string, std::less<>> seen;
    auto parsed = for_each_line(ndjson, first_line,
                                [&](std::string_view text, const std::string& where) -> Status {
                                    auto value = parse_line(text, where);
                                    if (!value) return std::unexpected(value.error());
                                    auto entry = entry_from_json(*value, where);
                                    if (!entry) return std::unexpected(entry.error());
                                    if (!seen.insert(identity_of(*entry)).second)
                                        return malformed(where, "duplicate object");
                                    entries.push_back(std::move(*entry));
                                    return {};
                                });
    if (!parsed) return std::unexpected(parsed.error());
    return entries;
}

}  // namespace

Result<std::vector<FingerprintEntry>> parse_entries(std::string_view ndjson) {
    return parse_object_lines(ndjson, 1);
}

std::string serialize_state(const FingerprintState& state) {
    std::string out =
        dump({{"job_id", state.job_id}, {"filters_sha256", state.filters_sha256}}) + "\n";
    for (const auto& entry : state.objects) out += entry_line(entry);
    return out;
}

Result<FingerprintState> parse_state(std::string_view text) {
    const size_t end = text.find('\n');
    if (text.empty() || end == std::string_view::npos) {
        return malformed("line 1", "missing the header line");
    }
    auto header = parse_line(text.substr(0, end), "line 1");
    if (!header) return std::unexpected(header.error());
    if (auto st = exact_keys(*header, "line 1", {"job_id", "filters_sha256"}); !st) {
        return std::unexpected(st.error());
    }
    FingerprintState state;
    auto job_id = string_field(*header, "job_id", "line 1");
    if (!job_id) return std::unexpected(job_id.error());
    if (job_id->empty()) return malformed("line 1.job_id", "empty");
    state.job_id = std::move(*job_id);
    auto filters = string_field(*header, "filters_sha256", "line 1");
    if (!filters) return std::unexpected(filters.error());
    if (!is_sha256_hex(*filters)) {
        return malformed("line 1.filters_sha256", "expected 64 lowercase hex characters");
    }
    state.filters_sha256 = std::move(*filters);
    auto objects = parse_object_lines(text.substr(end + 1), 2);
    if (!objects) return std::unexpected(objects.error());
    state.objects = std::move(*objects);
    return state;
}

std::string state_path(const std::string& state_dir, const std::string& source) {
    return state_dir + "/" + kFingerprintDir + "/" + source + ".ndjson";
}

Result<FingerprintState> read_state(const std::string& path) {
    auto text = util::read_file(path);
    if (!text) return std::unexpected(text.error());
    auto state = parse_state(*text);
    if (!state) {
        return fail(ErrorCode::invalid_argument,
                    "fingerprint state " + path + " is corrupt: " + state.error().message);
    }
    return state;
}

Status write_state(const std::string& path, const FingerprintState& state) {
    const size_t slash = path.rfind('/');
    if (slash != std::string::npos && slash > 0) {
        if (auto made = util::make_dirs(path.substr(0, slash), 0700); !made) return made;
    }
    return util::write_file_atomic(path, serialize_state(state), 0600);
}

}  // namespace sa::agent::delivery
