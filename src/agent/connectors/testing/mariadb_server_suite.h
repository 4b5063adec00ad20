#pragma once
// One throwaway MariaDB server per suite (see server_suite.h).
#include "agent/connectors/testing/mariadb_server.h"
#include "agent/connectors/testing/server_suite.h"

namespace sa::agent::connectors::testing {

using MariaDbServerSuite = ServerSuite<MariaDbServer>;

}  // namespace sa::agent::connectors::testing
