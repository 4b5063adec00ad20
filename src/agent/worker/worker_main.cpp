#include "agent/worker/worker_main.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/connectors/factory.h"
#include "agent/delivery/chunk_writer.h"
#include "agent/jobs/filters.h"
#include "agent/sandbox/sandbox.h"
#include "agent/secrets/hardening.h"
#include "agent/worker/unique_fd.h"
#include "common/crypto/encoding.h"

namespace sa::agent::worker {
namespace {

using nlohmann::json;
namespace reason = failure_reason;

// The supervisor sends the whole input at once; this only bounds a stuck one.
constexpr auto kInputTimeout = std::chrono::seconds(60);

std::string replace_all(std::string message, const std::string& what, const std::string& with) {
    if (what.empty()) return message;
    for (size_t at = message.find(what); at != std::string::npos;
         at = message.find(what, at + with.size())) {
        message.replace(at, what.size(), with);
    }
    return message;
}

// Messages leave the agent (the supervisor reports failures to the hub): the
// source's path is replaced by its logical name wherever a library put it,
// and a network source's trust-root file (ca_file) is not named either.
std::string scrub(std::string message, const SourceParams& source) {
    message = replace_all(std::move(message), source.path, "\"" + source.name + "\"");
    return replace_all(std::move(message), source.ca_file, "the source's ca_file");
}

class Worker final {
  public:
    explicit Worker(Channel& channel) : channel_(channel) {}

    int run(const AfterReadyHook& after_ready);

  private:
    struct Input {
        WorkerJob job;
        std::vector<Credential> credentials;
    };

    Result<Input> read_input();
    sandbox::Spec sandbox_spec(const WorkerJob& job) const;
    int extract(const WorkerJob& job);
    int test_connection(const WorkerJob& job);
    int preflight(const WorkerJob& job);
    int list_schemas(const WorkerJob& job);

    void log(const char* level, std::string message, json fields = json::object()) {
        (void)channel_.send(static_cast<uint8_t>(FrameType::log),
                            encode_log({level, std::move(message), std::move(fields)}));
    }
    int failed(const char* reason_code, std::string message) {
        (void)channel_.send(static_cast<uint8_t>(FrameType::failure),
                            encode_failure({reason_code, std::move(message)}));
        return kExitFailed;
    }
    int succeeded(const Finished& finished) {
        auto payload = encode_finished(finished);
        if (!payload) return failed(reason::kExtractionFailed, payload.error().message);
        if (auto st = channel_.send(static_cast<uint8_t>(FrameType::result), *payload); !st) {
            return kExitProtocolError;
        }
        return kExitSucceeded;
    }

