#include "agent/app/job_runner.h"

#include <chrono>
#include <optional>

#include "agent/connectors/sqlite_connector.h"
#include "agent/delivery/chunk_writer.h"
#include "agent/jobs/refusal_reasons.h"
#include "common/protocol/protocol.h"
#include "common/util/time.h"

namespace sa::agent::app {
namespace {

observe::Fields ids(const std::string& job_id, const std::string& lease_id) {
    return {{"job_id", job_id}, {"lease_id", lease_id}};
}

}  // namespace

JobRunner::JobRunner(const config::Config& config, jobs::JobVerifier& verifier,
                     control::HubClient& hub, const observe::Logger& logger,
                     observe::AgentMetrics& metrics)
    : config_(config), verifier_(verifier), hub_(hub), logger_(logger), metrics_(metrics) {}

JobOutcome JobRunner::run(const jobs::LeaseEnvelope& envelope) {
    const auto start = std::chrono::steady_clock::now();
    JobOutcome outcome = [&] {
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
            auto uploaded = hub_.upload_chunk(job.job_id, job.lease_id, chunk);
            if (!uploaded) upload_error = uploaded.error();
            return uploaded;
        });

    const int64_t started_at_ms = util::unix_millis();
    auto summary = (*connector)->extract(writer);
    Status finished = summary ? writer.finish() : Status{};
    const int64_t finished_at_ms = util::unix_millis();
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

    control::Completion completion{job.lease_id, writer.chunks(), *summary, started_at_ms,
                                   finished_at_ms};
    auto completed = hub_.complete(job.job_id, completion);
    fields["tables"] = summary->tables;
    fields["views"] = summary->views;
    fields["columns"] = summary->columns;
    fields["chunks"] = writer.chunks().size();
    fields["duration_ms"] = finished_at_ms - started_at_ms;
    if (!completed) {
        fields["error"] = completed.error().describe();
        logger_.error("hub did not accept the completion", fields);
        return {"failed", jobs::reason::kDeliveryFailed};
    }
    logger_.info("job succeeded", fields);
    return {"succeeded", ""};
}

}  // namespace sa::agent::app
