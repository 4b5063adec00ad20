#include "agent/worker/sinks.h"

#include <utility>

namespace sa::agent::worker {

Status FilteringSink::write(const metadata::Table& table) {
    if (!wants(table.schema, table.name)) return {};
    if (auto st = count_object(); !st) return st;
    if (auto st = next_.write(table); !st) return st;
    connectors::add_to_summary(summary_, table);
    return {};
}

Status FilteringSink::write(const metadata::Routine& routine) {
    if (!wants_schema(routine.schema)) return {};
    if (auto st = count_object(); !st) return st;
    if (auto st = next_.write(routine); !st) return st;
    summary_.routines += 1;
    return {};
}

Status FilteringSink::count_object() {
    if (max_objects_ > 0 && objects() >= max_objects_) {
        limit_exceeded_ = true;
        return fail(ErrorCode::permission_denied,
                    "the job's limit of " + std::to_string(max_objects_) + " objects was exceeded");
    }
    return {};
}

DeltaSink::DeltaSink(std::optional<std::vector<delivery::FingerprintEntry>> baseline,
                     const jobs::CompiledFilters& filters, delivery::ChunkWriter& next,
                     OnSeen on_seen)
    : delta_(baseline.has_value()), filters_(filters), next_(next), on_seen_(std::move(on_seen)) {
    if (baseline) {
        for (auto& entry : *baseline) {
            std::string key = delivery::identity_of(entry);
            baseline_.insert_or_assign(std::move(key), Known{std::move(entry), false});
        }
    }
}

Result<bool> DeltaSink::see(const delivery::FingerprintEntry& entry) {
    if (on_seen_) {
        if (auto st = on_seen_(entry); !st) return std::unexpected(st.error());
    }
    if (!delta_) return true;
    auto it = baseline_.find(delivery::identity_of(entry));
    if (it == baseline_.end()) return true;  // new
    it->second.seen = true;
    if (it->second.entry.fingerprint == entry.fingerprint) {
        ++unchanged_;
        return false;
    }
    return true;  // changed
}

Status DeltaSink::write(const metadata::Table& table) {
    auto deliver = see(delivery::entry_of(table));
    if (!deliver) return std::unexpected(deliver.error());
    if (!*deliver) return {};
    if (auto st = next_.write(table); !st) return st;
    connectors::add_to_summary(summary_, table);
    return {};
}

Status DeltaSink::write(const metadata::Routine& routine) {
    auto deliver = see(delivery::entry_of(routine));
    if (!deliver) return std::unexpected(deliver.error());
    if (!*deliver) return {};
    if (auto st = next_.write(routine); !st) return st;
    summary_.routines += 1;
    return {};
}

Status DeltaSink::finish() {
    if (!delta_) return {};
    for (const auto& [key, known] : baseline_) {
        if (known.seen) continue;
        const auto& e = known.entry;
        const bool allowed = e.object == "table" ? filters_.table_allowed(e.schema, e.name)
                                                 : filters_.schema_allowed(e.schema);
        if (!allowed) continue;
        if (auto st = next_.write(delivery::removal_of(e)); !st) return st;
        ++removed_;
    }
    return {};
}

}  // namespace sa::agent::worker