    Channel& channel_;
    // From the credential frames; engines without authentication ignore them.
    connectors::SourceCredentials credentials_;
};

Result<Worker::Input> Worker::read_input() {
    Input input;
    bool have_job = false;
    for (;;) {
        auto received = channel_.receive(kInputTimeout);
        if (!received) return std::unexpected(received.error());
        if (std::holds_alternative<TimedOut>(*received)) {
            return fail(ErrorCode::unavailable, "the supervisor sent no input in time");
        }
        if (std::holds_alternative<Closed>(*received)) {
            return fail(ErrorCode::unavailable, "the supervisor closed the channel before start");
        }
        Frame& frame = std::get<Frame>(*received);
        const auto type = static_cast<FrameType>(frame.type);
        if (!have_job) {
            if (type != FrameType::job) {
                if (type == FrameType::credential) secrets::wipe(frame.payload);
                return fail(ErrorCode::invalid_argument,
                            "expected a job frame, got " + frame_type_name(frame.type));
            }
            auto job = decode_job(frame.payload);
            if (!job) return std::unexpected(job.error());
            input.job = std::move(*job);
            have_job = true;
        } else if (type == FrameType::credential) {
            auto credential = decode_credential(frame.payload);  // wipes the payload
            if (!credential) return std::unexpected(credential.error());
            if (input.credentials.size() == kMaxCredentials) {
                return fail(ErrorCode::invalid_argument,
                            "more than " + std::to_string(kMaxCredentials) + " credentials");
            }
            input.credentials.push_back(std::move(*credential));
        } else if (type == FrameType::start) {
            if (!frame.payload.empty()) {
                return fail(ErrorCode::invalid_argument, "the start frame carries a payload");
            }
            return input;
        } else {
            return fail(ErrorCode::invalid_argument,
                        "expected a credential or start frame, got " + frame_type_name(frame.type));
        }
    }
}

sandbox::Spec Worker::sandbox_spec(const WorkerJob& job) const {
    sandbox::Spec spec;
    spec.limits = job.sandbox.limits;
    spec.strict = job.sandbox.strict;
    spec.read_only_paths = sandbox::default_read_only_paths();
    if (job.source.connector == "sqlite" && !job.source.path.empty()) {
        // The file and the siblings SQLite may consult, never their
        // directory: the worker must not read the database's neighbours.
        for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
            std::error_code ec;
            const std::string path = job.source.path + suffix;
            if (std::filesystem::exists(path, ec)) spec.read_only_paths.push_back(path);
        }
    }
    if (!job.source.ca_file.empty()) {
        // The trust roots of a network source (libpq reads them at connect time).
        std::error_code ec;
        if (std::filesystem::exists(job.source.ca_file, ec)) {
            spec.read_only_paths.push_back(job.source.ca_file);
        }
    }
    spec.read_write_paths = {job.spool_dir};
    if (job.source.port != 0) spec.connect_ports = {job.source.port};
    return spec;
}

int Worker::run(const AfterReadyHook& after_ready) {
    if (auto hardened = secrets::harden_process(); !hardened) {
        failed(reason::kSandboxUnavailable, hardened.error().message);
        return kExitSandboxUnavailable;
    }
    auto input = read_input();
    if (!input) {
        failed(reason::kProtocolError, "worker input refused: " + input.error().message);
        return kExitProtocolError;
    }
    // The server's administrators see which job a session belongs to.
    if (input->job.source.application_name.empty()) {
        input->job.source.application_name = input->job.job_id;
    }
    const WorkerJob& job = input->job;
    for (auto& credential : input->credentials) {
        auto& slot = credential.name == "user" ? credentials_.user : credentials_.password;
        slot = std::move(credential.value);
    }

    auto report = sandbox::apply(sandbox_spec(job));
    if (!report) {
        failed(reason::kSandboxUnavailable, report.error().message);
        return kExitSandboxUnavailable;
    }
    for (const auto& layer : report->layers) {
        if (!layer.applied) {
            log("warn", "sandbox layer not applied",
                {{"layer", sandbox::layer_name(layer.layer)}, {"detail", layer.detail}});
        }
    }
    if (auto st = channel_.send(static_cast<uint8_t>(FrameType::ready), encode_ready(*report));
        !st) {
        return kExitProtocolError;
    }
    if (after_ready) {
        if (auto code = after_ready(job, channel_)) return *code;
    }

    // Credentials live in credentials_ (wiped with the worker); SQLite ignores them.
    const std::string& op = job.operation;
    if (op == protocol::kOperationExtractMetadata) return extract(job);
    if (op == "test_connection") return test_connection(job);
    if (op == "preflight") return preflight(job);
    if (op == "list_schemas") return list_schemas(job);
    return failed(reason::kUnsupportedOperation,
                  "operation \"" + op + "\" is not supported by this worker");
}

// Filters the connector's stream (objects the filters reject are dropped and
// not counted; connectors ask wants() first so they are not even read),
// enforces the object limit and counts what it keeps.
class FilteringSink final : public connectors::MetadataSink {
  public:
    FilteringSink(const jobs::CompiledFilters& filters, int64_t max_objects,
                  connectors::MetadataSink& next)
        : filters_(filters), max_objects_(max_objects), next_(next) {}

