#include "agent/connectors/factory.h"

#include "agent/connectors/sqlite_connector.h"

namespace sa::agent::connectors {

Result<ConnectorPtr> make_connector(const SourceParams& source) {
    if (source.connector == "sqlite") return make_sqlite_connector(source.path);
    return fail(ErrorCode::invalid_argument,
                "connector \"" + source.connector + "\" is not supported by this agent");
}

}  // namespace sa::agent::connectors
