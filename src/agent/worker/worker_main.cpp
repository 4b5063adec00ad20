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
#include "agent/worker/sinks.h"
#include "common/crypto/encoding.h"
#include "common/util/files.h"
#include "common/util/unique_fd.h"

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

// temp name, fsync, rename, fsync the directory: the supervisor never sees a
// partial chunk under its final name.
Status write_chunk_file(const std::string& dir, const std::string& name, std::string_view body) {
    const std::string tmp = dir + "/." + name + ".tmp";
    const std::string final_path = dir + "/" + name;
    auto error = [&](const char* what) {
        return Error{ErrorCode::io, std::string("cannot ") + what + " chunk file " + name +
                                        " in the spool: " + std::strerror(errno)};
    };
    util::UniqueFd fd(
        ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
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
    util::UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir_fd.valid() || ::fsync(dir_fd.get()) != 0) {
        return std::unexpected(error("sync the directory of"));
    }
    return {};
}

// A file of the spool written in pieces and published whole: a temp name
// while it grows; commit() syncs it, renames it into place and syncs the
// directory. Removed when not committed.
class SpoolFile final {
  public:
    SpoolFile(std::string dir, std::string name)
        : dir_(std::move(dir)),
          name_(std::move(name)),
          tmp_(dir_ + "/." + name_ + ".tmp"),
          fd_(::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600)) {
        if (!fd_.valid()) error_ = error("create");
    }
    SpoolFile(const SpoolFile&) = delete;
    SpoolFile& operator=(const SpoolFile&) = delete;
    ~SpoolFile() {
        if (!committed_) ::unlink(tmp_.c_str());
    }

    Status append(std::string_view text) {
        if (error_) return std::unexpected(*error_);
        buffer_ += text;
        if (buffer_.size() >= 64 * 1024) return flush();
        return {};
    }
    Status commit() {
        if (auto st = flush(); !st) return st;
        if (::fsync(fd_.get()) != 0) return std::unexpected(error("sync"));
        fd_.reset();
        const std::string final_path = dir_ + "/" + name_;
        if (::rename(tmp_.c_str(), final_path.c_str()) != 0) {
            return std::unexpected(error("rename"));
        }
        committed_ = true;
        util::UniqueFd dir_fd(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!dir_fd.valid() || ::fsync(dir_fd.get()) != 0) {
            return std::unexpected(error("sync the directory of"));
        }
        return {};
    }

  private:
    Error error(const char* what) const {
        return Error{ErrorCode::io, std::string("cannot ") + what + " " + name_ +
                                        " in the spool: " + std::strerror(errno)};
    }
    Status flush() {
        if (error_) return std::unexpected(*error_);
        size_t off = 0;
        while (off < buffer_.size()) {
            ssize_t n = ::write(fd_.get(), buffer_.data() + off, buffer_.size() - off);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                error_ = error("write");
                return std::unexpected(*error_);
            }
            off += static_cast<size_t>(n);
        }
        buffer_.clear();
        return {};
    }

    std::string dir_, name_, tmp_;
    util::UniqueFd fd_;
    std::string buffer_;
    std::optional<Error> error_;
    bool committed_ = false;
};

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
    // An incremental run: the objects of the last accepted run, left by the
    // supervisor. Unreadable, the run is a full one (always correct; the
    // result frame says which it was).
    std::optional<std::vector<delivery::FingerprintEntry>> baseline;
    if (job.baseline) {
        auto text = util::read_file(job.spool_dir + "/" + delivery::kBaselineFile);
        auto parsed =
            text ? delivery::parse_entries(*text)
                 : Result<std::vector<delivery::FingerprintEntry>>(std::unexpected(text.error()));
        if (parsed) {
            baseline = std::move(*parsed);
        } else {
            log("warn", "the baseline cannot be used; this run delivers everything",
                {{"error", scrub(parsed.error().message, job.source)}});
        }
    }
    // Every object seen, for the supervisor's next baseline.
    SpoolFile fingerprints(job.spool_dir, delivery::kFingerprintsFile);
    DeltaSink delta(std::move(baseline), *filters, writer,
                    [&](const delivery::FingerprintEntry& entry) {
                        return fingerprints.append(delivery::entry_line(entry));
                    });
    FilteringSink sink(*filters, job.limits.max_objects, delta);
    counter = &sink;

    auto extracted = (*connector)->extract(sink);
    Status finished = extracted ? delta.finish() : Status{};
    if (extracted && finished) finished = writer.finish();
    if (extracted && finished) finished = fingerprints.commit();
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
    if (delta.delta()) {
        log("info", "incremental run",
            {{"seen", sink.objects()},
             {"unchanged", delta.unchanged()},
             {"removed", delta.removed()}});
    }
    Finished result{delta.summary(), std::nullopt};
    result.delta = delta.delta();
    return succeeded(result);
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
    Channel channel{util::UniqueFd(channel_fd)};
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
