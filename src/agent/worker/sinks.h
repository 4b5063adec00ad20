#pragma once
// The sinks between a connector and the ChunkWriter in an extract_metadata
// run, in this order:
//
//   connector -> FilteringSink -> DeltaSink -> delivery::ChunkWriter
//
// FilteringSink applies the job's filters and its object limit; DeltaSink
// fingerprints every record that passed, reports it as seen (the run's
// fingerprints.ndjson) and, in an incremental run, passes on only what is
// new or changed against the baseline, then the removals.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/connectors/connector.h"
#include "agent/delivery/chunk_writer.h"
#include "agent/delivery/fingerprint_state.h"
#include "agent/jobs/filters.h"

namespace sa::agent::worker {

// Filters the connector's stream (objects the filters reject are dropped and
// not counted; connectors ask wants() first so they are not even read),
// enforces the object limit and counts what it keeps.
class FilteringSink final : public connectors::MetadataSink {
  public:
    // filters and next must outlive the sink. max_objects 0: unlimited.
    FilteringSink(const jobs::CompiledFilters& filters, int64_t max_objects,
                  connectors::MetadataSink& next)
        : filters_(filters), max_objects_(max_objects), next_(next) {}

    bool wants(std::string_view schema, std::string_view relation) const override {
        return filters_.table_allowed(schema, relation);
    }
    bool wants_schema(std::string_view schema) const override {
        return filters_.schema_allowed(schema);
    }
    // permission_denied once the limit is exceeded (limit_exceeded() is then
    // true); otherwise next's error.
    Status write(const metadata::Table& table) override;
    Status write(const metadata::Routine& routine) override;

    // Every object kept, delivered or not.
    const connectors::ExtractSummary& summary() const { return summary_; }
    int64_t objects() const { return summary_.tables + summary_.views + summary_.routines; }
    bool limit_exceeded() const { return limit_exceeded_; }

  private:
    Status count_object();

    const jobs::CompiledFilters& filters_;
    int64_t max_objects_;
    connectors::MetadataSink& next_;
    connectors::ExtractSummary summary_;
    bool limit_exceeded_ = false;
};

// Fingerprints each record (metadata::fingerprint) and, in a delta run,
// delivers to the ChunkWriter only records that are new or whose fingerprint
// differs from the baseline's; finish() then writes one removal for every
// baseline object not seen. In a full run every record is delivered.
// Memory: the baseline map only (seen objects go to on_seen as they come).
class DeltaSink final : public connectors::MetadataSink {
  public:
    // Called once per record, delivered or unchanged, before it is passed
    // on; an error stops the run (write() returns it).
    using OnSeen = std::function<Status(const delivery::FingerprintEntry&)>;

    // baseline: the objects of the last accepted run (a delta run), or
    // nullopt (a full run). filters: the job's; a baseline object they do not
    // allow is never declared removed (the baseline is only used with the
    // same filters, this is a second line). filters, next outlive the sink.
    DeltaSink(std::optional<std::vector<delivery::FingerprintEntry>> baseline,
              const jobs::CompiledFilters& filters, delivery::ChunkWriter& next, OnSeen on_seen);

    // The FilteringSink in front decides.
    bool wants(std::string_view, std::string_view) const override { return true; }
    bool wants_schema(std::string_view) const override { return true; }
    Status write(const metadata::Table& table) override;
    Status write(const metadata::Routine& routine) override;
    // Writes the removals (delta runs; in a stable order). Call once, after
    // a successful extraction and before the ChunkWriter's finish().
    Status finish();

    bool delta() const { return delta_; }
    // What was delivered (changed and new objects), for the result frame.
    const connectors::ExtractSummary& summary() const { return summary_; }
    int64_t unchanged() const { return unchanged_; }
    int64_t removed() const { return removed_; }

  private:
    struct Known {
        delivery::FingerprintEntry entry;
        bool seen = false;
    };
    // True when the record must be delivered.
    Result<bool> see(const delivery::FingerprintEntry& entry);

    bool delta_ = false;
    std::map<std::string, Known> baseline_;  // identity_of(entry) -> entry
    const jobs::CompiledFilters& filters_;
    delivery::ChunkWriter& next_;
    OnSeen on_seen_;
    connectors::ExtractSummary summary_;
    int64_t unchanged_ = 0;
    int64_t removed_ = 0;
};

}  // namespace sa::agent::worker
