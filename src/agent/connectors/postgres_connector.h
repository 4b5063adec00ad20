#pragma once
// PostgreSQL connector (libpq): reads the system catalogs only, never a
// table's contents, inside one READ ONLY REPEATABLE READ transaction of a
// session that is read-only by default and bounded by statement and lock
// timeouts (source.statement_timeout_ms, source.lock_timeout_ms; both must
// be positive).
//
// Extraction (PostgreSQL 12 and newer; docs/metadata-model.md has the field
// mapping): relations of kind r/p/f/v/m in non-system schemas, never
// temporary ones nor anything an extension owns, with columns, constraints
// (primary key, unique, foreign key, check; exclusion constraints are not in
// the model), indexes (key columns only, no INCLUDE columns), inheritance,
// partitioning and view lineage; then routines (functions, procedures,
// aggregates, window functions). Streaming: server-side cursors, all ordered
// by relation oid and read in batches, are merged client-side, so each
// relation is assembled, written and dropped; memory is bounded by the batch
// size and round trips are about rows / batch. sink.wants() is asked per
// relation (child rows of unwanted ones are skipped), sink.wants_schema()
// per routine schema. Locks: pg_get_viewdef takes ACCESS SHARE on the
// relations a view reads, held until the transaction ends; a conflicting
// lock makes the read wait up to the lock or statement timeout.
//
// Errors of extract(): unavailable for a lost connection or a timeout (the
// message says "statement timeout hit" / "lock timeout hit" and carries
// SQLSTATE 57014 / 55P03), permission_denied for 42501, the sink's own error
// unchanged. After an error the transaction is aborted: destroy the
// connector (which closes the session).
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
