#include "agent/connectors/factory.h"

#include "agent/connectors/mariadb_connector.h"
#include "agent/connectors/postgres_connector.h"
#include "agent/connectors/sqlite_connector.h"

namespace sa::agent::connectors {

Result<ConnectorPtr> make_connector(const SourceParams& source,
                                    const SourceCredentials& credentials) {
    if (source.connector == "sqlite") return make_sqlite_connector(source.path);
    if (source.connector == "postgres") return make_postgres_connector(source, credentials);
    if (source.connector == "mariadb") return make_mariadb_connector(source, credentials);
    return fail(ErrorCode::invalid_argument,
                "connector \"" + source.connector + "\" is not supported by this agent");
}

Result<ConnectorPtr> make_connector(const SourceParams& source) {
    return make_connector(source, SourceCredentials{});
}

}  // namespace sa::agent::connectors
