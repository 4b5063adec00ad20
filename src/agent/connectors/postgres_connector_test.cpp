#include "agent/connectors/postgres_connector.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/connectors/factory.h"
#include "agent/connectors/testing/pg_server_suite.h"
#include "common/crypto/random.h"

namespace sa::agent::connectors {
namespace {

using testing::PgServer;

class CollectingSink final : public MetadataSink {
  public:
    Status write(const metadata::Table& table) override {
        tables[table.schema + "." + table.name] = table;
        return {};
    }
    std::map<std::string, metadata::Table> tables;
};

class FailingSink final : public MetadataSink {
  public:
    Status write(const metadata::Table&) override { return fail(ErrorCode::io, "sink is full"); }
};

// A port nothing listens on: bound, never listened on, kept until the end.
class ClosedPort {
  public:
    ClosedPort() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
    }
    ~ClosedPort() { ::close(fd_); }
    uint16_t port() const { return port_; }

  private:
    int fd_ = -1;
    uint16_t port_ = 0;
};

class PostgresConnectorTest : public testing::PgServerSuite {
  protected:
    SourceParams source() const {
        SourceParams s;
        s.name = "shop";
        s.connector = "postgres";
        s.host = "localhost";
        s.address = "127.0.0.1";
        s.port = server_->port();
        s.database = server_->database();
        s.sslmode = "disable";
        s.application_name = "sa-job-" + crypto::random_token(6);
        return s;
    }
    SourceCredentials credentials(const std::string& password) const {
        SourceCredentials c;
        c.user = secrets::SecretValue::copy_of(server_->user());
        c.password = secrets::SecretValue::copy_of(password);
        return c;
    }
    Result<ConnectorPtr> connect(const SourceParams& s) const {
        return make_connector(s, credentials(server_->password()));
    }
};

TEST_F(PostgresConnectorTest, TestConnectionReportsTheServerVersion) {
    auto connector = connect(source());
    ASSERT_TRUE(connector) << connector.error().describe();
    auto info = (*connector)->test_connection();
    ASSERT_TRUE(info) << info.error().describe();
    EXPECT_TRUE(info->server_version.starts_with(server_->major_version() + "."))
        << info->server_version;
}

TEST_F(PostgresConnectorTest, WrongPasswordIsPermissionDeniedWithoutThePassword) {
    const std::string wrong = "wrong-" + crypto::random_token(12);
    auto connector = make_connector(source(), credentials(wrong));
    ASSERT_FALSE(connector);
    EXPECT_EQ(connector.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(connector.error().message.find(wrong), std::string::npos);
    EXPECT_EQ(connector.error().message.find(server_->password()), std::string::npos);
    EXPECT_NE(connector.error().message.find("authentication failed"), std::string::npos);
}

TEST_F(PostgresConnectorTest, UnknownRoleIsPermissionDenied) {
    SourceCredentials c;
    c.user = secrets::SecretValue::copy_of("nobody_here");
    c.password = secrets::SecretValue::copy_of("whatever-password");
    auto connector = make_connector(source(), c);
    ASSERT_FALSE(connector);
    EXPECT_EQ(connector.error().code, ErrorCode::permission_denied);
}

TEST_F(PostgresConnectorTest, ClosedPortIsUnavailable) {
    ClosedPort closed;
    SourceParams s = source();
    s.port = closed.port();
    auto connector = connect(s);
    ASSERT_FALSE(connector);
    EXPECT_EQ(connector.error().code, ErrorCode::unavailable);
    EXPECT_EQ(connector.error().message.find(server_->password()), std::string::npos);
}

TEST_F(PostgresConnectorTest, UnknownDatabaseIsInvalidArgument) {
    SourceParams s = source();
    s.database = "no_such_db";
    auto connector = connect(s);
    ASSERT_FALSE(connector);
    EXPECT_EQ(connector.error().code, ErrorCode::invalid_argument);
}

TEST_F(PostgresConnectorTest, IncompleteSettingsNameTheField) {
    SourceParams s = source();
    s.address.clear();
    auto a = connect(s);
    ASSERT_FALSE(a);
    EXPECT_EQ(a.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(a.error().message.find("address"), std::string::npos);

    s = source();
    s.sslmode = "prefer";
    auto b = connect(s);
    ASSERT_FALSE(b);
    EXPECT_NE(b.error().message.find("sslmode"), std::string::npos);

    auto c = make_connector(source(), SourceCredentials{});
    ASSERT_FALSE(c);
    EXPECT_NE(c.error().message.find("user"), std::string::npos);
}

TEST_F(PostgresConnectorTest, VerifyFullWithTheSourcesCaConnectsOverTls) {
    SourceParams s = source();
    s.sslmode = "verify-full";
    s.ca_file = server_->ca_file();
    auto connector = connect(s);
    ASSERT_TRUE(connector) << connector.error().describe();
    auto rows = server_->admin_query(
        "SELECT l.ssl FROM pg_stat_ssl l JOIN pg_stat_activity a USING (pid) "
        "WHERE a.application_name = '" +
        s.application_name + "'");
    ASSERT_TRUE(rows) << rows.error().describe();
    ASSERT_EQ(rows->size(), 1U);
    EXPECT_EQ((*rows)[0][0], "t");
}

TEST_F(PostgresConnectorTest, VerifyFullRefusesAnotherHostName) {
    SourceParams s = source();
    s.sslmode = "verify-full";
    s.ca_file = server_->ca_file();
    s.host = "db.example.com";  // the certificate names localhost
    auto connector = connect(s);
    ASSERT_FALSE(connector);
    EXPECT_EQ(connector.error().code, ErrorCode::permission_denied);
    EXPECT_NE(connector.error().message.find("db.example.com"), std::string::npos);
}

TEST_F(PostgresConnectorTest, VerifyFullWithoutCaUsesTheSystemRootsAndRefusesSelfSigned) {
    SourceParams s = source();
    s.sslmode = "verify-full";
    auto connector = connect(s);
    ASSERT_FALSE(connector);
    EXPECT_EQ(connector.error().code, ErrorCode::permission_denied) << connector.error().describe();
}

TEST_F(PostgresConnectorTest, ListSchemasCountsTablesAndViews) {
    auto connector = connect(source());
    ASSERT_TRUE(connector) << connector.error().describe();
    auto schemas = (*connector)->list_schemas();
    ASSERT_TRUE(schemas) << schemas.error().describe();
    std::map<std::string, int64_t> counts;
    for (const auto& s : *schemas) {
        EXPECT_EQ(s.database, server_->database());
        counts[s.schema] = s.tables;
    }
    EXPECT_EQ(counts.at("sales"), 4);
    EXPECT_EQ(counts.at("hr"), 2);
    EXPECT_EQ(counts.count("pg_catalog"), 0U);
    EXPECT_EQ(counts.count("information_schema"), 0U);
    EXPECT_EQ(counts.count("pg_toast"), 0U);
}

TEST_F(PostgresConnectorTest, PreflightChecksPass) {
    auto connector = connect(source());
    ASSERT_TRUE(connector) << connector.error().describe();
    auto report = (*connector)->preflight();
    ASSERT_TRUE(report) << report.error().describe();
    EXPECT_TRUE(report->server_version.starts_with("15."));
    std::vector<std::string> names;
    for (const auto& check : report->checks) {
        names.push_back(check.name);
        EXPECT_TRUE(check.ok) << check.name << ": " << check.detail;
    }
    EXPECT_EQ(names, (std::vector<std::string>{"connect", "server_version", "read_catalog",
                                               "schemas_visible", "read_only"}));
}

TEST_F(PostgresConnectorTest, ExtractStreamsTablesColumnsKeysIndexesAndViews) {
    auto connector = connect(source());
    ASSERT_TRUE(connector) << connector.error().describe();
    CollectingSink sink;
    auto summary = (*connector)->extract(sink);
    ASSERT_TRUE(summary) << summary.error().describe();
    EXPECT_EQ(summary->tables, 5);
    EXPECT_EQ(summary->views, 1);
    ASSERT_EQ(sink.tables.size(), 6U);

    const auto& customers = sink.tables.at("sales.customers");
    EXPECT_EQ(customers.database, server_->database());
    EXPECT_EQ(customers.kind, "table");
    ASSERT_EQ(customers.columns.size(), 4U);
    EXPECT_EQ(customers.columns[0].name, "id");
    EXPECT_EQ(customers.columns[0].ordinal, 1);
    EXPECT_EQ(customers.columns[0].data_type, "integer");
    EXPECT_FALSE(customers.columns[0].nullable);
    EXPECT_EQ(customers.columns[0].primary_key_position, 1);
    EXPECT_EQ(customers.columns[2].data_type, "character varying(100)");
    EXPECT_TRUE(customers.columns[2].nullable);
    EXPECT_EQ(customers.columns[2].primary_key_position, 0);
    EXPECT_EQ(customers.columns[3].default_value, "now()");
    ASSERT_EQ(customers.indexes.size(), 2U);
    EXPECT_EQ(customers.indexes[0].name, "customers_email_key");
    EXPECT_TRUE(customers.indexes[0].unique);
    EXPECT_EQ(customers.indexes[0].origin, "unique_constraint");
    EXPECT_EQ(customers.indexes[0].columns, std::vector<std::string>{"email"});
    EXPECT_EQ(customers.indexes[1].origin, "primary_key");

    const auto& orders = sink.tables.at("sales.orders");
    EXPECT_EQ(orders.columns[0].data_type, "bigint");
    ASSERT_TRUE(orders.columns[0].default_value);
    EXPECT_NE(orders.columns[0].default_value->find("nextval"), std::string::npos);
    ASSERT_EQ(orders.foreign_keys.size(), 1U);
    EXPECT_EQ(orders.foreign_keys[0].referenced_table, "customers");
    EXPECT_EQ(orders.foreign_keys[0].columns, std::vector<std::string>{"customer_id"});
    EXPECT_EQ(orders.foreign_keys[0].referenced_columns, std::vector<std::string>{"id"});
    EXPECT_EQ(orders.foreign_keys[0].on_delete, "CASCADE");
    EXPECT_EQ(orders.foreign_keys[0].on_update, "NO ACTION");
    std::map<std::string, metadata::Index> indexes;
    for (const auto& i : orders.indexes) indexes[i.name] = i;
    EXPECT_EQ(indexes.at("orders_customer_idx").columns, std::vector<std::string>{"customer_id"});
    EXPECT_FALSE(indexes.at("orders_customer_idx").unique);
    EXPECT_EQ(indexes.at("orders_customer_idx").origin, "create_index");
    EXPECT_TRUE(indexes.at("orders_lower_idx").partial);
    EXPECT_EQ(indexes.at("orders_lower_idx").columns, std::vector<std::string>{"<expr>"});

    // A composite key in declaration order of the constraint, not of the columns.
    const auto& lines = sink.tables.at("sales.order_lines");
    EXPECT_EQ(lines.columns[0].primary_key_position, 2);  // order_id
    EXPECT_EQ(lines.columns[1].primary_key_position, 1);  // line_no
    EXPECT_EQ(lines.foreign_keys.at(0).on_update, "RESTRICT");

    const auto& view = sink.tables.at("sales.customer_totals");
    EXPECT_EQ(view.kind, "view");
    ASSERT_TRUE(view.definition);
    EXPECT_NE(view.definition->find("sales.orders"), std::string::npos) << *view.definition;
    EXPECT_EQ(view.columns.size(), 2U);

    const auto& mixed = sink.tables.at("hr.Mixed Case");
    EXPECT_EQ(mixed.columns[0].name, "Employee Id");
    EXPECT_EQ(mixed.foreign_keys.at(0).referenced_table, "Mixed Case");
    EXPECT_EQ(mixed.foreign_keys.at(0).referenced_columns, std::vector<std::string>{"Employee Id"});

    const auto& payroll = sink.tables.at("hr.payroll");
    ASSERT_EQ(payroll.foreign_keys.size(), 2U);
    std::map<std::string, metadata::ForeignKey> keys;
    for (const auto& k : payroll.foreign_keys) keys[k.referenced_table] = k;
    EXPECT_EQ(keys.at("sales.customers").on_delete, "SET NULL");
    EXPECT_EQ(keys.count("Mixed Case"), 1U);

    // Every streamed table survives the wire model's strict parser.
    for (const auto& [name, table] : sink.tables) {
        auto parsed = metadata::table_from_json(metadata::to_json(table));
        EXPECT_TRUE(parsed) << name << ": " << parsed.error().describe();
    }
}

TEST_F(PostgresConnectorTest, ExtractStopsAtTheFirstSinkError) {
    auto connector = connect(source());
    ASSERT_TRUE(connector) << connector.error().describe();
    FailingSink sink;
    auto summary = (*connector)->extract(sink);
    ASSERT_FALSE(summary);
    EXPECT_EQ(summary.error().message, "sink is full");
}

TEST_F(PostgresConnectorTest, SessionIsReadOnlyAndNamedByApplicationName) {
    const SourceParams s = source();
    auto connector = connect(s);
    ASSERT_TRUE(connector) << connector.error().describe();
    auto rows = server_->admin_query(
        "SELECT usename, client_addr::text FROM pg_stat_activity WHERE application_name = '" +
        s.application_name + "'");
    ASSERT_TRUE(rows) << rows.error().describe();
    ASSERT_EQ(rows->size(), 1U);
    EXPECT_EQ((*rows)[0][0], server_->user());
    EXPECT_EQ((*rows)[0][1], "127.0.0.1/32");

    auto report = (*connector)->preflight();
    ASSERT_TRUE(report);
    EXPECT_EQ(report->checks.back().detail, "transaction_read_only = on");

    connector->reset();
    // Gone once the connector is destroyed (PQfinish is synchronous on our
    // side; the backend exits right after), so poll briefly.
    bool gone = false;
    for (int i = 0; i < 100 && !gone; ++i) {
        auto after = server_->admin_query(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '" +
            s.application_name + "'");
        ASSERT_TRUE(after);
        gone = (*after)[0][0] == "0";
        if (!gone) ::usleep(20 * 1000);
    }
    EXPECT_TRUE(gone);
}

}  // namespace
}  // namespace sa::agent::connectors
