#include "hub/cli/commands.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "common/util/files.h"
#include "common/util/time.h"
#include "hub/clock/clock.h"
#include "hub/identity/app_registry.h"
#include "hub/ingest/catalog.h"
#include "hub/jobs/job_queue.h"
#include "hub/pki/pki.h"
#include "hub/store/layout.h"
#include "hub/store/store.h"

namespace sa::hub::cli {
namespace {

using json = nlohmann::json;

std::string dump(const json& j, int indent = -1) {
    return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

int failed(Io io, const std::string& command, const Error& e) {
    io.err << "agent-hub " << command << ": " << e.message << "\n";
    return 1;
}

Result<std::unique_ptr<store::Store>> open_existing(const std::string& data_dir) {
    auto store =
        store::Store::open(store::Layout::of(data_dir).database, store::Store::Create::never);
    if (!store && store.error().code == ErrorCode::not_found) {
        return fail(ErrorCode::not_found, "no hub database in " + data_dir +
                                              " (start `agent-hub serve --data " + data_dir +
                                              "` or run `agent-hub app create` first)");
    }
    return store;
}

std::string when(const std::optional<int64_t>& ms) {
    return ms ? util::rfc3339_millis(*ms) + " (" + std::to_string(*ms) + ")" : "-";
}

const clock::SystemClock& system_clock() {
    static const clock::SystemClock c;
    return c;
}

json or_null(const std::optional<int64_t>& v) {
    return v ? json(*v) : json(nullptr);
}
json or_null(const std::optional<std::string>& v) {
    return v ? json(*v) : json(nullptr);
}

const char* state_of(const identity::App& a) {
    return a.revoked() ? "revoked" : "active";
}

json app_json(const identity::App& a) {
    return json{{"app", a.name},
                {"client_id", a.client_id},
                {"state", state_of(a)},
                {"auth_method", a.auth_method},
                {"created_at_ms", a.created_at_ms},
                {"rotated_at_ms", or_null(a.rotated_at_ms)},
                {"rotated_by", or_null(a.rotated_by)},
                {"previous_secret_valid_until_ms", or_null(a.previous_secret_valid_until_ms)},
                {"revoked_at_ms", or_null(a.revoked_at_ms)},
                {"revoked_by", or_null(a.revoked_by)}};
}

json key_json(const identity::AppKey& k) {
    return json{{"thumbprint", k.thumbprint},
                {"algorithm", k.algorithm},
                {"added_at_ms", k.added_at_ms},
                {"valid_until_ms", or_null(k.valid_until_ms)}};
}

// The public key in file; errors name the file and say what is wrong.
Result<identity::ClientPublicKey> read_public_key(const std::string& file) {
    auto text = util::read_file(file);
    if (!text) {
        return fail(ErrorCode::invalid_argument,
                    "cannot read public key file " + file + ": " + text.error().message);
    }
    auto key = identity::ClientPublicKey::from_pem(*text);
    if (!key) {
        return fail(ErrorCode::invalid_argument,
                    "public key file " + file + " " + key.error().message);
    }
    return key;
}

std::optional<std::string> user_name(uid_t uid) {
    std::vector<char> buf(16384);
    passwd pw{};
    passwd* found = nullptr;
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr ||
        found->pw_name == nullptr || *found->pw_name == '\0') {
        return std::nullopt;
    }
    return std::string(found->pw_name);
}

}  // namespace

std::string current_operator() {
    uid_t uid = ::getuid();
    std::string who = user_name(uid).value_or("uid " + std::to_string(uid));
    // sudo records who asked; the history should name that person, not root.
    const char* sudo_user = std::getenv("SUDO_USER");
    if (uid == 0 && sudo_user != nullptr && *sudo_user != '\0') {
        who += std::string(" (sudo by ") + std::string(sudo_user).substr(0, 64) + ")";
    }
    return who;
}

Result<std::string> resolve_data_dir(const std::optional<std::string>& flag) {
    if (flag && !flag->empty()) return *flag;
    const char* env = std::getenv(kDataDirEnv);
    if (env != nullptr && *env != '\0') return std::string(env);
    return fail(ErrorCode::invalid_argument,
                std::string("no data directory: pass --data DIR or set ") + kDataDirEnv);
}

int app_create(const std::string& data_dir, const std::string& name, bool as_json, Io io,
               const crypto::ScryptParams& params) {
    // The one offline command that may run before `serve` ever has.
    if (auto s = util::make_dirs(data_dir, 0700); !s) return failed(io, "app create", s.error());
    auto store = store::Store::open(store::Layout::of(data_dir).database);
    if (!store) return failed(io, "app create", store.error());
    identity::AppRegistry apps(**store, system_clock(), params);
    auto created = apps.create(name, current_operator());
    if (!created) return failed(io, "app create", created.error());
    if (as_json) {
        io.out << dump(json{{"app", created->app.name},
                            {"client_id", created->app.client_id},
                            {"client_secret", created->client_secret}})
               << "\n";
    } else {
        io.out << "app: " << created->app.name << "\n"
               << "client_id: " << created->app.client_id << "\n"
               << "client_secret: " << created->client_secret << "\n"
               << "Store the client secret in the agent's secret store now: it is not kept by "
                  "the hub and will not be shown again.\n";
    }
    io.out.flush();
    return 0;
}

int app_create_with_key(const std::string& data_dir, const std::string& name,
                        const std::string& public_key_file, bool as_json, Io io) {
    // Checked before anything is created: a bad key leaves no trace.
    auto key = read_public_key(public_key_file);
    if (!key) return failed(io, "app create", key.error());
    if (auto s = util::make_dirs(data_dir, 0700); !s) return failed(io, "app create", s.error());
    auto store = store::Store::open(store::Layout::of(data_dir).database);
    if (!store) return failed(io, "app create", store.error());
    identity::AppRegistry apps(**store, system_clock());
    auto created = apps.create_with_key(name, *key, current_operator());
    if (!created) return failed(io, "app create", created.error());
    if (as_json) {
        io.out << dump(json{{"app", created->name},
                            {"client_id", created->client_id},
                            {"auth_method", created->auth_method},
                            {"key_thumbprint", key->thumbprint()},
                            {"key_algorithm", key->algorithm()}})
               << "\n";
    } else {
        io.out << "app: " << created->name << "\n"
               << "client_id: " << created->client_id << "\n"
               << "auth_method: " << created->auth_method << "\n"
               << "key: " << key->description() << " (" << key->algorithm() << ")\n"
               << "key_thumbprint: " << key->thumbprint() << "\n"
               << "No client secret exists: the agent signs client assertions with the private "
                  "key (hub.client_auth: private_key_jwt).\n";
    }
    io.out.flush();
    return 0;
}

int app_set_key(const std::string& data_dir, const std::string& name,
                const std::string& public_key_file, std::chrono::seconds overlap, bool as_json,
                Io io) {
    auto key = read_public_key(public_key_file);
    if (!key) return failed(io, "app set-key", key.error());
    auto store = open_existing(data_dir);
    if (!store) return failed(io, "app set-key", store.error());
    identity::AppRegistry apps(**store, system_clock());
    auto change = apps.set_key(name, *key, overlap, current_operator());
    if (!change) return failed(io, "app set-key", change.error());
    if (as_json) {
        io.out << dump(json{{"app", change->app.name},
                            {"client_id", change->app.client_id},
                            {"key", key_json(change->key)},
                            {"previous_key",
                             change->previous ? key_json(*change->previous) : json(nullptr)}})
               << "\n";
    } else {
        io.out << "app: " << change->app.name << "\n"
               << "client_id: " << change->app.client_id << "\n"
               << "key: " << key->description() << " (" << key->algorithm() << ")\n"
               << "key_thumbprint: " << change->key.thumbprint << "\n";
        if (change->previous) {
            io.out << "The previous key (" << change->previous->thumbprint
                   << ") keeps working until "
                   << util::rfc3339_millis(*change->previous->valid_until_ms)
                   << ". Put the new private key in the agent's secret store before then.\n";
        } else {
            io.out << "The previous key no longer works. Put the new private key in the agent's "
                      "secret store now.\n";
        }
        if (change->dropped_older) {
            io.out << "A key replaced earlier and still in its overlap stopped working.\n";
        }
    }
    io.out.flush();
    return 0;
}

int app_list(const std::string& data_dir, bool as_json, Io io) {
    auto store = open_existing(data_dir);
    if (!store) return failed(io, "app list", store.error());
    identity::AppRegistry apps(**store, system_clock());
    auto list = apps.list();
    if (!list) return failed(io, "app list", list.error());
    if (as_json) {
        json arr = json::array();
        for (const auto& a : *list) arr.push_back(app_json(a));
        io.out << dump(arr) << "\n";
    } else {
        for (const auto& a : *list) {
            io.out << a.name << "  " << a.client_id << "  " << a.auth_method << "  " << state_of(a);
            if (a.previous_secret_valid_until_ms) {
                io.out << " (previous secret valid until "
                       << util::rfc3339_millis(*a.previous_secret_valid_until_ms) << ")";
            }
            io.out << "\n";
        }
    }
    return 0;
}

int app_show(const std::string& data_dir, const std::string& name, bool as_json, Io io) {
    auto store = open_existing(data_dir);
    if (!store) return failed(io, "app show", store.error());
    identity::AppRegistry apps(**store, system_clock());
    auto app = apps.find(name);
    if (!app) return failed(io, "app show", app.error());
    auto events = apps.events(name);
    if (!events) return failed(io, "app show", events.error());
    auto keys = apps.keys(name);
    if (!keys) return failed(io, "app show", keys.error());
    if (as_json) {
        json out = app_json(*app);
        json key_list = json::array();
        for (const auto& k : *keys) key_list.push_back(key_json(k));
        out["keys"] = std::move(key_list);
        json history = json::array();
        for (const auto& e : *events) {
            history.push_back(
                {{"event", e.event}, {"at_ms", e.at_ms}, {"actor", e.actor}, {"detail", e.detail}});
        }
        out["history"] = std::move(history);
        io.out << dump(out) << "\n";
        return 0;
    }
    const identity::App& a = *app;
    io.out << "app: " << a.name << "\n"
           << "client_id: " << a.client_id << "\n"
           << "state: " << state_of(a) << "\n"
           << "auth_method: " << a.auth_method << "\n"
           << "created_at: " << when(a.created_at_ms) << "\n"
           << "rotated_at: " << when(a.rotated_at_ms)
           << (a.rotated_by ? " by " + *a.rotated_by : std::string()) << "\n"
           << "previous_secret_valid_until: " << when(a.previous_secret_valid_until_ms) << "\n"
           << "revoked_at: " << when(a.revoked_at_ms)
           << (a.revoked_by ? " by " + *a.revoked_by : std::string()) << "\n";
    for (const auto& k : *keys) {
        io.out << "key: " << k.thumbprint << " " << k.algorithm
               << (k.valid_until_ms ? " previous, valid until " + when(k.valid_until_ms)
                                    : std::string(" current"))
               << "\n";
    }
    io.out << "history:\n";
    for (const auto& e : *events) {
        io.out << "  " << util::rfc3339_millis(e.at_ms) << "  " << e.event << "  by " << e.actor;
        if (!e.detail.empty()) io.out << "  (" << e.detail << ")";
        io.out << "\n";
    }
    return 0;
}

int app_rotate(const std::string& data_dir, const std::string& name, std::chrono::seconds overlap,
               bool as_json, Io io, const crypto::ScryptParams& params) {
    auto store = open_existing(data_dir);
    if (!store) return failed(io, "app rotate", store.error());
    identity::AppRegistry apps(**store, system_clock(), params);
    auto rotated = apps.rotate(name, overlap, current_operator());
    if (!rotated) return failed(io, "app rotate", rotated.error());
    const identity::App& a = rotated->app;
    if (as_json) {
        io.out << dump(json{{"app", a.name},
                            {"client_id", a.client_id},
                            {"client_secret", rotated->client_secret},
                            {"previous_secret_valid_until_ms",
                             or_null(a.previous_secret_valid_until_ms)}})
               << "\n";
    } else {
        io.out << "app: " << a.name << "\n"
               << "client_id: " << a.client_id << "\n"
               << "client_secret: " << rotated->client_secret << "\n";
        if (a.previous_secret_valid_until_ms) {
            io.out << "The previous client secret keeps working until "
                   << util::rfc3339_millis(*a.previous_secret_valid_until_ms)
                   << ". Store the new secret in the agent's secret store before then: it is "
                      "not kept by the hub and will not be shown again.\n";
        } else {
            io.out << "The previous client secret no longer works. Store the new secret in the "
                      "agent's secret store now: it is not kept by the hub and will not be shown "
                      "again.\n";
        }
    }
    io.out.flush();
    return 0;
}

int app_revoke(const std::string& data_dir, const std::string& name, bool as_json, Io io) {
    auto store = open_existing(data_dir);
    if (!store) return failed(io, "app revoke", store.error());
    identity::AppRegistry apps(**store, system_clock());
    auto revoked = apps.revoke(name, current_operator());
    if (!revoked) return failed(io, "app revoke", revoked.error());
    if (as_json) {
        io.out << dump(app_json(*revoked)) << "\n";
    } else {
        io.out << "app " << revoked->name << " (" << revoked->client_id << ") revoked at "
               << util::rfc3339_millis(*revoked->revoked_at_ms)
               << ": its agents get no new tokens and their current tokens no longer work.\n";
    }
    io.out.flush();
    return 0;
}

int job_create(const std::string& data_dir, const std::string& app, const std::string& source,
               const std::string& operation, bool as_json, Io io) {
    return job_create(data_dir, JobSpec{app, source, operation, {}}, WaitOptions{}, as_json, io);
}

namespace {

std::string patterns_text(const std::vector<std::string>& patterns) {
    std::string out;
    for (const auto& p : patterns) {
        if (!out.empty()) out += ", ";
        out += dump(json(p));  // quoted, so spaces and commas stay readable
    }
    return "[" + out + "]";
}

std::string filters_text(const jobs::Filters& f) {
    if (f.empty()) return "-";
    std::string out;
    auto group = [&](const char* name, const jobs::PatternList& list) {
        if (list.empty()) return;
        if (!out.empty()) out += "; ";
        out += name;
        if (!list.include.empty()) out += " include " + patterns_text(list.include);
        if (!list.exclude.empty()) out += " exclude " + patterns_text(list.exclude);
    };
    group("schemas", f.schemas);
    group("tables", f.tables);
    return out;
}

void print_job(const jobs::Job& j, bool as_json, Io io) {
    if (as_json) {
        io.out << dump(jobs::to_json(j)) << "\n";
        io.out.flush();
        return;
    }
    io.out << "id: " << j.id << "\n"
           << "app: " << j.app << "\n"
           << "source: " << j.source << "\n"
           << "operation: " << j.operation << "\n"
           << "filters: " << filters_text(j.filters) << "\n"
           << "mode: " << j.mode.value_or("-") << "\n"
           << "baseline_job_id: " << j.baseline_job_id.value_or("-") << "\n"
           << "applied: " << j.applied_mode.value_or("-") << "\n"
           << "status: " << j.status << "\n"
           << "reason_code: " << j.reason_code.value_or("-") << "\n"
           << "message: " << j.message.value_or("-") << "\n"
           << "attempts: " << j.attempts << "\n"
           << "agent_id: " << j.agent_id.value_or("-") << "\n";
    if (j.summary) {
        io.out << "summary: " << j.summary->tables << " tables, " << j.summary->views << " views, "
               << j.summary->columns << " columns\n";
    } else {
        io.out << "summary: -\n";
    }
    io.out << "cancel_requested: ";
    if (j.cancel_requested_at_ms) {
        io.out << "yes, at " << util::rfc3339_millis(*j.cancel_requested_at_ms) << " by "
               << j.cancel_requested_by.value_or("unknown") << "\n";
    } else {
        io.out << "no\n";
    }
    if (j.progress) {
        io.out << "progress: " << j.progress->phase << ", " << j.progress->objects << " objects, "
               << j.progress->bytes << " bytes, " << j.progress->chunks << " chunks\n";
    } else {
        io.out << "progress: -\n";
    }
    io.out << "last_heartbeat: " << when(j.heartbeat_at_ms) << "\n"
           << "created_at: " << when(j.created_at_ms) << "\n"
           << "leased_at: " << when(j.leased_at_ms) << "\n"
           << "lease_expires_at: "
           << (j.status == jobs::status::kLeased ? when(j.lease_expires_at_ms) : "-") << "\n"
           << "started_at: " << when(j.started_at_ms) << "\n"
           << "finished_at: " << when(j.finished_at_ms) << "\n"
           << "completed_at: " << when(j.completed_at_ms) << "\n"
           << "result: " << (j.result ? dump(*j.result, 2) : std::string("-")) << "\n";
    io.out.flush();
}

}  // namespace

int job_create(const std::string& data_dir, const JobSpec& spec, const WaitOptions& wait,
               bool as_json, Io io) {
    auto store = open_existing(data_dir);
    if (!store) return failed(io, "job create", store.error());
    jobs::JobQueue queue(**store, system_clock());
    auto job = queue.create(spec.app, spec.source, spec.operation, spec.filters, spec.mode);
    if (!job) return failed(io, "job create", job.error());
    if (!wait.wait) {
        if (as_json) {
            io.out << dump(json{{"job_id", job->id}}) << "\n";
        } else {
            io.out << job->id << "\n";
        }
        io.out.flush();
        return 0;
    }
    io.err << "agent-hub job create: waiting for job " << job->id << " (timeout "
           << wait.timeout.count() / 1000.0 << " s)\n";
    io.err.flush();
    // Polling the database is enough at this rate and works whether or not
    // `serve` runs in this process; settle() ends a cancelled job whose lease
    // ran out even when no agent polls any more.
    const auto deadline = std::chrono::steady_clock::now() + wait.timeout;
    for (;;) {
        if (auto s = queue.settle(job->id); !s) return failed(io, "job create", s.error());
        auto now_job = queue.get(job->id);
        if (!now_job) return failed(io, "job create", now_job.error());
        if (jobs::is_terminal(now_job->status)) {
            print_job(*now_job, as_json, io);
            return now_job->status == jobs::status::kSucceeded ? 0 : 1;
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            print_job(*now_job, as_json, io);
            io.err << "agent-hub job create: timed out after " << wait.timeout.count() / 1000.0
                   << " s: job " << now_job->id << " is still " << now_job->status << "\n";
            return 2;
        }
        std::this_thread::sleep_for(wait.poll);
    }
}

int job_show(const std::string& data_dir, const std::string& id, bool as_json, Io io) {
    auto store = open_existing(data_dir);
    if (!store) return failed(io, "job show", store.error());
    jobs::JobQueue queue(**store, system_clock());
    auto job = queue.get(id);
    if (!job) return failed(io, "job show", job.error());
    print_job(*job, as_json, io);
    return 0;
}

int job_cancel(const std::string& data_dir, const std::string& id, bool as_json, Io io) {
    auto store = open_existing(data_dir);
    if (!store) return failed(io, "job cancel", store.error());
    jobs::JobQueue queue(**store, system_clock());
    auto outcome = queue.cancel(id, current_operator());
    if (!outcome) return failed(io, "job cancel", outcome.error());
    const jobs::Job& j = outcome->job;
    if (as_json) {
        io.out << dump(json{{"job_id", j.id},
                            {"status", j.status},
                            {"cancel_requested", true},
                            {"ended", outcome->ended}})
               << "\n";
    } else if (outcome->ended) {
        io.out << "job " << j.id << " cancelled\n";
    } else {
        io.out << "cancel requested for job " << j.id << " (leased by agent "
               << j.agent_id.value_or("-")
               << "): the agent learns it from its next heartbeat; the job ends cancelled when "
                  "the agent confirms or its lease expires";
        if (j.lease_expires_at_ms)
            io.out << " (" << util::rfc3339_millis(*j.lease_expires_at_ms) << ")";
        io.out << "\n";
    }
    io.out.flush();
    return 0;
}

int pki_prepare_job_key(const std::string& data_dir, bool as_json, Io io) {
    auto prepared = pki::prepare_job_key(data_dir);
    if (!prepared) return failed(io, "pki rotate-job-key --prepare", prepared.error());
    if (as_json) {
        io.out << dump(json{{"next_kid", prepared->kid}, {"public_key", prepared->public_key_path}})
               << "\n";
    } else {
        io.out << "next job-signing key id: " << prepared->kid << "\n"
               << "its public key: " << prepared->public_key_path << "\n"
               << "Have every agent pin it beside the current key (hub.job_signing_keys), then "
                  "run `agent-hub pki rotate-job-key` to sign with it.\n";
    }
    io.out.flush();
    return 0;
}

int pki_rotate_job_key(const std::string& data_dir, bool as_json, Io io) {
    auto rotated = pki::rotate_job_key(data_dir);
    if (!rotated) return failed(io, "pki rotate-job-key", rotated.error());
    if (as_json) {
        io.out << dump(json{{"previous_kid", rotated->previous_kid},
                            {"kid", rotated->new_kid},
                            {"public_key", rotated->public_key_path},
                            {"previous_public_key", rotated->previous_public_key_path}})
               << "\n";
    } else {
        io.out << "previous job-signing key id: " << rotated->previous_kid
               << " (public key kept in " << rotated->previous_public_key_path << ")\n"
               << "new job-signing key id: " << rotated->new_kid << "\n"
               << "new public key (agents pin it in hub.job_signing_keys): "
               << rotated->public_key_path << "\n"
               << "A running `agent-hub serve` signs jobs with the new key from its next lease; "
                  "agents that do not pin it refuse those jobs (unknown_key).\n";
    }
    io.out.flush();
    return 0;
}

int job_list(const std::string& data_dir, const std::optional<std::string>& app,
             const std::optional<std::string>& status, bool as_json, Io io) {
    auto store = open_existing(data_dir);
    if (!store) return failed(io, "job list", store.error());
    jobs::JobQueue queue(**store, system_clock());
    auto list = queue.list(jobs::JobFilter{.app = app, .status = status, .limit = 1000});
    if (!list) return failed(io, "job list", list.error());
    if (as_json) {
        json arr = json::array();
        for (const auto& j : *list) arr.push_back(jobs::to_json(j));
        io.out << dump(arr) << "\n";
        return 0;
    }
    for (const auto& j : *list) {
        io.out << j.id << "  " << j.app << "  " << j.source << "  " << j.status;
        if (j.reason_code) io.out << " (" << *j.reason_code << ")";
        io.out << "  " << util::rfc3339_millis(j.created_at_ms) << "\n";
    }
    return 0;
}

namespace {

std::string or_dash(const std::optional<std::string>& v) {
    return v && !v->empty() ? *v : "-";
}

std::string relation_line(const ingest::CatalogEntry& t) {
    std::string line =
        t.qualified_name() + "  " + t.kind + "  " + std::to_string(t.columns) + " columns";
    if (t.owner) line += "  owner " + *t.owner;
    if (t.estimated_rows) line += "  ~" + std::to_string(*t.estimated_rows) + " rows";
    if (t.estimated_bytes) line += "  ~" + std::to_string(*t.estimated_bytes) + " bytes";
    if (t.partition_of) {
        line += "  partition of " + t.partition_of->schema + "." + t.partition_of->name;
    }
    return line;
}

}  // namespace

int catalog_tables(const std::string& data_dir, const std::optional<std::string>& source,
                   const std::optional<std::string>& app, bool as_json, Io io) {
    auto store = open_existing(data_dir);
    if (!store) return failed(io, "catalog tables", store.error());
    ingest::Catalog catalog(**store);
    auto tables = catalog.tables(ingest::CatalogFilter{.app = app, .source = source});
    if (!tables) return failed(io, "catalog tables", tables.error());
    if (as_json) {
        json arr = json::array();
        for (const auto& t : *tables) arr.push_back(ingest::to_json(t));
        io.out << dump(arr) << "\n";
        return 0;
    }
    for (const auto& t : *tables) io.out << relation_line(t) << "\n";
    return 0;
}

int catalog_columns(const std::string& data_dir, const std::string& source,
                    const std::string& table, const std::optional<std::string>& app, bool as_json,
                    Io io) {
    auto store = open_existing(data_dir);
    if (!store) return failed(io, "catalog columns", store.error());
    ingest::Catalog catalog(**store);
    auto columns =
        catalog.columns(ingest::CatalogFilter{.app = app, .source = source, .table = table});
    if (!columns) return failed(io, "catalog columns", columns.error());
    if (as_json) {
        json arr = json::array();
        for (const auto& c : *columns) arr.push_back(ingest::to_json(c));
        io.out << dump(arr) << "\n";
        return 0;
    }
    if (columns->empty()) {
        io.err << "agent-hub catalog columns: no table '" << table << "' in source '" << source
               << "'\n";
        return 1;
    }
    for (const auto& c : *columns) {
        const metadata::Column& col = c.column;
        io.out << c.table.qualified_name() << "  " << col.ordinal << "  " << col.name << "  "
               << (col.data_type.empty() ? "-" : col.data_type) << "  "
               << (col.normalized_type.empty() ? "-" : col.normalized_type) << "  "
               << (col.nullable ? "NULL" : "NOT NULL");
        if (col.default_value) io.out << "  DEFAULT " << *col.default_value;
        if (col.primary_key_position > 0) io.out << "  PK" << col.primary_key_position;
        if (!col.identity.empty()) io.out << "  IDENTITY " << col.identity;
        if (!col.generated.empty()) {
            io.out << "  GENERATED " << col.generated;
            if (col.generation_expression) io.out << " AS (" << *col.generation_expression << ")";
        }
        if (col.comment) io.out << "  -- " << *col.comment;
        io.out << "\n";
    }
    return 0;
}

int catalog_routines(const std::string& data_dir, const std::string& source,
                     const std::optional<std::string>& app, bool as_json, Io io) {
    const char* command = "catalog routines";
    auto store = open_existing(data_dir);
    if (!store) return failed(io, command, store.error());
    ingest::Catalog catalog(**store);
    auto known = catalog.has_source(app, source);
    if (!known) return failed(io, command, known.error());
    if (!*known) {
        return failed(
            io, command,
            Error{ErrorCode::not_found, "no metadata has been delivered for source '" + source +
                                            "' (run an extract_metadata job first)"});
    }
    auto routines = catalog.routines(ingest::CatalogFilter{.app = app, .source = source});
    if (!routines) return failed(io, command, routines.error());
    if (as_json) {
        json arr = json::array();
        for (const auto& r : *routines) arr.push_back(ingest::to_json(r));
        io.out << dump(arr) << "\n";
        return 0;
    }
    for (const auto& r : *routines) {
        const metadata::Routine& x = r.routine;
        io.out << r.qualified_name() << "  " << x.kind << "  returns " << or_dash(x.return_type)
               << "  language " << (x.language.empty() ? "-" : x.language);
        if (x.owner) io.out << "  owner " << *x.owner;
        io.out << "\n";
    }
    return 0;
}

int catalog_lineage(const std::string& data_dir, const std::string& source,
                    const std::string& relation, const std::optional<std::string>& app,
                    bool as_json, Io io) {
    const char* command = "catalog lineage";
    auto store = open_existing(data_dir);
    if (!store) return failed(io, command, store.error());
    ingest::Catalog catalog(**store);
    auto lineage = catalog.lineage(app, source, relation);
    if (!lineage) return failed(io, command, lineage.error());
    if (as_json) {
        io.out << dump(ingest::to_json(*lineage)) << "\n";
        return 0;
    }
    io.out << lineage->object.qualified_name() << "  " << lineage->object.kind << "\n";
    io.out << "reads:" << (lineage->reads.empty() ? " -" : "") << "\n";
    for (const auto& r : lineage->reads) {
        io.out << "  " << r.ref.schema << "." << r.ref.name << "  "
               << r.kind.value_or("(not in the catalog)") << "\n";
    }
    io.out << "read by:" << (lineage->read_by.empty() ? " -" : "") << "\n";
    for (const auto& e : lineage->read_by) {
        io.out << "  " << e.qualified_name() << "  " << e.kind << "\n";
    }
    return 0;
}

int catalog_show(const std::string& data_dir, const std::string& source, const std::string& object,
                 const std::optional<std::string>& app, bool as_json, Io io) {
    const char* command = "catalog show";
    auto store = open_existing(data_dir);
    if (!store) return failed(io, command, store.error());
    ingest::Catalog catalog(**store);
    auto record = catalog.record(app, source, object);
    if (!record) return failed(io, command, record.error());
    io.out << dump(*record, as_json ? -1 : 2) << "\n";
    return 0;
}

}  // namespace sa::hub::cli
