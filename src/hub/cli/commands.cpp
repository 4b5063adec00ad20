#include "hub/cli/commands.h"

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "common/util/files.h"
#include "common/util/time.h"
#include "hub/clock/clock.h"
#include "hub/identity/app_registry.h"
#include "hub/ingest/catalog.h"
#include "hub/jobs/job_queue.h"
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

}  // namespace

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
    auto created = apps.create(name);
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

int app_list(const std::string& data_dir, bool as_json, Io io) {
    auto store = open_existing(data_dir);
    if (!store) return failed(io, "app list", store.error());
    identity::AppRegistry apps(**store, system_clock());
    auto list = apps.list();
    if (!list) return failed(io, "app list", list.error());
    if (as_json) {
        json arr = json::array();
        for (const auto& a : *list) {
            arr.push_back(
                {{"app", a.name}, {"client_id", a.client_id}, {"created_at_ms", a.created_at_ms}});
        }
        io.out << dump(arr) << "\n";
    } else {
        for (const auto& a : *list) io.out << a.name << "  " << a.client_id << "\n";
    }
    return 0;
}

int job_create(const std::string& data_dir, const std::string& app, const std::string& source,
               const std::string& operation, bool as_json, Io io) {
    auto store = open_existing(data_dir);
    if (!store) return failed(io, "job create", store.error());
    jobs::JobQueue queue(**store, system_clock());
    auto job = queue.create(app, source, operation);
    if (!job) return failed(io, "job create", job.error());
    if (as_json) {
        io.out << dump(json{{"job_id", job->id}}) << "\n";
    } else {
        io.out << job->id << "\n";
    }
    io.out.flush();
    return 0;
}

int job_show(const std::string& data_dir, const std::string& id, bool as_json, Io io) {
    auto store = open_existing(data_dir);
    if (!store) return failed(io, "job show", store.error());
    jobs::JobQueue queue(**store, system_clock());
    auto job = queue.get(id);
    if (!job) return failed(io, "job show", job.error());
    if (as_json) {
        io.out << dump(jobs::to_json(*job)) << "\n";
        return 0;
    }
    const jobs::Job& j = *job;
    io.out << "id: " << j.id << "\n"
           << "app: " << j.app << "\n"
           << "source: " << j.source << "\n"
           << "operation: " << j.operation << "\n"
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
    io.out << "created_at: " << when(j.created_at_ms) << "\n"
           << "leased_at: " << when(j.leased_at_ms) << "\n"
           << "started_at: " << when(j.started_at_ms) << "\n"
           << "finished_at: " << when(j.finished_at_ms) << "\n"
           << "completed_at: " << when(j.completed_at_ms) << "\n";
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
    for (const auto& t : *tables) {
        io.out << t.qualified_name() << "  " << t.kind << "  " << t.columns << " columns\n";
    }
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
        for (const auto& c : *columns) {
            arr.push_back({{"table", c.table.qualified_name()},
                           {"name", c.column.name},
                           {"ordinal", c.column.ordinal},
                           {"data_type", c.column.data_type},
                           {"nullable", c.column.nullable},
                           {"default",
                            c.column.default_value ? json(*c.column.default_value) : json(nullptr)},
                           {"primary_key_position", c.column.primary_key_position}});
        }
        io.out << dump(arr) << "\n";
        return 0;
    }
    if (columns->empty()) {
        io.err << "agent-hub catalog columns: no table '" << table << "' in source '" << source
               << "'\n";
        return 1;
    }
    for (const auto& c : *columns) {
        io.out << c.table.qualified_name() << "  " << c.column.ordinal << "  " << c.column.name
               << "  " << (c.column.data_type.empty() ? "-" : c.column.data_type) << "  "
               << (c.column.nullable ? "NULL" : "NOT NULL");
        if (c.column.default_value) io.out << "  DEFAULT " << *c.column.default_value;
        if (c.column.primary_key_position > 0) io.out << "  PK" << c.column.primary_key_position;
        io.out << "\n";
    }
    return 0;
}

}  // namespace sa::hub::cli
