#include "agent/worker/messages.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdio>
#include <initializer_list>
#include <utility>

namespace sa::agent::worker {
namespace {

using nlohmann::json;

constexpr size_t kMaxFailureMessageBytes = 2048;
constexpr size_t kMaxReasonCodeBytes = 64;

std::unexpected<Error> malformed(const std::string& where, const std::string& what) {
    return fail(ErrorCode::invalid_argument, where + ": " + what);
}

// Never throws: invalid UTF-8 in a name read from a source becomes U+FFFD.
std::string dump(const json& value) {
    return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<json> parse(std::string_view payload, const std::string& frame) {
    json value = json::parse(payload, nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) return malformed(frame, "payload is not valid JSON");
    if (!value.is_object()) return malformed(frame, "payload is not a JSON object");
    return value;
}

Status only_keys(const json& object, const std::string& where,
                 std::initializer_list<std::string_view> keys) {
    for (const auto& [key, _] : object.items()) {
        bool known = false;
        for (auto k : keys) known = known || key == k;
        if (!known) return malformed(where + "." + key, "unknown field");
    }
    return {};
}

Result<const json*> member(const json& object, const char* key, const std::string& where,
                           bool required) {
    auto it = object.find(key);
    if (it == object.end()) {
        if (required) return malformed(where + "." + key, "missing");
        return static_cast<const json*>(nullptr);
    }
    return &*it;
}

Result<std::string> get_string(const json& object, const char* key, const std::string& where,
                               bool required = true, size_t max_bytes = 4096) {
    auto v = member(object, key, where, required);
    if (!v) return std::unexpected(v.error());
    if (*v == nullptr) return std::string();
    if (!(*v)->is_string()) return malformed(where + "." + key, "expected a string");
    const auto& s = (*v)->get_ref<const std::string&>();
    if (s.size() > max_bytes) {
        return malformed(where + "." + key, "longer than " + std::to_string(max_bytes) + " bytes");
    }
    return s;
}

Result<int64_t> get_int(const json& object, const char* key, const std::string& where,
                        bool required = true, int64_t min = 0, int64_t max = INT64_MAX) {
    auto v = member(object, key, where, required);
    if (!v) return std::unexpected(v.error());
    if (*v == nullptr) return int64_t{0};
    if (!(*v)->is_number_integer()) return malformed(where + "." + key, "expected an integer");
    int64_t n = 0;
    if ((*v)->is_number_unsigned()) {
        const auto u = (*v)->get<uint64_t>();
        if (u > static_cast<uint64_t>(INT64_MAX)) return malformed(where + "." + key, "too large");
        n = static_cast<int64_t>(u);
    } else {
        n = (*v)->get<int64_t>();
    }
    if (n < min || n > max) {
        return malformed(where + "." + key,
                         "must be between " + std::to_string(min) + " and " + std::to_string(max));
    }
    return n;
}

Result<uint64_t> get_uint(const json& object, const char* key, const std::string& where) {
    auto v = member(object, key, where, true);
    if (!v) return std::unexpected(v.error());
    if (!(*v)->is_number_unsigned()) {
        return malformed(where + "." + key, "expected a non-negative integer");
    }
    return (*v)->get<uint64_t>();
}

Result<bool> get_bool(const json& object, const char* key, const std::string& where) {
    auto v = member(object, key, where, true);
    if (!v) return std::unexpected(v.error());
    if (!(*v)->is_boolean()) return malformed(where + "." + key, "expected true or false");
    return (*v)->get<bool>();
}

Result<const json*> get_object(const json& object, const char* key, const std::string& where,
                               bool required = true) {
    auto v = member(object, key, where, required);
    if (!v) return std::unexpected(v.error());
    if (*v != nullptr && !(*v)->is_object()) {
        return malformed(where + "." + key, "expected an object");
    }
    return *v;
}

bool is_lower_hex(std::string_view s) {
    for (char c : s) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

// Cuts s to at most max bytes without splitting a UTF-8 sequence.
std::string truncate_utf8(std::string_view s, size_t max) {
    if (s.size() <= max) return std::string(s);
    size_t end = max;
    while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
    return std::string(s.substr(0, end)) + "...";
}

json summary_json(const connectors::ExtractSummary& s) {
    return {{"tables", s.tables},
            {"views", s.views},
            {"columns", s.columns},
            {"indexes", s.indexes},
            {"foreign_keys", s.foreign_keys},
            {"constraints", s.constraints},
            {"routines", s.routines}};
}

Result<connectors::ExtractSummary> summary_from(const json& object, const std::string& where) {
    if (auto st = only_keys(
            object, where,
            {"tables", "views", "columns", "indexes", "foreign_keys", "constraints", "routines"});
        !st) {
        return std::unexpected(st.error());
    }
    connectors::ExtractSummary s;
    std::pair<const char*, int64_t*> fields[] = {{"tables", &s.tables},
                                                 {"views", &s.views},
                                                 {"columns", &s.columns},
                                                 {"indexes", &s.indexes},
                                                 {"foreign_keys", &s.foreign_keys},
                                                 {"constraints", &s.constraints},
                                                 {"routines", &s.routines}};
    for (auto& [key, out] : fields) {
        auto v = get_int(object, key, where);
        if (!v) return std::unexpected(v.error());
        *out = *v;
    }
    return s;
}

json limits_json(const sandbox::Limits& l) {
    return {{"address_space_bytes", l.address_space_bytes},
            {"cpu_seconds", l.cpu_seconds},
            {"open_files", l.open_files},
            {"file_size_bytes", l.file_size_bytes},
            {"processes", l.processes}};
}

Result<sandbox::Limits> limits_from(const json& object, const std::string& where) {
    if (auto st = only_keys(
            object, where,
            {"address_space_bytes", "cpu_seconds", "open_files", "file_size_bytes", "processes"});
        !st) {
        return std::unexpected(st.error());
    }
    sandbox::Limits l;
    std::pair<const char*, uint64_t*> fields[] = {{"address_space_bytes", &l.address_space_bytes},
                                                  {"cpu_seconds", &l.cpu_seconds},
                                                  {"open_files", &l.open_files},
                                                  {"file_size_bytes", &l.file_size_bytes},
                                                  {"processes", &l.processes}};
    for (auto& [key, out] : fields) {
        auto v = get_uint(object, key, where);
        if (!v) return std::unexpected(v.error());
        *out = *v;
    }
    return l;
}

Result<SourceParams> source_from(const json& object, const std::string& where) {
    if (auto st = only_keys(
            object, where,
            {"name", "connector", "path", "host", "address", "database", "sensitivity", "port",
             "sslmode", "ca_file", "application_name", "statement_timeout_ms", "lock_timeout_ms"});
        !st) {
        return std::unexpected(st.error());
    }
    SourceParams s;
    std::string sslmode;
    std::pair<const char*, std::string*> strings[] = {{"name", &s.name},
                                                      {"connector", &s.connector},
                                                      {"path", &s.path},
                                                      {"host", &s.host},
                                                      {"address", &s.address},
                                                      {"database", &s.database},
                                                      {"sensitivity", &s.sensitivity},
                                                      {"sslmode", &sslmode},
                                                      {"ca_file", &s.ca_file},
                                                      {"application_name", &s.application_name}};
    for (auto& [key, out] : strings) {
        auto v = get_string(object, key, where, /*required=*/false);
        if (!v) return std::unexpected(v.error());
        *out = std::move(*v);
    }
    if (s.name.empty()) return malformed(where + ".name", "missing or empty");
    if (s.connector.empty()) return malformed(where + ".connector", "missing or empty");
    // The worker has no DNS: what it connects to must already be an IP.
    if (!s.address.empty()) {
        unsigned char buffer[sizeof(in6_addr)];
        if (::inet_pton(AF_INET, s.address.c_str(), buffer) != 1 &&
            ::inet_pton(AF_INET6, s.address.c_str(), buffer) != 1) {
            return malformed(where + ".address", "expected an IPv4 or IPv6 address");
        }
    }
    if (!sslmode.empty()) {
        if (sslmode != "disable" && sslmode != "require" && sslmode != "verify-ca" &&
            sslmode != "verify-full") {
            return malformed(where + ".sslmode",
                             "expected disable, require, verify-ca or verify-full");
        }
        s.sslmode = std::move(sslmode);
    }
    if (!s.ca_file.empty() && s.ca_file[0] != '/') {
        return malformed(where + ".ca_file", "expected an absolute path");
    }
    auto port = get_int(object, "port", where, /*required=*/false, 0, 65535);
    if (!port) return std::unexpected(port.error());
    s.port = static_cast<uint16_t>(*port);
    // One hour at most: a bound that is not one is no bound.
    constexpr int64_t kMaxTimeoutMs = 3'600'000;
    auto statement = get_int(object, "statement_timeout_ms", where, false, 1, kMaxTimeoutMs);
    if (!statement) return std::unexpected(statement.error());
    if (*statement != 0) s.statement_timeout_ms = *statement;
    auto lock = get_int(object, "lock_timeout_ms", where, false, 1, kMaxTimeoutMs);
    if (!lock) return std::unexpected(lock.error());
    if (*lock != 0) s.lock_timeout_ms = *lock;
    return s;
}

const char* const kLevels[] = {"info", "warn", "error"};

}  // namespace

std::string frame_type_name(uint8_t type) {
    switch (static_cast<FrameType>(type)) {
        case FrameType::job:
            return "job";
        case FrameType::credential:
            return "credential";
        case FrameType::start:
            return "start";
        case FrameType::ready:
            return "ready";
        case FrameType::log:
            return "log";
        case FrameType::progress:
            return "progress";
        case FrameType::chunk:
            return "chunk";
        case FrameType::result:
            return "result";
        case FrameType::failure:
            return "failure";
    }
    return "unknown frame type " + std::to_string(type);
}

std::string chunk_file_name(int64_t seq) {
    char name[64];
    std::snprintf(name, sizeof name, "chunk-%06lld.ndjson", static_cast<long long>(seq));
    return name;
}

std::string encode_job(const WorkerJob& job) {
    json filters = json::array();
    for (const auto& f : job.filters) filters.push_back(jobs::to_json(f));
    json source{{"name", job.source.name},
                {"connector", job.source.connector},
                {"path", job.source.path},
                {"host", job.source.host},
                {"address", job.source.address},
                {"database", job.source.database},
                {"sensitivity", job.source.sensitivity},
                {"port", job.source.port},
                {"sslmode", job.source.sslmode},
                {"ca_file", job.source.ca_file},
                {"application_name", job.source.application_name},
                {"statement_timeout_ms", job.source.statement_timeout_ms},
                {"lock_timeout_ms", job.source.lock_timeout_ms}};
    json body{
        {"job_id", job.job_id},
        {"operation", job.operation},
        {"source", std::move(source)},
        {"filters", std::move(filters)},
        {"limits", {{"max_objects", job.limits.max_objects}, {"max_bytes", job.limits.max_bytes}}},
        {"chunk_target_bytes", job.chunk_target_bytes},
        {"spool_dir", job.spool_dir},
        {"sandbox", {{"strict", job.sandbox.strict}, {"limits", limits_json(job.sandbox.limits)}}}};
    if (job.baseline) body["baseline"] = true;
    return dump(body);
}

Result<WorkerJob> decode_job(std::string_view payload) {
    const std::string where = "job";
    auto value = parse(payload, where);
    if (!value) return std::unexpected(value.error());
    const json& j = *value;
    if (auto st = only_keys(j, where,
                            {"job_id", "operation", "source", "filters", "limits",
                             "chunk_target_bytes", "spool_dir", "sandbox", "baseline"});
        !st) {
        return std::unexpected(st.error());
    }
    WorkerJob job;
    auto job_id = get_string(j, "job_id", where, true, 256);
    if (!job_id) return std::unexpected(job_id.error());
    if (job_id->empty()) return malformed(where + ".job_id", "empty");
    job.job_id = std::move(*job_id);
    auto operation = get_string(j, "operation", where, true, 64);
    if (!operation) return std::unexpected(operation.error());
    job.operation = std::move(*operation);

    auto source = get_object(j, "source", where);
    if (!source) return std::unexpected(source.error());
    auto params = source_from(**source, where + ".source");
    if (!params) return std::unexpected(params.error());
    job.source = std::move(*params);

    auto filters = member(j, "filters", where, false);
    if (!filters) return std::unexpected(filters.error());
    if (*filters != nullptr) {
        if (!(*filters)->is_array()) return malformed(where + ".filters", "expected an array");
        for (size_t i = 0; i < (*filters)->size(); ++i) {
            auto f = jobs::filters_from_json((**filters)[i],
                                             where + ".filters[" + std::to_string(i) + "]");
            if (!f) return std::unexpected(f.error());
            job.filters.push_back(std::move(*f));
        }
    }

    auto limits = get_object(j, "limits", where, false);
    if (!limits) return std::unexpected(limits.error());
    if (*limits != nullptr) {
        const std::string lw = where + ".limits";
        if (auto st = only_keys(**limits, lw, {"max_objects", "max_bytes"}); !st) {
            return std::unexpected(st.error());
        }
        auto objects = get_int(**limits, "max_objects", lw, false);
        if (!objects) return std::unexpected(objects.error());
        auto bytes = get_int(**limits, "max_bytes", lw, false);
        if (!bytes) return std::unexpected(bytes.error());
        job.limits = {*objects, *bytes};
    }

    auto target = get_int(j, "chunk_target_bytes", where, false, 0,
                          static_cast<int64_t>(protocol::kMaxChunkBytes));
    if (!target) return std::unexpected(target.error());
    if (*target > 0) job.chunk_target_bytes = static_cast<size_t>(*target);

    auto spool = get_string(j, "spool_dir", where, true);
    if (!spool) return std::unexpected(spool.error());
    if (spool->empty() || (*spool)[0] != '/') {
        return malformed(where + ".spool_dir", "expected an absolute path");
    }
    job.spool_dir = std::move(*spool);

    auto sb = get_object(j, "sandbox", where, false);
    if (!sb) return std::unexpected(sb.error());
    if (*sb != nullptr) {
        const std::string sw = where + ".sandbox";
        if (auto st = only_keys(**sb, sw, {"strict", "limits"}); !st) {
            return std::unexpected(st.error());
        }
        auto strict = get_bool(**sb, "strict", sw);
        if (!strict) return std::unexpected(strict.error());
        job.sandbox.strict = *strict;
        auto l = get_object(**sb, "limits", sw);
        if (!l) return std::unexpected(l.error());
        auto parsed = limits_from(**l, sw + ".limits");
        if (!parsed) return std::unexpected(parsed.error());
        job.sandbox.limits = *parsed;
    }

    if (j.contains("baseline")) {
        auto baseline = get_bool(j, "baseline", where);
        if (!baseline) return std::unexpected(baseline.error());
        job.baseline = *baseline;
    }
    if (job.baseline && job.operation != protocol::kOperationExtractMetadata) {
        return malformed(where + ".baseline",
                         "only for " + std::string(protocol::kOperationExtractMetadata));
    }
    return job;
}

namespace {

void encode_credential_into(std::string& buffer, const Credential& credential) {
    const auto value = credential.value.reveal();
    // Reserved once: no reallocation leaves a copy of the value behind.
    buffer.clear();
    buffer.reserve(2 + credential.name.size() + value.size());
    buffer += static_cast<char>((credential.name.size() >> 8) & 0xFF);
    buffer += static_cast<char>(credential.name.size() & 0xFF);
    buffer += credential.name;
    buffer.append(value.data(), value.size());
}

}  // namespace

Status send_credential(Channel& channel, const Credential& credential, std::string& buffer) {
    if (credential.name.empty() || credential.name.size() > kMaxCredentialNameBytes) {
        return fail(ErrorCode::invalid_argument, "credential name must be 1 to 64 bytes");
    }
    encode_credential_into(buffer, credential);
    Status sent = channel.send(static_cast<uint8_t>(FrameType::credential), buffer);
    secrets::wipe(buffer);
    return sent;
}

Status send_credential(Channel& channel, const Credential& credential) {
    std::string buffer;
    return send_credential(channel, credential, buffer);
}

Result<Credential> decode_credential(std::string& payload) {
    struct WipeOnExit {
        std::string& s;
        ~WipeOnExit() { secrets::wipe(s); }
    } wipe_on_exit{payload};
    if (payload.size() < 2) return malformed("credential", "shorter than its name length");
    const size_t name_length = (static_cast<size_t>(static_cast<uint8_t>(payload[0])) << 8) |
                               static_cast<uint8_t>(payload[1]);
    if (name_length == 0 || name_length > kMaxCredentialNameBytes) {
        return malformed("credential", "name must be 1 to 64 bytes");
    }
    if (payload.size() - 2 < name_length) return malformed("credential", "name is truncated");
    std::string name = payload.substr(2, name_length);
    if (name != "user" && name != "password") {
        // Names are ours, not secret; still bound what an error echoes.
        return malformed("credential",
                         "unknown credential name \"" + truncate_utf8(name, 64) + "\"");
    }
    return Credential{std::move(name), secrets::SecretValue::copy_of(
                                           std::string_view(payload).substr(2 + name_length))};
}

std::string encode_ready(const sandbox::Report& report) {
    json layers = json::array();
    for (const auto& l : report.layers) {
        layers.push_back({{"layer", sandbox::layer_name(l.layer)},
                          {"applied", l.applied},
                          {"detail", l.detail}});
    }
    return dump({{"layers", std::move(layers)}});
}

Result<Ready> decode_ready(std::string_view payload) {
    const std::string where = "ready";
    auto value = parse(payload, where);
    if (!value) return std::unexpected(value.error());
    if (auto st = only_keys(*value, where, {"layers"}); !st) return std::unexpected(st.error());
    auto layers = member(*value, "layers", where, true);
    if (!layers) return std::unexpected(layers.error());
    if (!(*layers)->is_array() || (*layers)->size() > 16) {
        return malformed(where + ".layers", "expected an array of at most 16 layers");
    }
    static constexpr sandbox::Layer kAll[] = {
        sandbox::Layer::no_new_privs, sandbox::Layer::capabilities, sandbox::Layer::rlimits,
        sandbox::Layer::landlock_fs,  sandbox::Layer::landlock_net, sandbox::Layer::seccomp};
    Ready ready;
    for (size_t i = 0; i < (*layers)->size(); ++i) {
        const std::string lw = where + ".layers[" + std::to_string(i) + "]";
        const json& l = (**layers)[i];
        if (!l.is_object()) return malformed(lw, "expected an object");
        if (auto st = only_keys(l, lw, {"layer", "applied", "detail"}); !st) {
            return std::unexpected(st.error());
        }
        auto name = get_string(l, "layer", lw, true, 64);
        if (!name) return std::unexpected(name.error());
        auto applied = get_bool(l, "applied", lw);
        if (!applied) return std::unexpected(applied.error());
        auto detail = get_string(l, "detail", lw, false, 1024);
        if (!detail) return std::unexpected(detail.error());
        std::optional<sandbox::Layer> layer;
        for (auto candidate : kAll) {
            if (*name == sandbox::layer_name(candidate)) layer = candidate;
        }
        if (!layer) return malformed(lw + ".layer", "unknown layer \"" + *name + "\"");
        ready.report.layers.push_back({*layer, *applied, std::move(*detail)});
    }
    return ready;
}

std::string encode_log(const LogLine& line) {
    json fields = line.fields.is_object() ? line.fields : json::object();
    std::string out = dump({{"level", line.level}, {"message", line.message}, {"fields", fields}});
    if (out.size() <= kMaxLogBytes) return out;
    // Too long: the fields go, and the message is cut to what fits.
    return dump({{"level", line.level},
                 {"message", truncate_utf8(line.message, kMaxLogBytes / 2)},
                 {"fields", json::object()}});
}

Result<LogLine> decode_log(std::string_view payload) {
    const std::string where = "log";
    if (payload.size() > kMaxLogBytes) {
        return malformed(where, "payload exceeds " + std::to_string(kMaxLogBytes) + " bytes");
    }
    auto value = parse(payload, where);
    if (!value) return std::unexpected(value.error());
    if (auto st = only_keys(*value, where, {"level", "message", "fields"}); !st) {
        return std::unexpected(st.error());
    }
    LogLine line;
    auto level = get_string(*value, "level", where, true, 16);
    if (!level) return std::unexpected(level.error());
    bool known = false;
    for (const char* l : kLevels) known = known || *level == l;
    if (!known) return malformed(where + ".level", "expected info, warn or error");
    line.level = std::move(*level);
    auto message = get_string(*value, "message", where, true, kMaxLogBytes);
    if (!message) return std::unexpected(message.error());
    line.message = std::move(*message);
    auto fields = get_object(*value, "fields", where, false);
    if (!fields) return std::unexpected(fields.error());
    line.fields = *fields != nullptr ? **fields : json::object();
    return line;
}

std::string encode_progress(const Progress& p) {
    return dump({{"objects", p.objects}, {"bytes", p.bytes}, {"chunks", p.chunks}});
}

Result<Progress> decode_progress(std::string_view payload) {
    const std::string where = "progress";
    auto value = parse(payload, where);
    if (!value) return std::unexpected(value.error());
    if (auto st = only_keys(*value, where, {"objects", "bytes", "chunks"}); !st) {
        return std::unexpected(st.error());
    }
    Progress p;
    auto objects = get_int(*value, "objects", where);
    if (!objects) return std::unexpected(objects.error());
    auto bytes = get_int(*value, "bytes", where);
    if (!bytes) return std::unexpected(bytes.error());
    auto chunks = get_int(*value, "chunks", where);
    if (!chunks) return std::unexpected(chunks.error());
    p = {*objects, *bytes, *chunks};
    return p;
}

std::string encode_chunk(const ChunkMessage& c) {
    return dump({{"seq", c.seq}, {"sha256", c.sha256_hex}, {"size", c.size}, {"file", c.file}});
}

Result<ChunkMessage> decode_chunk(std::string_view payload) {
    const std::string where = "chunk";
    auto value = parse(payload, where);
    if (!value) return std::unexpected(value.error());
    if (auto st = only_keys(*value, where, {"seq", "sha256", "size", "file"}); !st) {
        return std::unexpected(st.error());
    }
    ChunkMessage c;
    auto seq = get_int(*value, "seq", where, true, 0, 999999);
    if (!seq) return std::unexpected(seq.error());
    c.seq = *seq;
    auto sha = get_string(*value, "sha256", where, true, 64);
    if (!sha) return std::unexpected(sha.error());
    if (sha->size() != 64 || !is_lower_hex(*sha)) {
        return malformed(where + ".sha256", "expected 64 lowercase hex characters");
    }
    c.sha256_hex = std::move(*sha);
    auto size =
        get_int(*value, "size", where, true, 0, static_cast<int64_t>(protocol::kMaxChunkBytes));
    if (!size) return std::unexpected(size.error());
    c.size = *size;
    auto file = get_string(*value, "file", where, true, 64);
    if (!file) return std::unexpected(file.error());
    // The supervisor opens this name inside the spool dir: only the one
    // name seq allows, so no '/', no "..", no other file of the spool.
    if (*file != chunk_file_name(c.seq)) {
        return malformed(where + ".file", "expected \"" + chunk_file_name(c.seq) + "\"");
    }
    c.file = std::move(*file);
    return c;
}

Result<std::string> encode_finished(const Finished& finished) {
    json body{{"summary", summary_json(finished.summary)}};
    if (finished.delta) body["delta"] = true;
    if (finished.result) {
        std::string result = dump(*finished.result);
        if (result.size() > kMaxResultBytes) {
            return fail(ErrorCode::invalid_argument,
                        "the operation's result is " + std::to_string(result.size()) +
                            " bytes, more than the limit of " + std::to_string(kMaxResultBytes));
        }
        body["result"] = *finished.result;
    }
    return dump(body);
}

Result<Finished> decode_finished(std::string_view payload) {
    const std::string where = "result";
    // The summary's few numbers fit in the slack above the result's own limit.
    if (payload.size() > kMaxResultBytes + 1024) {
        return malformed(where, "payload exceeds " + std::to_string(kMaxResultBytes) + " bytes");
    }
    auto value = parse(payload, where);
    if (!value) return std::unexpected(value.error());
    if (auto st = only_keys(*value, where, {"summary", "result", "delta"}); !st) {
        return std::unexpected(st.error());
    }
    Finished f;
    if (value->contains("delta")) {
        auto delta = get_bool(*value, "delta", where);
        if (!delta) return std::unexpected(delta.error());
        f.delta = *delta;
    }
    auto summary = get_object(*value, "summary", where);
    if (!summary) return std::unexpected(summary.error());
    auto s = summary_from(**summary, where + ".summary");
    if (!s) return std::unexpected(s.error());
    f.summary = *s;
    auto result = get_object(*value, "result", where, false);
    if (!result) return std::unexpected(result.error());
    if (*result != nullptr) f.result = **result;
    return f;
}

std::string encode_failure(const Failed& failure) {
    return dump({{"reason_code", truncate_utf8(failure.reason_code, kMaxReasonCodeBytes)},
                 {"message", truncate_utf8(failure.message, kMaxFailureMessageBytes)}});
}

Result<Failed> decode_failure(std::string_view payload) {
    const std::string where = "failure";
    auto value = parse(payload, where);
    if (!value) return std::unexpected(value.error());
    if (auto st = only_keys(*value, where, {"reason_code", "message"}); !st) {
        return std::unexpected(st.error());
    }
    Failed f;
    auto code = get_string(*value, "reason_code", where, true, kMaxReasonCodeBytes);
    if (!code) return std::unexpected(code.error());
    if (code->empty()) return malformed(where + ".reason_code", "empty");
    for (char c : *code) {
        if (!((c >= 'a' && c <= 'z') || c == '_')) {
            return malformed(where + ".reason_code", "expected lowercase letters and '_'");
        }
    }
    f.reason_code = std::move(*code);
    auto message = get_string(*value, "message", where, true, kMaxFailureMessageBytes + 3);
    if (!message) return std::unexpected(message.error());
    f.message = std::move(*message);
    return f;
}

}  // namespace sa::agent::worker