    bool wants(std::string_view schema, std::string_view relation) const override {
        return filters_.table_allowed(schema, relation);
    }
    bool wants_schema(std::string_view schema) const override {
        return filters_.schema_allowed(schema);
    }
    Status write(const metadata::Table& table) override {
        if (!wants(table.schema, table.name)) return {};
        if (auto st = count_object(); !st) return st;
        if (auto st = next_.write(table); !st) return st;
        connectors::add_to_summary(summary_, table);
        return {};
    }
    Status write(const metadata::Routine& routine) override {
        if (!wants_schema(routine.schema)) return {};
        if (auto st = count_object(); !st) return st;
        if (auto st = next_.write(routine); !st) return st;
        summary_.routines += 1;
        return {};
    }

    const connectors::ExtractSummary& summary() const { return summary_; }
    int64_t objects() const { return summary_.tables + summary_.views + summary_.routines; }
    bool limit_exceeded() const { return limit_exceeded_; }

  private:
    Status count_object() {
        if (max_objects_ > 0 && objects() >= max_objects_) {
            limit_exceeded_ = true;
            return fail(
                ErrorCode::permission_denied,
                "the job's limit of " + std::to_string(max_objects_) + " objects was exceeded");
        }
        return {};
    }

    const jobs::CompiledFilters& filters_;
    int64_t max_objects_;
    connectors::MetadataSink& next_;
    connectors::ExtractSummary summary_;
    bool limit_exceeded_ = false;
};

// temp name, fsync, rename, fsync the directory: the supervisor never sees a
// partial chunk under its final name.
Status write_chunk_file(const std::string& dir, const std::string& name, std::string_view body) {
    const std::string tmp = dir + "/." + name + ".tmp";
    const std::string final_path = dir + "/" + name;
    auto error = [&](const char* what) {
        return Error{ErrorCode::io, std::string("cannot ") + what + " chunk file " + name +
                                        " in the spool: " + std::strerror(errno)};
    };
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd.valid()) return std::unexpected(error("create"));
    size_t off = 0;
    while (off < body.size()) {
        ssize_t n = ::write(fd.get(), body.data() + off, body.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            Error e = error("write");
            ::unlink(tmp.c_str());
            return std::unexpected(e);
        }
        off += static_cast<size_t>(n);
    }
    if (::fsync(fd.get()) != 0) {
        Error e = error("sync");
        ::unlink(tmp.c_str());
        return std::unexpected(e);
    }
    fd.reset();
    if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
        Error e = error("rename");
        ::unlink(tmp.c_str());
        return std::unexpected(e);
    }
    UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir_fd.valid() || ::fsync(dir_fd.get()) != 0) {
        return std::unexpected(error("sync the directory of"));
    }
    return {};
}

int Worker::extract(const WorkerJob& job) {
    auto filters = jobs::CompiledFilters::compile(job.filters);
    if (!filters) return failed(reason::kExtractionFailed, filters.error().message);
    auto connector = connectors::make_connector(job.source, credentials_);
    if (!connector) {
        return failed(reason::kConnectionFailed, scrub(connector.error().message, job.source));
    }

    int64_t bytes = 0;
    std::optional<Error> limit_error;
    std::optional<Error> channel_error;
    FilteringSink* counter = nullptr;
    delivery::ChunkWriter writer(job.chunk_target_bytes, [&](delivery::Chunk&& chunk) -> Status {
        const auto size = static_cast<int64_t>(chunk.body.size());
        if (job.limits.max_bytes > 0 && bytes + size > job.limits.max_bytes) {
            limit_error = Error{ErrorCode::permission_denied,
                                "the job's limit of " + std::to_string(job.limits.max_bytes) +
                                    " bytes was exceeded"};
            return std::unexpected(*limit_error);
        }
        const std::string file = chunk_file_name(chunk.seq);
        if (auto st = write_chunk_file(job.spool_dir, file, chunk.body); !st) return st;
        bytes += size;
        const ChunkMessage message{chunk.seq, crypto::hex_encode(chunk.sha256), size, file};
        if (auto st = channel_.send(static_cast<uint8_t>(FrameType::chunk), encode_chunk(message));
            !st) {
            channel_error = st.error();
            return st;
        }
        const Progress progress{counter != nullptr ? counter->objects() : 0, bytes, chunk.seq + 1};
        if (auto st =
                channel_.send(static_cast<uint8_t>(FrameType::progress), encode_progress(progress));
            !st) {
            channel_error = st.error();
            return st;
        }
        return {};
    });
    FilteringSink sink(*filters, job.limits.max_objects, writer);
    counter = &sink;

    auto extracted = (*connector)->extract(sink);
    Status finished = extracted ? writer.finish() : Status{};
    if (channel_error) return kExitProtocolError;  // the supervisor has gone
    if (sink.limit_exceeded()) {
        return failed(reason::kLimitExceeded, "the job's limit of " +
                                                  std::to_string(job.limits.max_objects) +
                                                  " objects was exceeded");
    }
    if (limit_error) return failed(reason::kLimitExceeded, limit_error->message);
    if (!extracted) {
        return failed(reason::kExtractionFailed, scrub(extracted.error().message, job.source));
    }
    if (!finished) {
        return failed(reason::kExtractionFailed, scrub(finished.error().message, job.source));
    }
    return succeeded(Finished{sink.summary(), std::nullopt});
}

