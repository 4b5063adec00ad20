#pragma once
// SQLite connector: opens the database file read-only (and query_only) and
// reads sqlite_schema plus the table_xinfo/index_list/index_xinfo/
// foreign_key_list pragmas through their table-valued forms with bound
// parameters, so no object name is ever spliced into SQL text.
#include <string>

#include "agent/connectors/connector.h"

namespace sa::agent::connectors {

// Errors: not_found when the file does not exist (message names the path).
Result<ConnectorPtr> make_sqlite_connector(const std::string& path);

}  // namespace sa::agent::connectors
