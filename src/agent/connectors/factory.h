#pragma once
// The one place that maps a source's connector name to an implementation,
// so the job worker dispatches on data, not on code paths per engine.
#include <cstdint>
#include <string>

#include "agent/connectors/connector.h"

namespace sa::agent::connectors {

// What a worker knows about the source it reads (no credential: those travel
// separately as secrets). Fields an engine does not use stay empty.
struct SourceParams {
    std::string name;       // the logical name from the agent's config; safe to report
    std::string connector;  // "sqlite" (PostgreSQL/MariaDB come later)
    std::string path;       // sqlite: the database file; never reported to the hub
    std::string host;
    std::string database;
    std::string sensitivity;
    uint16_t port = 0;
};

// Opens the source. Errors: invalid_argument for an unknown connector name
// (the message names it), otherwise the connector's own errors (which may
// name the path).
Result<ConnectorPtr> make_connector(const SourceParams& source);

}  // namespace sa::agent::connectors
