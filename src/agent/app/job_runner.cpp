#include "agent/app/job_runner.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <optional>
#include <set>
#include <system_error>

#include "agent/delivery/chunk_writer.h"
#include "agent/delivery/fingerprint_state.h"
#include "agent/jobs/refusal_reasons.h"
#include "agent/worker/worker_session.h"
#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"
#include "common/jose/jws.h"
#include "common/protocol/protocol.h"
#include "common/util/files.h"
#include "common/util/time.h"

namespace sa::agent::app {
namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

observe::Fields ids(const std::string& job_id, const std::string& lease_id) {
    return {{"job_id", job_id}, {"lease_id", lease_id}};
}

// The key id the (not yet verified) JWS claims to be signed with; "" when
// the header cannot be decoded (verification will refuse it).
std::string claimed_kid(const std::string& compact) {
    auto decoded = jose::decode_unverified(compact);
    if (!decoded || !decoded->header.is_object()) return "";
    const auto kid = decoded->header.find("kid");
    return kid != decoded->header.end() && kid->is_string() ? kid->get<std::string>() : "";
}

constexpr const char* kAuditAbortMessage =
    "the agent's audit log cannot be written; delivery aborted";

// A lease not renewed this close to its end is treated as lost: the hub may
// hand the job to another agent any moment.
constexpr std::chrono::seconds kLeaseSafetyMargin{5};
// A failed heartbeat is retried this soon (well inside the lease).
constexpr std::chrono::seconds kHeartbeatRetry{2};
// How long one wait for a worker event may last: the loop also watches the
// clock (heartbeat, deadline, shutdown).
constexpr milliseconds kEventWait{200};

// The failure reasons a worker may report as they are; anything else it
// says is reported as extraction_failed (the worker is untrusted).
bool worker_reason_allowed(const std::string& reason) {
    static const std::set<std::string> allowed{
        jobs::reason::kConnectionFailed, jobs::reason::kExtractionFailed,
        jobs::reason::kLimitExceeded, jobs::reason::kSandboxUnavailable,
        jobs::reason::kUnsupportedOperation};
    return allowed.contains(reason);
}

// A job id as a directory name: the hub's ids are UUIDs, but nothing from
// the hub is trusted to be a safe path component.
std::string spool_name(const std::string& job_id) {
    return "job-" + crypto::sha256_hex(job_id).substr(0, 32);
}

// Removes the job's spool directory when the job ends, however it ends.
class SpoolDir final {
  public:
    explicit SpoolDir(std::string path) : path_(std::move(path)) {}
    SpoolDir(const SpoolDir&) = delete;
    SpoolDir& operator=(const SpoolDir&) = delete;
    ~SpoolDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    Status create() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);  // left over from a crash
        return util::make_dirs(path_, 0700);
    }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

}  // namespace

