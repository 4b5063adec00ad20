#include "agent/app/job_wiring.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <thread>

#include "agent/sandbox/probe.h"
#include "common/util/files.h"
#include "common/util/time.h"

namespace sa::agent::app {
namespace {

// The program each job's worker runs: jobs.worker_executable, else this
// very binary (`secure-agent worker`).
Result<std::string> job_worker_executable(const config::Config& config) {
    if (config.jobs.worker_executable) return *config.jobs.worker_executable;
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (ec) return fail(ErrorCode::io, "cannot resolve /proc/self/exe: " + ec.message());
    return self.string();
}

}  // namespace

Result<JobTrust> load_job_trust(const config::Config& config, const observe::Logger& logger) {
    JobTrust trust;
    for (const auto& file : config.hub.job_signing_keys) {
        auto key = crypto::Ed25519PublicKey::from_pem_file(file);
        if (!key) {
            return fail(ErrorCode::invalid_argument,
                        "hub.job_signing_keys: " + file + ": " + key.error().message);
        }
        logger.info("pinned job-signing key loaded", {{"key_id", key->key_id()}});
        trust.keys.push_back(std::move(*key));
    }

    if (config.jobs.policy_file) {
        auto policy = jobs::load_policy_file(*config.jobs.policy_file);
        if (!policy) {
            return fail(ErrorCode::invalid_argument, "jobs.policy_file: " + policy.error().message);
        }
        trust.policy = std::move(*policy);
    } else {
        trust.policy = jobs::default_policy();
        logger.warn(
            "no jobs.policy_file: the built-in policy allows every operation on every configured "
            "source");
    }
    logger.info("job policy loaded", {{"policy", trust.policy.source_name},
                                      {"sha256", trust.policy.sha256_hex},
                                      {"rules", trust.policy.rules.size()},
                                      {"max_concurrent_jobs", trust.policy.max_concurrent_jobs}});

    // Tried for real in a child: strict mode refuses to start without every
    // layer rather than refusing every job later.
    auto layers = sandbox::probe(worker_sandbox_spec(config));
    if (!layers) return std::unexpected(layers.error());
    trust.sandbox = std::move(*layers);
    if (const std::string missing = sandbox::describe_missing(trust.sandbox); !missing.empty()) {
        if (config.jobs.sandbox.strict) {
            return fail(ErrorCode::invalid_argument,
                        "jobs.sandbox.mode is strict but this host lacks: " + missing);
        }
        logger.warn("job workers will run without some sandbox layers (best_effort)",
                    {{"missing", missing}});
    } else {
        logger.info("job worker sandbox: every layer available",
                    {{"landlock_abi", sandbox::landlock_abi_version()}});
    }
    return trust;
}

Result<std::unique_ptr<jobs::JobVerifier>> make_job_verifier(
    const config::Config& config, std::vector<crypto::Ed25519PublicKey> keys) {
    const std::string dir = config.agent.state_dir + "/jobs";
    if (auto made = util::make_dirs(dir, 0700); !made) return std::unexpected(made.error());
    auto verifier = std::make_unique<jobs::JobVerifier>(
        std::move(keys),
        jobs::JobVerifier::Options{.audience = config.hub.client_id,
                                   .leeway_seconds = config.jobs.clock_skew_seconds,
                                   .replay_file = dir + "/replay.log"});
    if (auto replay = verifier->open_replay_store(util::unix_seconds()); !replay) {
        return std::unexpected(replay.error());
    }
    return verifier;
}

Result<std::unique_ptr<ControlSlots>> ControlSlots::create(Shared shared) {
    const config::Config& config = shared.config;
    const std::string spool_root = config.agent.state_dir + "/spool";
    if (auto made = util::make_dirs(spool_root, 0700); !made) return std::unexpected(made.error());
    auto worker_executable = job_worker_executable(config);
    if (!worker_executable) return std::unexpected(worker_executable.error());

    const int count = std::min(config.jobs.workers, shared.policy.max_concurrent_jobs);
    if (count < config.jobs.workers) {
        shared.logger.warn("the job policy allows fewer concurrent jobs than jobs.workers",
                           {{"workers", config.jobs.workers},
                            {"max_concurrent_jobs", shared.policy.max_concurrent_jobs}});
    }
    std::unique_ptr<ControlSlots> self(new ControlSlots(std::move(shared)));
    const Shared& s = self->shared_;
    self->slots_.resize(static_cast<size_t>(count));
    for (int i = 0; i < count; ++i) {
        Slot& slot = self->slots_[static_cast<size_t>(i)];
        const size_t beat_slot = s.liveness.add("control slot " + std::to_string(i));
        const auto beat = [&liveness = s.liveness, beat_slot] { liveness.beat(beat_slot); };
        // Its own HTTP client: a slot's is used only from its own thread.
        auto http = egress::HttpClient::create(s.http);
        if (!http) return std::unexpected(http.error());
        slot.http.emplace(std::move(*http));
        slot.hub = std::make_unique<control::HubClient>(*slot.http, s.tokens, s.hub);
        slot.runner = std::make_unique<JobRunner>(
            config, s.verifier, s.policy, *slot.hub, s.logger, s.metrics,
            JobRunner::Options{
                .worker_executable = *worker_executable,
                .spool_root = spool_root,
                .heartbeat_interval = std::chrono::seconds(config.jobs.heartbeat_interval_seconds),
                .cancel_grace = std::chrono::seconds(config.jobs.cancel_grace_seconds),
                .beat = beat,
                .stop = &s.stop,
                .egress = &s.egress,
                .secrets = &s.secrets,
                .on_connection = s.on_connection},
            &s.auditor);
        slot.loop = std::make_unique<RunLoop>(
            RunLoop::Options{.poll_wait_seconds = config.hub.poll_wait_seconds,
                             .auditor = &s.auditor,
                             .beat = beat},
            s.tokens, *slot.hub, *slot.runner, s.readiness, s.metrics, s.logger, s.stop);
    }
    s.logger.info("control slots started",
                  {{"slots", count},
                   {"worker", *worker_executable},
                   {"sandbox", config.jobs.sandbox.strict ? "strict" : "best_effort"}});
    return self;
}

void ControlSlots::run() {
    std::vector<std::jthread> threads;
    for (size_t i = 1; i < slots_.size(); ++i) {
        threads.emplace_back([&slot = slots_[i]] { slot.loop->run(); });
    }
    if (!slots_.empty()) slots_[0].loop->run();
}  // the jthreads join here (every slot stops on the same flag)

}  // namespace sa::agent::app