int Worker::test_connection(const WorkerJob& job) {
    const auto started = std::chrono::steady_clock::now();
    auto connector = connectors::make_connector(job.source, credentials_);
    if (!connector) {
        return failed(reason::kConnectionFailed, scrub(connector.error().message, job.source));
    }
    auto info = (*connector)->test_connection();
    if (!info) return failed(reason::kConnectionFailed, scrub(info.error().message, job.source));
    const auto latency = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started);
    return succeeded(Finished{{},
                              json{{"connected", true},
                                   {"server_version", info->server_version},
                                   {"latency_ms", latency.count()}}});
}

int Worker::preflight(const WorkerJob& job) {
    auto connector = connectors::make_connector(job.source, credentials_);
    if (!connector) {
        // A source that cannot be opened is the preflight's finding, not its failure.
        json checks = json::array();
        checks.push_back({{"name", "open"},
                          {"ok", false},
                          {"detail", scrub(connector.error().message, job.source)}});
        return succeeded(Finished{{}, json{{"server_version", ""}, {"checks", checks}}});
    }
    auto report = (*connector)->preflight();
    if (!report) {
        return failed(reason::kExtractionFailed, scrub(report.error().message, job.source));
    }
    json checks = json::array();
    for (const auto& check : report->checks) {
        checks.push_back(
            {{"name", check.name}, {"ok", check.ok}, {"detail", scrub(check.detail, job.source)}});
    }
    return succeeded(
        Finished{{}, json{{"server_version", report->server_version}, {"checks", checks}}});
}

int Worker::list_schemas(const WorkerJob& job) {
    auto filters = jobs::CompiledFilters::compile(job.filters);
    if (!filters) return failed(reason::kExtractionFailed, filters.error().message);
    auto connector = connectors::make_connector(job.source, credentials_);
    if (!connector) {
        return failed(reason::kConnectionFailed, scrub(connector.error().message, job.source));
    }
    auto schemas = (*connector)->list_schemas();
    if (!schemas) {
        return failed(reason::kExtractionFailed, scrub(schemas.error().message, job.source));
    }
    json list = json::array();
    for (const auto& s : *schemas) {
        if (!filters->schema_allowed(s.schema)) continue;
        list.push_back({{"database", s.database}, {"schema", s.schema}, {"tables", s.tables}});
    }
    return succeeded(Finished{{}, json{{"schemas", list}}});
}

}  // namespace

int run_worker(int channel_fd, const AfterReadyHook& after_ready) {
    Channel channel{UniqueFd(channel_fd)};
    try {
        return Worker(channel).run(after_ready);
    } catch (const std::exception& e) {
        // A broken invariant: report it rather than die without a word.
        (void)channel.send(
            static_cast<uint8_t>(FrameType::failure),
            encode_failure({reason::kExtractionFailed, std::string("worker error: ") + e.what()}));
        return kExitFailed;
    } catch (...) {
        (void)channel.send(static_cast<uint8_t>(FrameType::failure),
                           encode_failure({reason::kExtractionFailed, "worker error"}));
        return kExitFailed;
    }
}

int run_worker(int channel_fd) {
    return run_worker(channel_fd, {});
}

}  // namespace sa::agent::worker
