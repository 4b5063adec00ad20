#pragma once
// A connector reads structural metadata (never table contents) from one
// source and streams it, one table or view at a time, into a sink, so memory
// stays bounded however large the catalog is.
#include <cstdint>
#include <memory>

#include "common/metadata/model.h"
#include "common/result.h"

namespace sa::agent::connectors {

class MetadataSink {
  public:
    virtual ~MetadataSink() = default;
    virtual Status write(const metadata::Table& table) = 0;
};

struct ExtractSummary {
    int64_t tables = 0;
    int64_t views = 0;
    int64_t columns = 0;
    int64_t indexes = 0;
    int64_t foreign_keys = 0;
};

class Connector {
  public:
    virtual ~Connector() = default;
    // Streams every table and view into sink. Stops at the first sink error.
    virtual Result<ExtractSummary> extract(MetadataSink& sink) = 0;
};

using ConnectorPtr = std::unique_ptr<Connector>;

}  // namespace sa::agent::connectors
