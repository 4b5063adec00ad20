#include "agent/app/cli.h"

#include <CLI/CLI.hpp>
#include <iostream>
#include <string>
#include <utility>

#include "agent/app/audit_commands.h"
#include "agent/app/commands.h"
#include "agent/app/custody.h"
#include "agent/app/doctor.h"

namespace sa::agent::app {

int run_cli(int argc, char** argv) {
    CLI::App app{
        "secure-agent: runs inside your network, dials out to the hub over HTTPS, runs signed "
        "metadata-extraction jobs and delivers the results."};
    app.require_subcommand(1);

    std::string config_path;
    CLI::App* run = app.add_subcommand("run", "Run the agent until SIGTERM or SIGINT.");
    run->add_option("--config", config_path, "Path of the agent's YAML config file")->required();

    std::string check_path;
    CLI::App* check = app.add_subcommand(
        "check-config",
        "Validate a config file (keys, values, referenced files) without reading secrets.");
    check->add_option("--config", check_path, "Path of the agent's YAML config file")->required();

    std::string doctor_path;
    DoctorOptions doctor_options;
    CLI::App* doctor = app.add_subcommand(
        "doctor",
        "Preflight: check the config, DNS, proxy, TCP, TLS, pins, token, hub API and sources "
        "the way the agent would, with a fix for each failure. Exit 0 only if all pass.");
    doctor->add_option("--config", doctor_path, "Path of the agent's YAML config file")->required();
    doctor->add_flag("--json", doctor_options.json, "Print the checks as one JSON array");
    doctor->add_option("--url", doctor_options.extra_urls,
                       "Also check this https:// URL through the egress policy (repeatable)");

    CLI::App* version =
        app.add_subcommand("version", "Print version, protocol version and binary SHA-256.");

    // `audit ...`: offline tools over an audit directory (no config needed).
    CLI::App* audit =
        app.add_subcommand("audit", "Verify, prove, read and search the tamper-evident audit log.");
    audit->require_subcommand(1);
    std::string audit_dir;
    std::string audit_key;
    CLI::App* audit_verify_cmd = audit->add_subcommand(
        "verify", "Check every record, checkpoint signature and the Merkle tree.");
    audit_verify_cmd->add_option("--dir", audit_dir, "Audit directory (STATE/audit)")->required();
    audit_verify_cmd->add_option("--public-key", audit_key, "Agent public key (agent.pub.pem)")
        ->required();
    std::string tsa_ca;
    audit_verify_cmd->add_option("--tsa-ca", tsa_ca,
                                 "CA of the Time-Stamp Authority, to check the RFC 3161 tokens");

    uint64_t prove_index = 0;
    uint64_t prove_from = 0;
    uint64_t prove_to = 0;
    CLI::App* audit_prove = audit->add_subcommand(
        "prove", "Print an inclusion (--index) or consistency (--from/--to) proof as JSON.");
    audit_prove->add_option("--dir", audit_dir, "Audit directory")->required();
    CLI::Option* index_opt =
        audit_prove->add_option("--index", prove_index, "Record index (seq) to prove");
    CLI::Option* from_opt = audit_prove->add_option("--from", prove_from, "Older checkpoint size");
    CLI::Option* to_opt = audit_prove->add_option("--to", prove_to, "Newer checkpoint size");
    from_opt->needs(to_opt);
    to_opt->needs(from_opt);
    index_opt->excludes(from_opt)->excludes(to_opt);

    std::string proof_file;
    CLI::App* audit_verify_proof_cmd =
        audit->add_subcommand("verify-proof", "Check a proof printed by `audit prove`.");
    audit_verify_proof_cmd->add_option("--proof", proof_file, "Proof JSON file")->required();
    audit_verify_proof_cmd->add_option("--public-key", audit_key,
                                       "Agent public key, to check the signed checkpoint");

    AuditShowFilter show_filter;
    CLI::App* audit_show_cmd = audit->add_subcommand("show", "Print records for people.");
    audit_show_cmd->add_option("--dir", audit_dir, "Audit directory")->required();
    audit_show_cmd->add_option("--job", show_filter.job_id, "Only records of this job");
    audit_show_cmd->add_option("--type", show_filter.type, "Only this type (prefix with '*')");
    audit_show_cmd->add_option("--since", show_filter.since, "Only records at or after (RFC 3339)");

    std::string hash_value;
    CLI::App* audit_hash_cmd = audit->add_subcommand(
        "hash", "Print the HMAC form of VALUE, to search records for a sensitive value.");
    std::string hash_config;
    audit_hash_cmd->add_option("--dir", audit_dir, "Audit directory")->required();
    audit_hash_cmd->add_option(
        "--config", hash_config,
        "Agent config, to read the salt from its secret store (audit.hmac_salt)");
    audit_hash_cmd->add_option("value", hash_value, "The value to hash")->required();

    AuditPreserveRequest preserve;
    CLI::App* audit_preserve_cmd = audit->add_subcommand(
        "preserve",
        "Keep segments from retention (for an incident): by --segment, --job or "
        "--since/--until; --list shows what is kept.");
    audit_preserve_cmd->add_option("--dir", audit_dir, "Audit directory")->required();
    audit_preserve_cmd->add_option("--segment", preserve.segment, "Segment file name");
    audit_preserve_cmd->add_option("--job", preserve.job_id, "Segments holding this job's records");
    audit_preserve_cmd->add_option("--since", preserve.since, "Segments with records at or after");
    audit_preserve_cmd->add_option("--until", preserve.until, "Segments with records at or before");
    audit_preserve_cmd->add_option("--reason", preserve.reason, "Why (kept with the mark)");
    audit_preserve_cmd->add_flag("--list", preserve.list, "List preserved segments");
    std::string unpreserve_segment;
    CLI::App* audit_unpreserve_cmd =
        audit->add_subcommand("unpreserve", "Let retention remove a preserved segment again.");
    audit_unpreserve_cmd->add_option("--dir", audit_dir, "Audit directory")->required();
    audit_unpreserve_cmd->add_option("--segment", unpreserve_segment, "Segment file name")
        ->required();

    CustodyOptions custody;
    CLI::App* audit_custody_cmd = audit->add_subcommand(
        "custody",
        "Print a job's chain of custody (signed job, verification, chunks, hub "
        "acceptance) and check each link.");
    audit_custody_cmd->add_option("--dir", custody.dir, "Audit directory")->required();
    audit_custody_cmd
        ->add_option("--public-key", custody.public_key_file, "Agent public key (agent.pub.pem)")
        ->required();
    audit_custody_cmd->add_option("--job", custody.job_id, "Job id")->required();
    audit_custody_cmd->add_option("--job-key", custody.job_key_file,
                                  "The hub's job-signing public key, to re-check the signed job");
    audit_custody_cmd->add_flag("--json", custody.json, "Print the chain as one JSON object");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    if (run->parsed()) return run_agent(config_path);
    if (check->parsed()) return check_config(check_path, std::cout, std::cerr);
    if (doctor->parsed()) return run_doctor(doctor_path, std::cout, std::move(doctor_options));
    if (version->parsed()) return print_version(std::cout);
    if (audit_verify_cmd->parsed())
        return audit_verify(audit_dir, audit_key, std::cout, std::cerr, tsa_ca);
    if (audit_prove->parsed()) {
        if (index_opt->count() > 0)
            return audit_prove_inclusion(audit_dir, prove_index, std::cout, std::cerr);
        if (from_opt->count() > 0)
            return audit_prove_consistency(audit_dir, prove_from, prove_to, std::cout, std::cerr);
        std::cerr << "audit prove: give --index N or --from S1 --to S2\n";
        return kExitConfig;
    }
    if (audit_verify_proof_cmd->parsed())
        return audit_verify_proof(proof_file, audit_key, std::cout, std::cerr);
    if (audit_show_cmd->parsed()) return audit_show(audit_dir, show_filter, std::cout, std::cerr);
    if (audit_hash_cmd->parsed())
        return audit_hash(audit_dir, hash_value, std::cout, std::cerr, hash_config);
    if (audit_custody_cmd->parsed()) return audit_custody(custody, std::cout, std::cerr);
    if (audit_preserve_cmd->parsed())
        return audit_preserve(audit_dir, preserve, std::cout, std::cerr);
    if (audit_unpreserve_cmd->parsed())
        return audit_unpreserve(audit_dir, unpreserve_segment, std::cout, std::cerr);
    return kExitFailure;
}

}  // namespace sa::agent::app
