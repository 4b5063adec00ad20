#pragma once
// MariaDB / MySQL connector (MariaDB Connector/C): reads information_schema
// only, never a table's contents, in a READ ONLY session bounded by
// max_statement_time and lock wait timeouts.
//
// Connection contract (see docs/jobs.md, "MariaDB sources"):
// - connects over TCP to source.address (an IP: nothing is resolved) and
//   source.port, never a UNIX socket; no option file is read (no
//   MYSQL_READ_DEFAULT_FILE/GROUP, so no my.cnf or ~/.my.cnf), LOCAL INFILE
//   is off, the character set is utf8mb4;
// - user and password come only from the credentials and are wiped from
//   every copy made for the library (an absent password is sent as "", so
//   the library never falls back to $MYSQL_PWD);
// - source.database: only that database is extracted; empty: every
//   database the account can see except mysql, information_schema,
//   performance_schema and sys;
// - sslmode: disable | require (encrypted, not verified) | verify-ca (chain
//   checked against source.ca_file, else the system bundle
//   /etc/ssl/certs/ca-certificates.crt) | verify-full (chain and the name
//   source.host, a DNS name or an IP). Connector/C 3.3 can check a name only
//   against the address it connects to, so verify-full first runs
//   mariadb_verify_server_certificate (below) on a connection of its own,
//   then connects with Connector/C checking the chain against the same roots
//   and pinning the certificate to the SHA-1 fingerprint just verified: the
//   credentials go only to a server presenting that very certificate;
// - the connect attribute program_name is source.application_name (the job
//   id): DBAs see it in performance_schema.session_connect_attrs.
//
// Errors of make_mariadb_connector: invalid_argument for incomplete source
// settings (the message names the field) or an unknown database (1049);
// permission_denied when the server refused the credentials (1045) or the
// TLS handshake / certificate check failed (the message says whether the
// name did not match, naming it, or the chain was not trusted, or the
// server offers no TLS); unavailable when the server
// cannot be reached (2002/2003/2013, timeouts). Query errors: 1969
// (max_statement_time exceeded) and 1205 (lock wait timeout) are
// unavailable with a message saying which limit was hit. Messages never
// contain a credential.
#include "agent/connectors/connector.h"
#include "agent/connectors/factory.h"

namespace sa::agent::connectors {

Result<ConnectorPtr> make_mariadb_connector(const SourceParams& source,
                                            const SourceCredentials& credentials);

// The verify-full pre-check: a TCP connection of its own to source.address
// and source.port (connect and I/O bounded by the connect timeout), the
// server's greeting (which must offer TLS), an SSLRequest, and a TLS 1.2+
// handshake that verifies the chain against source.ca_file (else the
// system bundle) and the certificate against source.host (a DNS name, SNI
// sent; or an IP literal, matched against IP SANs). The connection is then
// closed: nothing is authenticated on it (the server counts it as an
// aborted connect). Returns the SHA-1 fingerprint of the server's
// certificate, 40 lowercase hex digits, the form MARIADB_OPT_TLS_PEER_FP
// takes. Errors: permission_denied (name mismatch, untrusted chain, no TLS,
// handshake failure), unavailable (refused, unreachable, timeout, an error
// instead of a greeting).
Result<std::string> mariadb_verify_server_certificate(const SourceParams& source);

namespace detail {
// The connection step of make_mariadb_connector for verify-full after the
// pre-check, with the certificate pinned to sha1_fingerprint. For tests: a
// wrong fingerprint must make Connector/C refuse the server.
Result<ConnectorPtr> connect_mariadb_pinned(const SourceParams& source,
                                            const SourceCredentials& credentials,
                                            const std::string& sha1_fingerprint);
}  // namespace detail

// Relations whose details are fetched per round trip (names bound as
// parameters of one prepared statement per information_schema table).
inline constexpr int kMariaDbBatchSize = 200;

// Lineage: the relations a MariaDB view reads, derived from its stored
// definition, which MariaDB writes fully qualified with backquotes
// (`db`.`table`.`column`). Returns the first `a`.`b` pair of every
// dotted identifier chain outside string literals, in order of first
// appearance, without duplicates (doubled backquotes inside an identifier
// are unescaped). The caller keeps only pairs that name existing relations.
std::vector<metadata::ObjectRef> mariadb_view_references(std::string_view definition);

// DATA_TYPE (and COLUMN_TYPE) -> one of metadata::type::.
std::string mariadb_normalized_type(std::string_view data_type);

}  // namespace sa::agent::connectors
