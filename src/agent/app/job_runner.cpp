#include "agent/app/job_runner.h"

#include <chrono>
#include <optional>

#include "agent/connectors/sqlite_connector.h"
#include "agent/delivery/chunk_writer.h"
#include "agent/jobs/refusal_reasons.h"
#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"
#include "common/jose/jws.h"
#include "common/protocol/protocol.h"
#include "common/util/time.h"

namespace sa::agent::app {
namespace {

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

}  // namespace

JobRunner::JobRunner(const config::Config& config, jobs::JobVerifier& verifier,
                     control::HubClient& hub, const observe::Logger& logger,
                     observe::AgentMetrics& metrics, Auditor* auditor)
    : config_(config),
      verifier_(verifier),
      hub_(hub),
      logger_(logger),
      metrics_(metrics),
      audit_(auditor != nullptr ? *auditor : no_audit_) {}

JobOutcome JobRunner::run(const jobs::LeaseEnvelope& envelope) {
    const auto start = std::chrono::steady_clock::now();
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
        if (job->operation != protocol::kOperationExtractMetadata) {
            return refuse(envelope, jobs::reason::kUnsupportedOperation,
                          "operation \"" + job->operation + "\" is not supported by this agent");
        }
        const config::SourceConfig* source = config_.find_source(job->source);
        if (source == nullptr) {
            return refuse(envelope, jobs::reason::kUnknownSource,
                          "source \"" + job->source + "\" is not configured on this agent");
        }
        (void)audit_.record("job.verified",
                            {{"job_id", job->job_id},
                             {"lease_id", job->lease_id},
                             {"jti", job->jti},
                             {"source", job->source},
                             {"operation", job->operation}},
                            job->job_id);
        return execute(*job, *source);
    }();
    metrics_.job_finished(outcome.outcome);
    metrics_.job_duration(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return outcome;
}

JobOutcome JobRunner::refuse(const jobs::LeaseEnvelope& envelope, const std::string& reason,
                             const std::string& message) {
    // The envelope's ids are unverified: they only address the report.
    observe::Fields fields = ids(envelope.job_id, envelope.lease_id);
    fields["reason_code"] = reason;
    fields["detail"] = message;
    logger_.warn("job refused", fields);
    metrics_.job_refused(reason);
    (void)audit_.record_durable("job.refused", {{"reason_code", reason}, {"message", message}},
                                envelope.job_id);
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

JobOutcome JobRunner::execute(const jobs::Job& job, const config::SourceConfig& source) {
    observe::Fields fields = ids(job.job_id, job.lease_id);
    fields["source"] = source.name;
    fields["operation"] = job.operation;
    logger_.info("job started", fields);
    // The source's logical name only: its path is never recorded.
    (void)audit_.record("job.started", {{"source", source.name}, {"operation", job.operation}},
                        job.job_id);

    const std::string extraction_message =
        "extraction from source \"" + source.name + "\" failed; details are in the agent log";
    auto connector = connectors::make_sqlite_connector(source.path);
    if (!connector) {
        return report_failure(job, jobs::reason::kExtractionFailed, extraction_message,
                              connector.error());
    }

    // Uploads happen inside the extraction (the writer emits full chunks),
    // so remember whether a failure came from the upload side.
    std::optional<Error> upload_error;
    delivery::ChunkWriter writer(
        protocol::kTargetChunkBytes, [&](delivery::Chunk&& chunk) -> Status {
            // Fail closed: nothing leaves the agent that the log cannot record.
            if (audit_.blocked()) {
                upload_error = Error{ErrorCode::io, std::string(kAuditAbortMessage) + ": " +
                                                        audit_.failure_reason()};
                return std::unexpected(*upload_error);
            }
            auto uploaded = hub_.upload_chunk(job.job_id, job.lease_id, chunk);
            if (!uploaded) {
                upload_error = uploaded.error();
                return uploaded;
            }
            (void)audit_.record("delivery.chunk",
                                {{"seq", chunk.seq},
                                 {"sha256", crypto::hex_encode(chunk.sha256)},
                                 {"size", chunk.body.size()}},
                                job.job_id);
            return {};
        });

    const int64_t started_at_ms = util::unix_millis();
    auto summary = (*connector)->extract(writer);
    Status finished = summary ? writer.finish() : Status{};
    const int64_t finished_at_ms = util::unix_millis();
    if (upload_error && audit_.blocked()) {
        return report_failure(job, jobs::reason::kDeliveryFailed, kAuditAbortMessage,
                              *upload_error);
    }
    if (upload_error) {
        return report_failure(job, jobs::reason::kDeliveryFailed,
                              "chunk upload failed: " + upload_error->describe(), *upload_error);
    }
    if (!summary) {
        return report_failure(job, jobs::reason::kExtractionFailed, extraction_message,
                              summary.error());
    }
    if (!finished) {
        return report_failure(job, jobs::reason::kDeliveryFailed, "chunk delivery failed",
                              finished.error());
    }

    auto root = delivery::chunks_root(writer.chunks());
    if (!root) {
        return report_failure(job, jobs::reason::kDeliveryFailed, "chunk delivery failed",
                              root.error());
    }
    nlohmann::json counts{{"tables", summary->tables},
                          {"views", summary->views},
                          {"columns", summary->columns},
                          {"chunks", writer.chunks().size()},
                          {"duration_ms", finished_at_ms - started_at_ms}};
    // The last chance to abort: `complete` is what hands custody to the hub.
    if (audit_.blocked()) {
        return report_failure(
            job, jobs::reason::kDeliveryFailed, kAuditAbortMessage,
            Error{ErrorCode::io, "audit log cannot be written: " + audit_.failure_reason()});
    }
    nlohmann::json finished_fields = counts;
    finished_fields["chunks_root"] = *root;
    record_finished(job, {"succeeded", ""}, std::move(finished_fields));
    if (audit_.blocked()) {
        return report_failure(
            job, jobs::reason::kDeliveryFailed, kAuditAbortMessage,
            Error{ErrorCode::io, "audit log cannot be written: " + audit_.failure_reason()});
    }

    control::Completion completion{job.lease_id, writer.chunks(), *summary, started_at_ms,
                                   finished_at_ms};
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
    nlohmann::json accepted{{"chunks", writer.chunks().size()}, {"chunks_root", *root}};
    if (completed->is_object() && completed->contains("status") &&
        (*completed)["status"].is_string()) {
        accepted["hub_status"] = (*completed)["status"];
    }
    (void)audit_.record_durable("delivery.accepted", std::move(accepted), job.job_id);
    logger_.info("job succeeded", fields);
    return {"succeeded", ""};
}

void JobRunner::record_finished(const jobs::Job& job, const JobOutcome& outcome,
                                nlohmann::json fields) {
    if (!fields.is_object()) fields = nlohmann::json::object();
    fields["outcome"] = outcome.outcome;
    if (!outcome.reason_code.empty()) fields["reason_code"] = outcome.reason_code;
    (void)audit_.record_durable("job.finished", std::move(fields), job.job_id);
}

}  // namespace sa::agent::app
