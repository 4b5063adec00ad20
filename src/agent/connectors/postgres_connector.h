#pragma once
// PostgreSQL connector (libpq): reads the system catalogs only, never a
// table's contents, inside one READ ONLY transaction of a session that is
// read-only by default and bounded by statement and lock timeouts.
//
// Connection contract (see docs/jobs.md, "PostgreSQL sources"):
// - connects to source.address (an IP: nothing is resolved), source.port,
//   source.database; source.host is only the name the TLS certificate is
//   checked against (verify-full);
// - sslmode as configured (default verify-full). With verify-ca/verify-full
//   the trust roots are source.ca_file, else the system bundle;
// - user and password come only from the credentials; the values reach
//   libpq as keyword/value parameters (never a connection string) and are
//   wiped from every copy made for it; no password file, no service file,
//   no GSSAPI, no environment defaults (the worker's environment holds only
//   LANG).
//
// Errors of make_postgres_connector: invalid_argument for incomplete source
// settings (the message names the field) or a server-side refusal other than
// authentication (e.g. unknown database); permission_denied when the server
// refused the credentials; unavailable when the server cannot be reached
// (refused, timed out, blocked by the sandbox). Messages never contain a
// credential.
#include "agent/connectors/connector.h"
#include "agent/connectors/factory.h"

namespace sa::agent::connectors {

Result<ConnectorPtr> make_postgres_connector(const SourceParams& source,
                                             const SourceCredentials& credentials);

// Where the system's trust roots are read from when no ca_file is set:
// PostgreSQL 15's libpq has no "system" root store of its own.
inline constexpr const char* kSystemCaBundle = "/etc/ssl/certs/ca-certificates.crt";

}  // namespace sa::agent::connectors
