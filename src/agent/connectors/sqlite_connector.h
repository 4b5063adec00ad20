#pragma once
// SQLite connector: opens the database file read-only (and query_only) and
// reads sqlite_schema plus the table_xinfo/index_list/index_xinfo/
// foreign_key_list pragmas through their table-valued forms with bound
// parameters, so no object name is ever spliced into SQL text run on the
// source. Fills the v2 metadata model (docs/metadata-model.md, SQLite
// section):
// - relations of schema "main" only (temp and attached schemas never), kinds
//   table (virtual tables included) and view; no owner, comment or
//   estimated_bytes; estimated_rows from sqlite_stat1 when ANALYZE has run;
// - columns with the declared type, a type family by SQLite's affinity rules,
//   the rowid alias as identity "by_default", generated virtual/stored;
// - primary key, unique and foreign key constraints (SQLite exposes no check
//   constraints and keeps no constraint names);
// - indexes with their keys; an expression key's text and a partial index's
//   condition are taken from the index's CREATE INDEX statement only when it
//   tokenises to a shape that matches what index_xinfo reports, else
//   "<expression>" / "";
// - views' depends_on: the tables and views the view's own query names
//   (direct dependencies, not what those read in turn), found by SQLite's
//   authorizer and the statement's program while the view is prepared, never
//   run, in a private in-memory catalog in which the relations it names are
//   plain tables with the same column names;
// - no routines (SQLite has no stored routines).
#include <string>

#include "agent/connectors/connector.h"

namespace sa::agent::connectors {

// Errors: not_found when the file does not exist (message names the path).
Result<ConnectorPtr> make_sqlite_connector(const std::string& path);

}  // namespace sa::agent::connectors
