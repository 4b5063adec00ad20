#pragma once
// One throwaway PostgreSQL server per suite (see server_suite.h).
#include "agent/connectors/testing/pg_server.h"
#include "agent/connectors/testing/server_suite.h"

namespace sa::agent::connectors::testing {

using PgServerSuite = ServerSuite<PgServer>;

}  // namespace sa::agent::connectors::testing
