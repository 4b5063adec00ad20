#pragma once
// The one place that maps a source's connector name to an implementation,
// so the job worker dispatches on data, not on code paths per engine.
#include <cstdint>
#include <optional>
#include <string>

#include "agent/connectors/connector.h"
#include "agent/secrets/secret_value.h"

namespace sa::agent::connectors {

// What a worker knows about the source it reads (no credential: those travel
// separately as secrets). Fields an engine does not use stay empty.
struct SourceParams {
    std::string name;       // the logical name from the agent's config; safe to report
    std::string connector;  // "sqlite" | "postgres" | "mariadb" (the agent config's names)
    std::string path;       // sqlite: the database file; never reported to the hub
    // Network sources. host is the name the server's TLS certificate is
    // checked against; address is the IP the supervisor resolved and checked
    // against the egress policy: the worker connects to exactly this address
    // and never resolves a name itself (it has no DNS).
    std::string host;
    std::string address;
    std::string database;
    std::string sensitivity;
    uint16_t port = 0;
    std::string sslmode = "verify-full";  // disable | require | verify-ca | verify-full
    std::string ca_file;                  // optional trust roots (PEM); empty: the system bundle
    std::string application_name;  // shown to the server's admins; the worker sets the job id
    // Bounds on the source (network engines): every statement, and every
    // wait for a lock. PostgreSQL statement_timeout/lock_timeout; MariaDB
    // max_statement_time/lock_wait_timeout (whole seconds, rounded up).
    int64_t statement_timeout_ms = 30000;
    int64_t lock_timeout_ms = 5000;
};

// The credentials the supervisor sent as credential frames ("user",
// "password"). Engines without authentication (SQLite) ignore them.
struct SourceCredentials {
    std::optional<secrets::SecretValue> user;
    std::optional<secrets::SecretValue> password;
};

// Opens the source. Errors: invalid_argument for an unknown connector name
// (the message names it), otherwise the connector's own errors (which may
// name the path, never a credential).
Result<ConnectorPtr> make_connector(const SourceParams& source,
                                    const SourceCredentials& credentials);
// The same without credentials.
Result<ConnectorPtr> make_connector(const SourceParams& source);

}  // namespace sa::agent::connectors
