// The command line of agent-hub (CLI11 is slow to compile: this is the only
// file that includes it). It only parses and dispatches; the work is in
// commands.cpp and server/serve.cpp.
#include "hub/cli/cli.h"

#include <CLI/CLI.hpp>
#include <iostream>

#include "build_info.h"
#include "hub/cli/commands.h"
#include "hub/server/serve.h"

namespace sa::hub::cli {

int run(int argc, char** argv) {
    CLI::App app{
        "agent-hub: control plane for secure-agent (token endpoint, signed jobs, "
        "metadata ingest)",
        "agent-hub"};
    app.set_version_flag(
        "--version", std::string(build::kVersion) + " (protocol " + build::kProtocolVersion + ")");
    app.require_subcommand(1);

    std::optional<std::string> data;
    auto add_data = [&](CLI::App* cmd) {
        cmd->add_option("--data", data,
                        std::string("hub data directory (default: $") + kDataDirEnv + ")");
    };
    bool as_json = false;
    auto add_json = [&](CLI::App* cmd) {
        cmd->add_flag("--json", as_json, "print JSON instead of text");
    };
    int code = 0;
    Io io{std::cout, std::cerr};
    // Runs body with the resolved data directory, or fails with exit code 2.
    auto with_data = [&](auto body) {
        return [&, body] {
            auto dir = resolve_data_dir(data);
            if (!dir) {
                std::cerr << "agent-hub: " << dir.error().message << "\n";
                code = 2;
                return;
            }
            code = body(*dir);
        };
    };

    // serve
    auto* serve = app.add_subcommand("serve", "run the HTTPS control plane");
    add_data(serve);
    std::string listen = "127.0.0.1:8443";
    std::vector<std::string> sans;
    serve->add_option("--listen", listen, "HOST:PORT to listen on; port 0 lets the OS pick")
        ->capture_default_str();
    serve->add_option("--san", sans,
                      "extra DNS name or IP address for the server certificate (repeatable)");
    int token_lifetime = 900;
    serve
        ->add_option("--access-token-lifetime", token_lifetime,
                     "lifetime of issued access tokens in seconds (expires_in); agents re-read "
                     "their client secret about this often")
        ->check(CLI::Range(5, 3600))
        ->capture_default_str();
    int lease_seconds = 600;
    serve
        ->add_option("--lease-seconds", lease_seconds,
                     "how long a lease lasts and how far each heartbeat extends it; the signed "
                     "job's exp is the first lease expiry")
        ->check(CLI::Range(10, 3600))
        ->capture_default_str();
    serve->callback(with_data([&](const std::string& dir) {
        auto address = server::parse_listen_address(listen);
        if (!address) {
            std::cerr << "agent-hub serve: " << address.error().message << "\n";
            return 2;
        }
        server::HubOptions options;
        options.data_dir = dir;
        options.listen = *address;
        options.extra_sans = sans;
        options.access_token_lifetime_seconds = token_lifetime;
        options.lease_seconds = lease_seconds;
        return server::serve(options, std::cout, std::cerr);
    }));

    // app
    auto* app_cmd = app.add_subcommand("app", "manage apps (OAuth clients of agents)");
    app_cmd->require_subcommand(1);
    auto* app_create_cmd = app_cmd->add_subcommand(
        "create",
        "create an app and print its client id and secret (shown once); with --public-key the "
        "app authenticates with private_key_jwt instead and has no secret");
    std::string app_name;
    app_create_cmd->add_option("NAME", app_name, "app name, [A-Za-z0-9_.-]{1,64}")->required();
    std::optional<std::string> public_key;
    app_create_cmd->add_option("--public-key", public_key,
                               "PEM public key (SubjectPublicKeyInfo: Ed25519, EC P-256 or RSA "
                               ">= 2048 bits) the agent's client assertions are signed with");
    add_data(app_create_cmd);
    add_json(app_create_cmd);
    app_create_cmd->callback(with_data([&](const std::string& dir) {
        return public_key ? app_create_with_key(dir, app_name, *public_key, as_json, io)
                          : app_create(dir, app_name, as_json, io);
    }));
    auto* app_set_key_cmd = app_cmd->add_subcommand(
        "set-key",
        "replace the public key of a private_key_jwt app; the previous key keeps working for "
        "--overlap seconds. Setting a key again during an overlap ends the oldest key at once "
        "(at most two keys are accepted).");
    app_set_key_cmd->add_option("NAME", app_name, "app name")->required();
    std::string new_public_key;
    app_set_key_cmd->add_option("--public-key", new_public_key, "the new PEM public key")
        ->required();
    int key_overlap = 3600;
    app_set_key_cmd
        ->add_option("--overlap", key_overlap,
                     "seconds the previous key stays valid (0: it stops at once)")
        ->check(CLI::Range(0, 30 * 24 * 3600))
        ->capture_default_str();
    add_data(app_set_key_cmd);
    add_json(app_set_key_cmd);
    app_set_key_cmd->callback(with_data([&](const std::string& dir) {
        return app_set_key(dir, app_name, new_public_key, std::chrono::seconds(key_overlap),
                           as_json, io);
    }));
    auto* app_list_cmd = app_cmd->add_subcommand("list", "list apps");
    add_data(app_list_cmd);
    add_json(app_list_cmd);
    app_list_cmd->callback(
        with_data([&](const std::string& dir) { return app_list(dir, as_json, io); }));

    auto* app_show_cmd =
        app_cmd->add_subcommand("show", "show one app: state, rotation and its history");
    app_show_cmd->add_option("NAME", app_name, "app name")->required();
    add_data(app_show_cmd);
    add_json(app_show_cmd);
    app_show_cmd->callback(
        with_data([&](const std::string& dir) { return app_show(dir, app_name, as_json, io); }));
    auto* app_rotate_cmd = app_cmd->add_subcommand(
        "rotate",
        "issue a new client secret (shown once); the previous one keeps working for --overlap "
        "seconds. Rotating again during an overlap ends the oldest secret at once (at most two "
        "secrets are valid). Access tokens already issued stay valid until they expire.");
    app_rotate_cmd->add_option("NAME", app_name, "app name")->required();
    int overlap = 3600;
    app_rotate_cmd
        ->add_option("--overlap", overlap,
                     "seconds the previous secret stays valid (0: it stops at once)")
        ->check(CLI::Range(0, 30 * 24 * 3600))
        ->capture_default_str();
    add_data(app_rotate_cmd);
    add_json(app_rotate_cmd);
    app_rotate_cmd->callback(with_data([&](const std::string& dir) {
        return app_rotate(dir, app_name, std::chrono::seconds(overlap), as_json, io);
    }));
    auto* app_revoke_cmd = app_cmd->add_subcommand(
        "revoke",
        "revoke an app for good: it gets no more tokens (invalid_client) and its live access "
        "tokens are refused by every API call at once. Irreversible: to reconnect its agents, "
        "create a new app (the name stays taken).");
    app_revoke_cmd->add_option("NAME", app_name, "app name")->required();
    add_data(app_revoke_cmd);
    add_json(app_revoke_cmd);
    app_revoke_cmd->callback(
        with_data([&](const std::string& dir) { return app_revoke(dir, app_name, as_json, io); }));

    // job
    auto* job_cmd = app.add_subcommand("job", "create and inspect jobs");
    job_cmd->require_subcommand(1);
    auto* job_create_cmd = job_cmd->add_subcommand(
        "create",
        "queue a job and print its id; with --wait, wait for it to end and print it (exit 0 "
        "succeeded, 1 failed/refused/cancelled, 2 still running at the timeout)");
    JobSpec spec;
    job_create_cmd->add_option("--app", spec.app, "app whose agents run the job")->required();
    job_create_cmd
        ->add_option("--source", spec.source, "logical source name, as the agent names it")
        ->required();
    job_create_cmd
        ->add_option("--operation", spec.operation,
                     "extract_metadata, test_connection, preflight or list_schemas")
        ->capture_default_str();
    job_create_cmd
        ->add_option("--mode", spec.mode,
                     "extract_metadata only: full (default) or incremental (the agent delivers "
                     "what changed since the catalog version; full when there is none yet)")
        ->check(CLI::IsMember({"full", "incremental"}));
    const char* pattern_help =
        " (ECMAScript regex matched against the whole name; repeatable, at most 64, 256 bytes "
        "each; the agent's policy still applies)";
    job_create_cmd->add_option("--include-schema", spec.filters.schemas.include,
                               std::string("extract only schemas matching") + pattern_help);
    job_create_cmd->add_option("--exclude-schema", spec.filters.schemas.exclude,
                               std::string("skip schemas matching") + pattern_help);
    job_create_cmd->add_option("--include-table", spec.filters.tables.include,
                               std::string("extract only tables matching") + pattern_help);
    job_create_cmd->add_option("--exclude-table", spec.filters.tables.exclude,
                               std::string("skip tables matching") + pattern_help);
    WaitOptions wait;
    int wait_timeout = 60;
    job_create_cmd->add_flag("--wait", wait.wait,
                             "wait until the job ends, then print it as `job show` does");
    job_create_cmd->add_option("--wait-timeout", wait_timeout, "seconds to wait with --wait")
        ->check(CLI::Range(1, 24 * 3600))
        ->capture_default_str();
    add_data(job_create_cmd);
    add_json(job_create_cmd);
    job_create_cmd->callback(with_data([&](const std::string& dir) {
        wait.timeout = std::chrono::seconds(wait_timeout);
        return job_create(dir, spec, wait, as_json, io);
    }));
    auto* job_show_cmd = job_cmd->add_subcommand("show", "show one job");
    std::string job_id;
    job_show_cmd->add_option("ID", job_id, "job id")->required();
    add_data(job_show_cmd);
    add_json(job_show_cmd);
    job_show_cmd->callback(
        with_data([&](const std::string& dir) { return job_show(dir, job_id, as_json, io); }));
    auto* job_cancel_cmd = job_cmd->add_subcommand(
        "cancel",
        "cancel a job: a queued job is cancelled at once; a leased one when its agent confirms "
        "(after its next heartbeat) or its lease expires");
    job_cancel_cmd->add_option("ID", job_id, "job id")->required();
    add_data(job_cancel_cmd);
    add_json(job_cancel_cmd);
    job_cancel_cmd->callback(
        with_data([&](const std::string& dir) { return job_cancel(dir, job_id, as_json, io); }));
    auto* job_list_cmd = job_cmd->add_subcommand("list", "list recent jobs, newest first");
    std::optional<std::string> list_app;
    std::optional<std::string> list_status;
    job_list_cmd->add_option("--app", list_app, "only this app");
    job_list_cmd->add_option("--status", list_status, "only this status")
        ->check(CLI::IsMember({"queued", "leased", "succeeded", "failed", "refused", "cancelled"}));
    add_data(job_list_cmd);
    add_json(job_list_cmd);
    job_list_cmd->callback(with_data(
        [&](const std::string& dir) { return job_list(dir, list_app, list_status, as_json, io); }));

    // pki
    auto* pki_cmd = app.add_subcommand("pki", "manage the hub's key material");
    pki_cmd->require_subcommand(1);
    auto* rotate_job_key_cmd = pki_cmd->add_subcommand(
        "rotate-job-key",
        "replace the job-signing key with the one prepared by --prepare (or a new one); the "
        "previous public key is kept as job-signing.previous.pub.pem. Agents must pin the new "
        "key (hub.job_signing_keys) BEFORE this: a running serve signs with it from its next "
        "lease.");
    bool prepare_only = false;
    rotate_job_key_cmd->add_flag(
        "--prepare", prepare_only,
        "only create the next key (job-signing.next.pub.pem) for customers to pin; do not use "
        "it yet");
    add_data(rotate_job_key_cmd);
    add_json(rotate_job_key_cmd);
    rotate_job_key_cmd->callback(with_data([&](const std::string& dir) {
        return prepare_only ? pki_prepare_job_key(dir, as_json, io)
                            : pki_rotate_job_key(dir, as_json, io);
    }));

    // catalog
    auto* catalog_cmd = app.add_subcommand(
        "catalog",
        "browse delivered metadata. An object is named NAME, SCHEMA.NAME, SCHEMA/NAME, "
        "DATABASE/SCHEMA/NAME or SOURCE/DATABASE/SCHEMA/NAME (a routine: any of these, "
        "optionally followed by (SIGNATURE)); a name that fits several objects is refused");
    catalog_cmd->require_subcommand(1);
    auto* tables_cmd = catalog_cmd->add_subcommand(
        "tables",
        "list relations (tables, views, materialized views, partitioned tables, partitions, "
        "foreign tables) with kind, column count, owner and the engine's estimates");
    std::optional<std::string> cat_source;
    std::optional<std::string> cat_app;
    tables_cmd->add_option("--source", cat_source, "only this source");
    tables_cmd->add_option("--app", cat_app, "only this app");
    add_data(tables_cmd);
    add_json(tables_cmd);
    tables_cmd->callback(with_data([&](const std::string& dir) {
        return catalog_tables(dir, cat_source, cat_app, as_json, io);
    }));
    auto* columns_cmd = catalog_cmd->add_subcommand(
        "columns",
        "list the columns of a relation: type as the engine spells it and normalised, "
        "nullability, default, primary key position, identity, generation, comment");
    std::string col_source;
    std::string col_table;
    columns_cmd->add_option("--source", col_source, "source name")->required();
    columns_cmd->add_option("--table", col_table, "table or view name (bare, without schema)")
        ->required();
    columns_cmd->add_option("--app", cat_app, "only this app");
    add_data(columns_cmd);
    add_json(columns_cmd);
    columns_cmd->callback(with_data([&](const std::string& dir) {
        return catalog_columns(dir, col_source, col_table, cat_app, as_json, io);
    }));
    auto* routines_cmd = catalog_cmd->add_subcommand(
        "routines",
        "list the functions and procedures of a source with kind, signature, return type and "
        "language");
    routines_cmd->add_option("--source", col_source, "source name")->required();
    routines_cmd->add_option("--app", cat_app, "only this app");
    add_data(routines_cmd);
    add_json(routines_cmd);
    routines_cmd->callback(with_data([&](const std::string& dir) {
        return catalog_routines(dir, col_source, cat_app, as_json, io);
    }));
    auto* lineage_cmd = catalog_cmd->add_subcommand(
        "lineage", "show what a view reads (its lineage) and which views read a table or view");
    lineage_cmd->add_option("--source", col_source, "source name")->required();
    lineage_cmd->add_option("--table", col_table, "the relation, e.g. SCHEMA.NAME")->required();
    lineage_cmd->add_option("--app", cat_app, "only this app");
    add_data(lineage_cmd);
    add_json(lineage_cmd);
    lineage_cmd->callback(with_data([&](const std::string& dir) {
        return catalog_lineage(dir, col_source, col_table, cat_app, as_json, io);
    }));
    auto* show_cmd = catalog_cmd->add_subcommand(
        "show",
        "print the stored record of a relation or routine (the metadata model's JSON, "
        "docs/metadata-model.md), pretty-printed; --json prints it on one line");
    std::string show_object;
    show_cmd->add_option("--source", col_source, "source name")->required();
    show_cmd->add_option("OBJECT", show_object, "e.g. SCHEMA.NAME or SCHEMA.NAME(SIGNATURE)")
        ->required();
    show_cmd->add_option("--app", cat_app, "only this app");
    add_data(show_cmd);
    add_json(show_cmd);
    show_cmd->callback(with_data([&](const std::string& dir) {
        return catalog_show(dir, col_source, show_object, cat_app, as_json, io);
    }));

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);  // prints the message and a hint to use --help
        return 2;
    }
    return code;
}

}  // namespace sa::hub::cli