std::string filters_sha256(const std::vector<jobs::ObjectFilters>& filters) {
    nlohmann::json all = nlohmann::json::array();
    for (const auto& f : filters) all.push_back(jobs::to_json(f));
    return crypto::sha256_hex(all.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

sandbox::Spec worker_sandbox_spec(const config::Config& config) {
    sandbox::Spec spec;
    const auto& settings = config.jobs.sandbox;
    spec.limits.address_space_bytes = static_cast<uint64_t>(settings.memory_bytes);
    spec.limits.cpu_seconds = static_cast<uint64_t>(settings.cpu_seconds);
    spec.limits.open_files = static_cast<uint64_t>(settings.open_files);
    spec.limits.file_size_bytes = static_cast<uint64_t>(settings.file_size_bytes);
    spec.strict = settings.strict;
    return spec;
}

// What the supervisor knows about the running worker and the lease.
struct JobRunner::Running {
    std::optional<worker::WorkerSession> session;
    std::chrono::seconds max_duration{0};
    int64_t lease_expires_at = 0;  // Unix seconds, renewed by heartbeats
    SteadyClock::time_point deadline;
    SteadyClock::time_point next_heartbeat;
    int64_t max_objects = 0;
    int64_t max_bytes = 0;
    control::Progress progress;
    std::vector<delivery::ChunkInfo> chunks;
    int64_t delivered_bytes = 0;
    int64_t started_at_ms = 0;
    std::optional<worker::Finished> finished;
    std::optional<worker::Failed> failed;
    std::optional<worker::Exited> exited;
    // Why the supervisor stopped the worker, if it did: a reason code, or
    // "shutdown". With abort_error for the agent's log.
    std::string abort_reason;
    std::string abort_message;
    std::optional<Error> abort_error;
    std::string rule;
    std::string spool_dir;
    // extract_metadata: the filters' fingerprint for the state; the
    // baseline the worker got (empty: a full run).
    std::string filters_sha256;
    std::string baseline_job_id;
};

JobRunner::JobRunner(const config::Config& config, jobs::JobVerifier& verifier,
                     const jobs::Policy& policy, control::HubClient& hub,
                     const observe::Logger& logger, observe::AgentMetrics& metrics, Options options,
                     Auditor* auditor)
    : config_(config),
      verifier_(verifier),
      policy_(policy),
      hub_(hub),
      logger_(logger),
      metrics_(metrics),
      options_(std::move(options)),
      audit_(auditor != nullptr ? *auditor : no_audit_) {}

JobOutcome JobRunner::run(const jobs::LeaseEnvelope& envelope) {
    const auto start = SteadyClock::now();
    JobOutcome outcome = [&] {
        // Custody starts with the signed job exactly as received.
        (void)audit_.record_durable("job.received",
                                    {{"job_id", envelope.job_id},
                                     {"lease_id", envelope.lease_id},
                                     {"kid", claimed_kid(envelope.job_jws)},
                                     {"jws_sha256", crypto::sha256_hex(envelope.job_jws)},
                                     // The signed job itself (it holds no secret): custody
                                     // can re-check its signature with the hub's key.
                                     {"jws", envelope.job_jws}},
                                    envelope.job_id);
        if (audit_.blocked()) {
            // Fail closed: a job whose receipt cannot be recorded is not run.
            jobs::Job unrecorded;
            unrecorded.job_id = envelope.job_id;
            unrecorded.lease_id = envelope.lease_id;
            return report_failure(
                unrecorded, jobs::reason::kDeliveryFailed, kAuditAbortMessage,
                Error{ErrorCode::io, "audit log cannot be written: " + audit_.failure_reason()});
        }
        auto job = verifier_.verify(envelope, util::unix_seconds());
        if (!job) return refuse(envelope, job.error().reason_code, job.error().message);
        const config::SourceConfig* source = config_.find_source(job->source);
        if (source == nullptr) {
            return refuse(envelope, jobs::reason::kUnknownSource,
                          "source \"" + job->source + "\" is not configured on this agent");
        }
        // The customer's policy has the last word, whatever the hub signed.
        jobs::PolicyDecision decision = jobs::evaluate(policy_, *job, util::unix_seconds());
        if (!decision.allowed) {
            return refuse(envelope, decision.reason_code, decision.message, decision.rule);
        }
        (void)audit_.record_durable("job.verified",
                                    {{"job_id", job->job_id},
                                     {"lease_id", job->lease_id},
                                     {"jti", job->jti},
                                     {"kid", job->kid},
                                     {"source", job->source},
                                     {"operation", job->operation},
                                     {"filters", jobs::to_json(job->filters)},
                                     {"policy_rule", decision.rule},
                                     {"policy_sha256", policy_.sha256_hex}},
                                    job->job_id);
        return execute(*job, *source, decision, envelope.lease_expires_at);
    }();
    metrics_.job_finished(outcome.outcome);
    if (outcome.outcome == "failed") metrics_.job_failed(outcome.reason_code);
    metrics_.job_duration(std::chrono::duration<double>(SteadyClock::now() - start).count());
    return outcome;
}

JobOutcome JobRunner::refuse(const jobs::LeaseEnvelope& envelope, const std::string& reason,
                             const std::string& message, const std::string& rule) {
    // The envelope's ids are unverified: they only address the report.
    observe::Fields fields = ids(envelope.job_id, envelope.lease_id);
    fields["reason_code"] = reason;
    fields["detail"] = message;
    if (!rule.empty()) fields["policy_rule"] = rule;
    logger_.warn("job refused", fields);
    metrics_.job_refused(reason);
    nlohmann::json record{{"reason_code", reason}, {"message", message}};
    if (!rule.empty()) {
        record["policy_rule"] = rule;
        record["policy_sha256"] = policy_.sha256_hex;
    }
    (void)audit_.record_durable("job.refused", std::move(record), envelope.job_id);
    if (auto reported = hub_.fail(envelope.job_id, envelope.lease_id, "refused", reason, message);
        !reported) {
        fields["error"] = reported.error().describe();
        logger_.error("could not report the refusal to the hub", fields);
    }
    return {"refused", reason};
}

JobOutcome JobRunner::report_failure(const jobs::Job& job, const std::string& reason,
                                     const std::string& hub_message, const Error& local_error) {
    observe::Fields fields = ids(job.job_id, job.lease_id);
    fields["reason_code"] = reason;
    fields["error"] = local_error.describe();
    logger_.error("job failed", fields);
    record_finished(job, {"failed", reason}, {});
    if (auto reported = hub_.fail(job.job_id, job.lease_id, "failed", reason, hub_message);
        !reported) {
        fields["error"] = reported.error().describe();
        logger_.error("could not report the failure to the hub", fields);
    }
    return {"failed", reason};
}

JobOutcome JobRunner::execute(const jobs::Job& job, const config::SourceConfig& source,
                              const jobs::PolicyDecision& decision, int64_t lease_expires_at) {
    observe::Fields fields = ids(job.job_id, job.lease_id);
    fields["source"] = source.name;
    fields["operation"] = job.operation;
    fields["policy_rule"] = decision.rule;
    logger_.info("job started", fields);
    // The source's logical name only: its path is never recorded.
    (void)audit_.record("job.started",
                        {{"source", source.name},
                         {"operation", job.operation},
                         {"sensitivity", source.sensitivity},
                         {"max_duration_s", decision.limits.max_duration.count()},
                         {"max_objects", decision.limits.max_objects},
                         {"max_bytes", decision.limits.max_bytes}},
                        job.job_id);

    SpoolDir spool(options_.spool_root + "/" + spool_name(job.job_id));
    if (auto made = spool.create(); !made) {
        return report_failure(job, jobs::reason::kDeliveryFailed,
                              "the agent cannot create the job's spool directory", made.error());
    }

    worker::WorkerJob worker_job;
    worker_job.job_id = job.job_id;
    worker_job.operation = job.operation;
    worker_job.source = {.name = source.name,
                         .connector = source.connector,
                         .path = source.path,
                         // The name TLS verifies; the worker connects to the
                         // address prepare_connection checked.
                         .host = source.host,
                         .database = source.database,
                         .sensitivity = source.sensitivity,
                         .port = 0};
    worker_job.filters = decision.filters;
    worker_job.limits = {decision.limits.max_objects, decision.limits.max_bytes};
    worker_job.spool_dir = spool.path();
    const sandbox::Spec sandbox_spec = worker_sandbox_spec(config_);
    worker_job.sandbox = {sandbox_spec.limits, sandbox_spec.strict};

    Running running;
    running.spool_dir = spool.path();
    if (job.operation == protocol::kOperationExtractMetadata) {
        running.filters_sha256 = filters_sha256(worker_job.filters);
        if (job.mode == jobs::kModeIncremental &&
            prepare_baseline(job, running.filters_sha256, spool.path())) {
            worker_job.baseline = true;
            running.baseline_job_id = job.baseline_job_id;
        }
    }
    running.rule = decision.rule;
    running.max_duration = decision.limits.max_duration;
    running.max_objects = decision.limits.max_objects;
    running.max_bytes = decision.limits.max_bytes;
    running.lease_expires_at = lease_expires_at;
    running.started_at_ms = util::unix_millis();
    const auto started = SteadyClock::now();
    running.deadline = started + running.max_duration;
    running.next_heartbeat = started + options_.heartbeat_interval;

    // A database source: the address the worker may use and its
    // credentials, read just in time; they travel to the worker as secrets.
    std::vector<worker::Credential> credentials;
    if (!source.host.empty()) {
        auto prepared = prepare_connection(job, source, worker_job.source);
        if (!prepared) {
            return report_failure(job, jobs::reason::kConnectionFailed, prepared.error().message,
                                  prepared.error());
        }
        credentials = std::move(*prepared);
    }
    auto session = worker::WorkerSession::start(options_.worker_executable, worker_job,
                                                std::move(credentials));
    if (!session) {
        return report_failure(job, jobs::reason::kWorkerCrashed,
                              "the agent could not start the job's worker", session.error());
    }
    running.session.emplace(std::move(*session));
    metrics_.worker_started();
    fields["worker_pid"] = running.session->pid();
    logger_.info("job worker started", fields);

    const auto stop_worker = [&](std::string reason, std::string message,
                                 std::optional<Error> error) {
        if (!running.abort_reason.empty()) return;
        running.abort_reason = std::move(reason);
        running.abort_message = std::move(message);
        running.abort_error = std::move(error);
        running.exited = running.session->terminate(
            std::chrono::duration_cast<milliseconds>(options_.cancel_grace));
    };

    while (!running.exited) {
        if (options_.beat) options_.beat();
        const auto now = SteadyClock::now();
        if (options_.stop != nullptr && options_.stop->load()) {
            stop_worker("shutdown", "the agent is shutting down", std::nullopt);
            break;
        }
        if (now >= running.deadline) {
            stop_worker(jobs::reason::kTimeout,
                        "the job ran longer than its limit of " +
                            std::to_string(running.max_duration.count()) + " s (policy rule " +
                            running.rule + ")",
                        std::nullopt);
            break;
        }
        if (now >= running.next_heartbeat) {
            heartbeat(job, running);
            if (!running.abort_reason.empty() || running.exited) break;
        }

        const auto wait = std::clamp(std::chrono::duration_cast<milliseconds>(
                                         std::min(running.deadline, running.next_heartbeat) - now),
                                     milliseconds(1), kEventWait);
        auto event = running.session->next(wait);
        if (!event) {
            // The worker broke the channel protocol: it is not trusted further.
            stop_worker(jobs::reason::kWorkerCrashed, "the job's worker broke the channel protocol",
                        event.error());
            break;
        }
        if (!*event) continue;
        if (auto* ready = std::get_if<worker::Ready>(&**event)) {
            nlohmann::json applied = nlohmann::json::array();
            nlohmann::json missing = nlohmann::json::array();
            for (const auto& layer : ready->report.layers) {
                metrics_.sandbox_layer(sandbox::layer_name(layer.layer), layer.applied);
                nlohmann::json entry{{"layer", sandbox::layer_name(layer.layer)},
                                     {"detail", layer.detail}};
                (layer.applied ? applied : missing).push_back(std::move(entry));
            }
            (void)audit_.record("job.sandboxed", {{"applied", applied}, {"missing", missing}},
                                job.job_id);
            if (!missing.empty()) {
                observe::Fields warn = fields;
                warn["missing_layers"] = missing;
                logger_.warn("job worker runs without some sandbox layers", warn);
            }
        } else if (auto* line = std::get_if<worker::LogLine>(&**event)) {
            observe::Fields worker_fields = fields;
            worker_fields["worker"] = line->fields;
            const observe::Level level = line->level == "error"  ? observe::Level::error
                                         : line->level == "warn" ? observe::Level::warn
                                                                 : observe::Level::info;
            logger_.log(level, "worker: " + line->message, worker_fields);
        } else if (auto* progress = std::get_if<worker::Progress>(&**event)) {
            running.progress.objects = progress->objects;
            running.progress.bytes = progress->bytes;
            running.progress.chunks = progress->chunks;
            // The supervisor re-checks the limits itself: a worker that lies
            // about its own progress is still stopped at the chunk count below.
            if (running.max_objects > 0 && progress->objects > running.max_objects) {
                stop_worker(jobs::reason::kLimitExceeded,
                            "the job exceeded its limit of " + std::to_string(running.max_objects) +
                                " objects (policy rule " + running.rule + ")",
                            std::nullopt);
            }
        } else if (auto* chunk = std::get_if<worker::ChunkReady>(&**event)) {
            if (auto uploaded =
                    upload(job, running, chunk->seq, chunk->sha256_hex, chunk->size, chunk->path);
                !uploaded) {
                if (running.abort_reason.empty()) {
                    const bool limit = uploaded.error().code == ErrorCode::permission_denied;
                    stop_worker(
                        limit ? jobs::reason::kLimitExceeded : jobs::reason::kDeliveryFailed,
                        limit ? uploaded.error().message
                              : (audit_.blocked()
                                     ? std::string(kAuditAbortMessage)
                                     : "chunk upload failed: " + uploaded.error().describe()),
                        uploaded.error());
                }
            }
        } else if (auto* finished = std::get_if<worker::Finished>(&**event)) {
            running.finished = std::move(*finished);
        } else if (auto* failed = std::get_if<worker::Failed>(&**event)) {
            running.failed = std::move(*failed);
        } else if (auto* exited = std::get_if<worker::Exited>(&**event)) {
            running.exited = std::move(*exited);
        }
    }
    metrics_.worker_stopped();
    return finish(job, running);
}

Result<std::vector<worker::Credential>> JobRunner::prepare_connection(
    const jobs::Job& job, const config::SourceConfig& source, worker::SourceParams& params) {
    if (options_.egress == nullptr || options_.secrets == nullptr) {
        return fail(ErrorCode::internal,
                    "the agent has no egress policy or secret stores for "
                    "database sources");
    }
    // Checked once, here: the worker connects to exactly this address.
    egress::ConnectionRecord record;
    record.unix_ms = util::unix_millis();
    record.host = source.host;
    record.port = source.port;
    record.job_id = job.job_id;
    auto destination = options_.egress->check(source.host, source.port);
    if (!destination) {
        record.decision = "denied";
        record.rule = destination.error().message;
        record.error = destination.error().message;
        if (options_.on_connection) options_.on_connection(record);
        // The policy's message names the destination and why; no secret in it.
        return fail(destination.error().code,
                    "source \"" + source.name + "\": " + destination.error().message);
    }
    params.address = destination->addresses.front().text();
    params.port = static_cast<uint16_t>(source.port);
    params.sslmode = source.sslmode;
    params.ca_file = source.ca_file.value_or("");
    params.statement_timeout_ms = int64_t{source.statement_timeout_seconds} * 1000;
    params.lock_timeout_ms = int64_t{source.lock_timeout_seconds} * 1000;
    record.decision = "allowed";
    record.address = params.address;
    record.rule = destination->rule != nullptr ? destination->rule->origin : "";
    if (options_.on_connection) options_.on_connection(record);

    std::vector<worker::Credential> credentials;
    for (const auto& [name, ref] :
         {std::pair{"user", &source.user}, std::pair{"password", &source.password}}) {
        if (!*ref) continue;
        auto value = options_.secrets->read(
            **ref, {.purpose = "source " + std::string(name), .job_id = job.job_id});
        if (!value) {
            return fail(value.error().code, "the " + std::string(name) + " of source \"" +
                                                source.name +
                                                "\" could not be read from its secret store (" +
                                                std::string(to_string(value.error().code)) + ")");
        }
        credentials.push_back({name, std::move(*value)});
    }
    return credentials;
}

void JobRunner::heartbeat(const jobs::Job& job, Running& running) {
    const auto now = SteadyClock::now();
    running.progress.phase = "extracting";
    auto reply = hub_.heartbeat(job.job_id, job.lease_id, running.progress);
    if (reply) {
        running.lease_expires_at = reply->lease_expires_at;
        // Renew at least three times per lease, whatever the interval says.
        const auto left = std::chrono::seconds(
            std::max<int64_t>(1, running.lease_expires_at - util::unix_seconds()));
        running.next_heartbeat =
            now + std::min(options_.heartbeat_interval,
                           std::max<std::chrono::seconds>(std::chrono::seconds(1), left / 3));
        if (reply->cancel) {
            logger_.info("the hub cancelled the job", ids(job.job_id, job.lease_id));
            running.abort_reason = jobs::reason::kCancelled;
            running.abort_message = "cancelled by the hub operator";
            running.exited = running.session->terminate(
                std::chrono::duration_cast<milliseconds>(options_.cancel_grace));
        }
        return;
    }
    const bool lost = reply.error().code == ErrorCode::conflict ||
                      util::unix_seconds() + kLeaseSafetyMargin.count() >= running.lease_expires_at;
    observe::Fields fields = ids(job.job_id, job.lease_id);
    fields["error"] = reply.error().describe();
    if (!lost) {
        logger_.warn("heartbeat failed; retrying", fields);
        running.next_heartbeat = now + kHeartbeatRetry;
        return;
    }
    running.abort_reason = jobs::reason::kLeaseLost;
    running.abort_message = reply.error().code == ErrorCode::conflict
                                ? "the hub says the lease is no longer this agent's"
                                : "the lease could not be renewed before it expired";
    fields["detail"] = running.abort_message;
    logger_.error("lease lost: aborting the job", fields);
    running.abort_error = reply.error();
    running.exited =
        running.session->terminate(std::chrono::duration_cast<milliseconds>(options_.cancel_grace));
}

Status JobRunner::upload(const jobs::Job& job, Running& running, int64_t seq,
                         const std::string& sha256_hex, int64_t size, const std::string& path) {
    // Fail closed: nothing leaves the agent that the log cannot record.
    if (audit_.blocked()) {
        return fail(ErrorCode::io,
                    std::string(kAuditAbortMessage) + ": " + audit_.failure_reason());
    }
    if (running.max_bytes > 0 && running.delivered_bytes + size > running.max_bytes) {
        return fail(ErrorCode::permission_denied, "the job exceeded its limit of " +
                                                      std::to_string(running.max_bytes) +
                                                      " bytes (policy rule " + running.rule + ")");
    }
    auto body = util::read_file(path);
    if (!body) return std::unexpected(body.error());
    // The worker is untrusted: what it announced must be what it wrote.
    if (static_cast<int64_t>(body->size()) != size || crypto::sha256_hex(*body) != sha256_hex) {
        return fail(ErrorCode::integrity, "chunk " + std::to_string(seq) +
                                              " in the spool does not match what the worker "
                                              "announced (size or SHA-256)");
    }
    delivery::Chunk chunk{seq, std::move(*body), {}};
    chunk.sha256 = crypto::sha256(chunk.body);
    if (auto uploaded = hub_.upload_chunk(job.job_id, job.lease_id, chunk); !uploaded) {
        return uploaded;
    }
    (void)audit_.record("delivery.chunk", {{"seq", seq}, {"sha256", sha256_hex}, {"size", size}},
                        job.job_id);
    std::error_code ignored;
    std::filesystem::remove(path, ignored);
    running.delivered_bytes += size;
    running.chunks.push_back({seq, sha256_hex, size});
    return {};
}

JobOutcome JobRunner::finish(const jobs::Job& job, Running& running) {
    observe::Fields fields = ids(job.job_id, job.lease_id);
    const int64_t finished_at_ms = util::unix_millis();
    const worker::Exited exited = running.exited.value_or(worker::Exited{});
    fields["worker"] = exited.description;

    if (running.abort_reason == "shutdown") {
        // Not reported: the lease runs out and the hub hands the job out again.
        logger_.warn("job interrupted by shutdown; the hub re-queues it when its lease expires",
                     fields);
        record_finished(job, {"aborted", "shutdown"}, {{"worker", exited.description}});
        return {"aborted", "shutdown"};
    }
    if (running.abort_reason == jobs::reason::kLeaseLost) {
        // Another agent may hold the job now: nothing more is sent for it.
        record_finished(job, {"aborted", jobs::reason::kLeaseLost},
                        {{"message", running.abort_message}, {"worker", exited.description}});
        return {"aborted", jobs::reason::kLeaseLost};
    }
    if (running.abort_reason == jobs::reason::kCancelled) {
        logger_.info("job cancelled", fields);
        record_finished(job, {"cancelled", jobs::reason::kCancelled},
                        {{"worker", exited.description}});
        if (auto reported = hub_.fail(job.job_id, job.lease_id, "failed", jobs::reason::kCancelled,
                                      running.abort_message);
            !reported) {
            fields["error"] = reported.error().describe();
            logger_.error("could not report the cancellation to the hub", fields);
        }
        return {"cancelled", jobs::reason::kCancelled};
    }
    if (!running.abort_reason.empty()) {
        return report_failure(
            job, running.abort_reason, running.abort_message,
            running.abort_error.value_or(Error{ErrorCode::internal, running.abort_message}));
    }
    if (running.failed) {
        const std::string reason = worker_reason_allowed(running.failed->reason_code)
                                       ? running.failed->reason_code
                                       : std::string(jobs::reason::kExtractionFailed);
        return report_failure(job, reason, running.failed->message,
                              Error{ErrorCode::internal, "worker: " + running.failed->message});
    }
    if (!running.finished || exited.exit_code != worker::kExitSucceeded) {
        metrics_.worker_crashed();
        const std::string message = "the job's worker " + exited.description;
        return report_failure(job, jobs::reason::kWorkerCrashed, message,
                              Error{ErrorCode::internal, message});
    }

    if (running.finished->delta && running.baseline_job_id.empty()) {
        // A delta nobody asked for: the (untrusted) worker is not believed.
        const std::string message = "the job's worker sent a delta without a baseline";
        return report_failure(job, jobs::reason::kWorkerCrashed, message,
                              Error{ErrorCode::internal, message});
    }
    const connectors::ExtractSummary& summary = running.finished->summary;
    nlohmann::json counts{
        {"tables", summary.tables},        {"views", summary.views},
        {"columns", summary.columns},      {"routines", summary.routines},
        {"chunks", running.chunks.size()}, {"duration_ms", finished_at_ms - running.started_at_ms}};
    const bool extraction = job.operation == protocol::kOperationExtractMetadata;
    if (extraction) counts["applied"] = running.finished->delta ? "incremental" : "full";
    nlohmann::json finished_fields = counts;
    std::string root;
    if (extraction) {
        auto computed = delivery::chunks_root(running.chunks);
        if (!computed) {
            return report_failure(job, jobs::reason::kDeliveryFailed, "chunk delivery failed",
                                  computed.error());
        }
        root = *computed;
        finished_fields["chunks_root"] = root;
    } else if (running.finished->result) {
        finished_fields["result_sha256"] = crypto::sha256_hex(running.finished->result->dump());
    }
    // The last chance to abort: `complete` is what hands custody to the hub.
    if (audit_.blocked()) {
        return report_failure(
            job, jobs::reason::kDeliveryFailed, kAuditAbortMessage,
            Error{ErrorCode::io, "audit log cannot be written: " + audit_.failure_reason()});
    }
    record_finished(job, {"succeeded", ""}, std::move(finished_fields));
    if (audit_.blocked()) {
        return report_failure(
            job, jobs::reason::kDeliveryFailed, kAuditAbortMessage,
            Error{ErrorCode::io, "audit log cannot be written: " + audit_.failure_reason()});
    }

    control::Completion completion{job.lease_id,          running.chunks, summary,
                                   running.started_at_ms, finished_at_ms, std::nullopt};
    if (!extraction)
        completion.result = running.finished->result.value_or(nlohmann::json::object());
    if (extraction && running.finished->delta) {
        completion.delta_baseline_job_id = running.baseline_job_id;
    }
    auto completed = hub_.complete(job.job_id, completion);
    fields.update(counts);
    if (!completed) {
        fields["error"] = completed.error().describe();
        logger_.error("hub did not accept the completion", fields);
        (void)audit_.record("delivery.refused", {{"error", completed.error().describe()}},
                            job.job_id);
        return {"failed", jobs::reason::kDeliveryFailed};
    }
    // What the hub accepted: the same chunk list the completion named.
    nlohmann::json accepted{{"chunks", running.chunks.size()}};
    if (extraction) accepted["chunks_root"] = root;
    if (completed->is_object() && completed->contains("status") &&
        (*completed)["status"].is_string()) {
        accepted["hub_status"] = (*completed)["status"];
    }
    (void)audit_.record_durable("delivery.accepted", std::move(accepted), job.job_id);
    logger_.info("job succeeded", fields);
    if (extraction) commit_state(job, running);
    return {"succeeded", ""};
}

void JobRunner::record_finished(const jobs::Job& job, const JobOutcome& outcome,
                                nlohmann::json fields) {
    if (!fields.is_object()) fields = nlohmann::json::object();
    fields["outcome"] = outcome.outcome;
    if (!outcome.reason_code.empty()) fields["reason_code"] = outcome.reason_code;
    (void)audit_.record_durable("job.finished", std::move(fields), job.job_id);
}

bool JobRunner::prepare_baseline(const jobs::Job& job, const std::string& filters_sha256,
                                 const std::string& spool_dir) {
    observe::Fields fields = ids(job.job_id, job.lease_id);
    fields["baseline_job_id"] = job.baseline_job_id;
    const std::string path = delivery::state_path(config_.agent.state_dir, job.source);
    const auto full = [&](std::string why) {
        fields["reason"] = std::move(why);
        logger_.info("incremental job runs as a full extraction", fields);
        return false;
    };
    auto state = delivery::read_state(path);
    if (!state) {
        if (state.error().code == ErrorCode::not_found) {
            return full("no fingerprint state for source \"" + job.source + "\" yet");
        }
        return full(state.error().describe());
    }
    if (state->job_id != job.baseline_job_id) {
        return full("the fingerprint state is of job " + state->job_id +
                    ", not of the hub's baseline");
    }
    if (state->filters_sha256 != filters_sha256) {
        return full("the job's filters differ from those of the baseline job");
    }
    std::string lines;
    for (const auto& entry : state->objects) lines += delivery::entry_line(entry);
    if (auto written =
            util::write_file_atomic(spool_dir + "/" + delivery::kBaselineFile, lines, 0600);
        !written) {
        return full("cannot write the baseline for the worker: " + written.error().describe());
    }
    fields["objects"] = state->objects.size();
    logger_.info("incremental job runs as a delta", fields);
    return true;
}

void JobRunner::commit_state(const jobs::Job& job, const Running& running) {
    observe::Fields fields = ids(job.job_id, job.lease_id);
    const std::string path = delivery::state_path(config_.agent.state_dir, job.source);
    fields["state_file"] = path;
    auto text = util::read_file(running.spool_dir + "/" + delivery::kFingerprintsFile);
    auto objects =
        text ? delivery::parse_entries(*text)
             : Result<std::vector<delivery::FingerprintEntry>>(std::unexpected(text.error()));
    if (!objects) {
        fields["error"] = objects.error().describe();
        logger_.warn("the worker's fingerprints are unusable; the next incremental job runs full",
                     fields);
        return;
    }
    fields["objects"] = objects->size();
    if (auto written = delivery::write_state(
            path,
            delivery::FingerprintState{job.job_id, running.filters_sha256, std::move(*objects)});
        !written) {
        fields["error"] = written.error().describe();
        logger_.warn("cannot save the fingerprint state; the next incremental job runs full",
                     fields);
        return;
    }
    logger_.info("fingerprint state saved", fields);
}

}  // namespace sa::agent::app
