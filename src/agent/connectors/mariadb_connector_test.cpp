#include "agent/connectors/mariadb_connector.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/connectors/factory.h"
#include "agent/connectors/testing/mariadb_server_suite.h"

#include "common/metadata/testing/schema_check.h"

namespace sa::agent::connectors {
namespace {

using metadata::ObjectRef;

// Keeps everything it is given; the filters are sets of names to skip.
class CollectingSink final : public MetadataSink {
  public:
    bool wants(std::string_view schema, std::string_view relation) const override {
        return !skip_relations.contains(std::string(schema) + "." + std::string(relation));
    }
    bool wants_schema(std::string_view schema) const override {
        return !skip_schemas.contains(std::string(schema));
    }
    Status write(const metadata::Table& table) override {
        const std::string key = table.schema + "." + table.name;
        EXPECT_FALSE(tables.contains(key)) << key << " written twice";
        tables[key] = table;
        return {};
    }
    Status write(const metadata::Routine& routine) override {
        routines.push_back(routine);
        return {};
    }
    const metadata::Routine* routine(const std::string& name) const {
        for (const auto& r : routines) {
            if (r.schema + "." + r.name == name) return &r;
        }
        return nullptr;
    }
    const metadata::Table& table(const std::string& key) const {
        auto it = tables.find(key);
        if (it == tables.end()) throw std::out_of_range("no relation " + key);
        return it->second;
    }
    std::set<std::string> skip_relations;
    std::set<std::string> skip_schemas;
    std::map<std::string, metadata::Table> tables;
    std::vector<metadata::Routine> routines;
};

std::vector<std::string> column_names(const metadata::Table& table) {
    std::vector<std::string> names;
    for (const auto& c : table.columns) names.push_back(c.name);
    return names;
}

const metadata::Column& column(const metadata::Table& table, const std::string& name) {
    for (const auto& c : table.columns) {
        if (c.name == name) return c;
    }
    throw std::out_of_range("no column " + name + " in " + table.name);
}

const metadata::Constraint& constraint(const metadata::Table& table, const std::string& name) {
    for (const auto& c : table.constraints) {
        if (c.name == name) return c;
    }
    throw std::out_of_range("no constraint " + name + " in " + table.name);
}

const metadata::Index& index(const metadata::Table& table, const std::string& name) {
    for (const auto& i : table.indexes) {
        if (i.name == name) return i;
    }
    throw std::out_of_range("no index " + name + " in " + table.name);
}

uint16_t closed_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    return ntohs(addr.sin_port);
}

// ---- without a server ------------------------------------------------------

TEST(MariaDbViewReferences, FirstPairOfEveryQualifiedChain) {
    const std::string sql =
        "select `db`.`t`.`id` AS `id`,`x`.`c` AS `c` from (`db`.`t` join `other db`.`a``b` `x` "
        "on(`x`.`c` = `db`.`t`.`id`)) where `db`.`t`.`n` = 'it''s `fake`.`ref`' and "
        "`db`.`t`.`m` <> \"`also`.`fake`\"";
    const auto refs = mariadb_view_references(sql);
    ASSERT_EQ(refs.size(), 3u);
    EXPECT_EQ(refs[0], (ObjectRef{"db", "t"}));
    EXPECT_EQ(refs[1], (ObjectRef{"x", "c"}));  // an alias pair: the caller drops it
    EXPECT_EQ(refs[2], (ObjectRef{"other db", "a`b"}));
}

TEST(MariaDbViewReferences, IgnoresUnqualifiedAndEscapedQuotes) {
    EXPECT_TRUE(mariadb_view_references("select 1 AS `1`").empty());
    EXPECT_TRUE(mariadb_view_references("select 'a\\'`b`.`c`' AS `x`").empty());
    EXPECT_EQ(mariadb_view_references("select `a`.`b`.`c`.`d`"),
              (std::vector<ObjectRef>{{"a", "b"}}));
    // Separate identifiers are not a chain.
    EXPECT_TRUE(mariadb_view_references("select `a` `b`, `c`").empty());
}

TEST(MariaDbNormalizedType, Families) {
    EXPECT_EQ(mariadb_normalized_type("tinyint"), "integer");
    EXPECT_EQ(mariadb_normalized_type("BIGINT"), "integer");
    EXPECT_EQ(mariadb_normalized_type("decimal"), "decimal");
    EXPECT_EQ(mariadb_normalized_type("double"), "float");
    EXPECT_EQ(mariadb_normalized_type("varchar"), "string");
    EXPECT_EQ(mariadb_normalized_type("longtext"), "string");
    EXPECT_EQ(mariadb_normalized_type("varbinary"), "binary");
    EXPECT_EQ(mariadb_normalized_type("datetime"), "timestamp");
    EXPECT_EQ(mariadb_normalized_type("timestamp"), "timestamp_tz");
    EXPECT_EQ(mariadb_normalized_type("enum"), "enum");
    EXPECT_EQ(mariadb_normalized_type("set"), "enum");
    EXPECT_EQ(mariadb_normalized_type("json"), "json");
    EXPECT_EQ(mariadb_normalized_type("point"), "geometry");
    EXPECT_EQ(mariadb_normalized_type("inet6"), "network");
    EXPECT_EQ(mariadb_normalized_type("uuid"), "uuid");
    EXPECT_EQ(mariadb_normalized_type("something_new"), "other");
}

TEST(MariaDbSource, RejectsIncompleteSettings) {
    SourceParams source;
    source.connector = "mariadb";
    source.address = "db.example.com";
    source.port = 3306;
    SourceCredentials credentials;
    credentials.user = secrets::SecretValue::copy_of("reader");
    auto c = make_mariadb_connector(source, credentials);
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(c.error().message.find("address"), std::string::npos);

    source.address = "127.0.0.1";
    source.sslmode = "prefer";
    c = make_mariadb_connector(source, credentials);
    ASSERT_FALSE(c);
    EXPECT_NE(c.error().message.find("sslmode"), std::string::npos);

    source.sslmode = "disable";
    credentials.user.reset();
    c = make_mariadb_connector(source, credentials);
    ASSERT_FALSE(c);
    EXPECT_NE(c.error().message.find("user"), std::string::npos);
}

// verify-full runs the certificate pre-check first: a closed port is
// unavailable there, for IPv4 and IPv6 literals alike.
TEST(MariaDbSource, VerifyFullWithANameReachesThePreCheck) {
    SourceParams source;
    source.connector = "mariadb";
    source.address = "127.0.0.1";
    source.host = "db.example.com";
    source.port = closed_port();
    source.sslmode = "verify-full";
    SourceCredentials credentials;
    credentials.user = secrets::SecretValue::copy_of("reader");
    credentials.password = secrets::SecretValue::copy_of("pw-never-shown");
    auto c = make_mariadb_connector(source, credentials);
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code, ErrorCode::unavailable) << c.error().describe();
    EXPECT_NE(c.error().message.find("127.0.0.1"), std::string::npos) << c.error().message;
    EXPECT_EQ(c.error().message.find("pw-never-shown"), std::string::npos);

    source.address = "::1";
    c = make_mariadb_connector(source, credentials);
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code, ErrorCode::unavailable) << c.error().describe();
}

// A listener that answers every connection with the given bytes, then
// closes it (an impostor or an overloaded server).
class OneShotListener final {
  public:
    explicit OneShotListener(std::string reply) : reply_(std::move(reply)) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            ::listen(fd_, 1) != 0 ||
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            throw std::runtime_error("cannot listen");
        }
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] {
            const int client = ::accept(fd_, nullptr, nullptr);
            if (client < 0) return;
            (void)!::send(client, reply_.data(), reply_.size(), MSG_NOSIGNAL);
            ::shutdown(client, SHUT_WR);
            char sink[256];
            while (::recv(client, sink, sizeof sink, 0) > 0) {
            }
            ::close(client);
        });
    }
    ~OneShotListener() {
        ::shutdown(fd_, SHUT_RDWR);
        thread_.join();
        ::close(fd_);
    }
    uint16_t port() const { return port_; }

  private:
    std::string reply_;
    int fd_ = -1;
    uint16_t port_ = 0;
    std::thread thread_;
};

TEST(MariaDbSource, PreCheckReportsAnErrorInsteadOfAGreeting) {
    const std::string text = "Too many connections";
    std::string packet;
    packet += static_cast<char>(3 + text.size());
    packet += std::string("\0\0\0", 3);  // length bytes 2-3 and sequence 0
    packet += "\xff";
    packet += static_cast<char>(1040 & 0xff);
    packet += static_cast<char>(1040 >> 8);
    packet += text;
    OneShotListener listener(packet);
    SourceParams source;
    source.address = "127.0.0.1";
    source.host = "db.example.com";
    source.port = listener.port();
    source.sslmode = "verify-full";
    auto fp = mariadb_verify_server_certificate(source);
    ASSERT_FALSE(fp);
    EXPECT_EQ(fp.error().code, ErrorCode::unavailable) << fp.error().describe();
    EXPECT_NE(fp.error().message.find("Too many connections (error 1040)"), std::string::npos)
        << fp.error().message;
}

TEST(MariaDbSource, PreCheckRefusesAServerWithoutTls) {
    // A protocol 10 greeting whose capabilities lack CLIENT_SSL.
    std::string payload =
        "\x0a"
        "5.5.5-10.11.0-fake";
    payload += '\0';
    payload += std::string("\x01\0\0\0", 4);  // connection id
    payload += "abcdefgh";                    // auth data part 1
    payload += '\0';                          // filler
    payload += std::string("\x00\x02", 2);    // capabilities: CLIENT_PROTOCOL_41 only
    payload += std::string(20, '\0');
    std::string packet;
    packet += static_cast<char>(payload.size());
    packet += std::string("\0\0\0", 3);
    packet += payload;
    OneShotListener listener(packet);
    SourceParams source;
    source.address = "127.0.0.1";
    source.host = "db.example.com";
    source.port = listener.port();
    source.sslmode = "verify-full";
    auto fp = mariadb_verify_server_certificate(source);
    ASSERT_FALSE(fp);
    EXPECT_EQ(fp.error().code, ErrorCode::permission_denied) << fp.error().describe();
    EXPECT_NE(fp.error().message.find("does not offer TLS"), std::string::npos)
        << fp.error().message;
}

TEST(MariaDbSource, UnreachableServerIsUnavailable) {
    SourceParams source;
    source.connector = "mariadb";
    source.address = "127.0.0.1";
    source.port = closed_port();
    source.sslmode = "disable";
    SourceCredentials credentials;
    credentials.user = secrets::SecretValue::copy_of("reader");
    credentials.password = secrets::SecretValue::copy_of("pw-never-shown");
    auto c = make_connector(source, credentials);
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code, ErrorCode::unavailable) << c.error().describe();
    EXPECT_EQ(c.error().message.find("pw-never-shown"), std::string::npos);
}

// ---- against a throwaway MariaDB 10.11 ---------------------------------------

class MariaDbConnectorTest : public testing::MariaDbServerSuite {
  protected:
    SourceParams source(const std::string& sslmode = "disable") const {
        SourceParams s;
        s.name = "shop";
        s.connector = "mariadb";
        s.address = "127.0.0.1";
        s.host = "127.0.0.1";
        s.port = server_->port();
        s.database = server_->database();
        s.sslmode = sslmode;
        s.ca_file = server_->ca_file();
        s.application_name = "sa-job-7f3c";
        return s;
    }
    SourceCredentials credentials(const std::string& password = "") const {
        SourceCredentials c;
        c.user = secrets::SecretValue::copy_of(server_->user());
        c.password =
            secrets::SecretValue::copy_of(password.empty() ? server_->password() : password);
        return c;
    }
    ConnectorPtr connect(const SourceParams& s) const {
        auto c = make_connector(s, credentials());
        EXPECT_TRUE(c) << (c ? "" : c.error().describe());
        return c ? std::move(*c) : nullptr;
    }
    static CollectingSink& extracted() {
        static CollectingSink sink;
        return sink;
    }
    // The fixture, extracted once for the tests that only read it.
    void SetUp() override {
        testing::MariaDbServerSuite::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        if (!extracted_) {
            auto c = connect(source());
            ASSERT_TRUE(c);
            auto summary = c->extract(extracted());
            ASSERT_TRUE(summary) << summary.error().describe();
            summary_ = *summary;
            extracted_ = true;
        }
    }
    inline static bool extracted_ = false;
    inline static ExtractSummary summary_;
};

TEST_F(MariaDbConnectorTest, ExtractsEveryRelationKindExactlyOnce) {
    const auto& sink = extracted();
    std::set<std::string> names;
    for (const auto& [key, table] : sink.tables) names.insert(key);
    const std::set<std::string> expected = {
        "sa_shop.Mixed Case Table",
        "sa_shop.Straße 表",
        "sa_shop.back`tick",
        "sa_shop.customer_totals",
        "sa_shop.customers",
        "sa_shop.history",
        "sa_shop.order_lines",
        "sa_shop.orders",
        "sa_shop.select",
        "sa_shop.t_64_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "sa_shop.vip_totals",
        "sa_shop.weird view",
    };
    EXPECT_EQ(names, expected);  // the sequence is not a relation
    EXPECT_EQ(summary_.tables, 9);
    EXPECT_EQ(summary_.views, 3);
    EXPECT_EQ(summary_.routines, 2);
    for (const auto& [key, table] : sink.tables) {
        EXPECT_EQ(table.database, "sa_shop");
        EXPECT_EQ(table.schema, "sa_shop");
        EXPECT_TRUE(metadata::is_relation_kind(table.kind)) << key;
        EXPECT_FALSE(table.columns.empty()) << key;
        for (size_t i = 0; i < table.columns.size(); ++i) {
            EXPECT_EQ(table.columns[i].ordinal, static_cast<int64_t>(i + 1)) << key;
            EXPECT_TRUE(metadata::is_normalized_type(table.columns[i].normalized_type)) << key;
        }
    }
    EXPECT_EQ(sink.table("sa_shop.history").kind, "table");  // SYSTEM VERSIONED
    EXPECT_EQ(sink.table("sa_shop.weird view").kind, "view");
    EXPECT_EQ(column_names(sink.table("sa_shop.Straße 表")),
              (std::vector<std::string>{"größe", "列"}));
    EXPECT_EQ(column_names(sink.table("sa_shop.select")),
              (std::vector<std::string>{"table", "from"}));
    EXPECT_EQ(column_names(sink.table("sa_shop.back`tick")), (std::vector<std::string>{"a`b"}));
    EXPECT_EQ(sink.table("sa_shop.t_64_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
                  .columns.at(0)
                  .name.size(),
              64u);
}

// What the connector really produces is what the published JSON Schema
// describes (checked by an independent validator).
TEST_F(MariaDbConnectorTest, EveryRecordMatchesThePublishedSchema) {
    const auto& sink = extracted();
    std::vector<metadata::Record> records;
    for (const auto& [name, table] : sink.tables) records.push_back(table);
    for (const auto& routine : sink.routines) records.push_back(routine);
    ASSERT_GT(records.size(), 10u);
    if (auto why = metadata::testing::schema_check_skip_reason(); !why.empty()) {
        GTEST_SKIP() << why;
    }
    auto verdicts = metadata::testing::check_against_schema(records);
    ASSERT_TRUE(verdicts) << verdicts.error().message;
    ASSERT_EQ(verdicts->size(), records.size());
    for (size_t i = 0; i < records.size(); ++i) {
        EXPECT_EQ((*verdicts)[i], "ok") << metadata::to_json(records[i]).dump();
    }
}

TEST_F(MariaDbConnectorTest, MapsTablesAndColumns) {
    const auto& customers = extracted().table("sa_shop.customers");
    EXPECT_EQ(customers.kind, "table");
    EXPECT_EQ(customers.comment, "people who buy");
    EXPECT_FALSE(customers.owner);
    ASSERT_TRUE(customers.estimated_rows);
    ASSERT_TRUE(customers.estimated_bytes);
    EXPECT_GT(*customers.estimated_bytes, 0);
    EXPECT_FALSE(customers.definition);

    const auto& id = column(customers, "id");
    EXPECT_EQ(id.data_type, "int(10) unsigned");
    EXPECT_EQ(id.normalized_type, "integer");
    EXPECT_FALSE(id.nullable);
    EXPECT_EQ(id.identity, "by_default");
    EXPECT_EQ(id.comment, "surrogate key");
    EXPECT_EQ(id.primary_key_position, 1);
    EXPECT_FALSE(id.default_value);

    EXPECT_EQ(column(customers, "name").default_value, "'anonymous'");
    EXPECT_FALSE(column(customers, "country").default_value);  // nullable, DEFAULT NULL
    EXPECT_TRUE(column(customers, "country").nullable);
    EXPECT_EQ(column(customers, "active").data_type, "tinyint(1)");
    EXPECT_EQ(column(customers, "active").normalized_type, "integer");
    EXPECT_EQ(column(customers, "active").default_value, "1");
    EXPECT_EQ(column(customers, "status").data_type, "enum('new','vip','gone')");
    EXPECT_EQ(column(customers, "status").normalized_type, "enum");
    EXPECT_EQ(column(customers, "status").default_value, "'new'");
    EXPECT_EQ(column(customers, "tags").normalized_type, "enum");
    EXPECT_EQ(column(customers, "profile").data_type, "longtext");
    EXPECT_EQ(column(customers, "profile").normalized_type, "json");
    EXPECT_EQ(column(customers, "notes").normalized_type, "string");  // longtext, no check
    EXPECT_EQ(column(customers, "created_at").normalized_type, "timestamp_tz");
    EXPECT_EQ(column(customers, "created_at").default_value, "current_timestamp()");

    const auto& orders = extracted().table("sa_shop.orders");
    EXPECT_EQ(column(orders, "tax").generated, "virtual");
    EXPECT_EQ(column(orders, "tax").generation_expression, "`total` * 0.2");
    EXPECT_EQ(column(orders, "total_cents").generated, "stored");
    EXPECT_EQ(column(orders, "total_cents").generation_expression, "`total` * 100");
    EXPECT_FALSE(column(orders, "total_cents").default_value);
    EXPECT_EQ(column(orders, "note").default_value, "'NULL'");  // the string, not NULL
    EXPECT_EQ(column(orders, "total").default_value, "0.00");
    EXPECT_EQ(column(orders, "placed").data_type, "datetime(3)");
    EXPECT_EQ(column(orders, "placed").normalized_type, "timestamp");

    const auto& lines = extracted().table("sa_shop.order_lines");
    EXPECT_EQ(column(lines, "order_id").primary_key_position, 1);
    EXPECT_EQ(column(lines, "line_no").primary_key_position, 2);
    EXPECT_EQ(column(lines, "sku").primary_key_position, 0);
}

TEST_F(MariaDbConnectorTest, MapsConstraintsAndIndexes) {
    const auto& customers = extracted().table("sa_shop.customers");
    const auto& pk = constraint(customers, "PRIMARY");
    EXPECT_EQ(pk.type, "primary_key");
    EXPECT_EQ(pk.columns, (std::vector<std::string>{"id"}));
    EXPECT_EQ(constraint(customers, "uq_email").type, "unique");
    const auto& fk = constraint(customers, "fk_country");
    EXPECT_EQ(fk.type, "foreign_key");
    EXPECT_EQ(fk.columns, (std::vector<std::string>{"country"}));
    ASSERT_TRUE(fk.references);
    EXPECT_EQ(*fk.references, (ObjectRef{"sa_ref", "countries"}));  // another database
    EXPECT_EQ(fk.referenced_columns, (std::vector<std::string>{"code"}));
    EXPECT_EQ(fk.on_update, "CASCADE");
    EXPECT_EQ(fk.on_delete, "SET NULL");
    const auto& check = constraint(customers, "chk_email");
    EXPECT_EQ(check.type, "check");
    EXPECT_EQ(check.definition, "`email` like '%@%'");
    EXPECT_EQ(constraint(customers, "profile").definition, "json_valid(`profile`)");

    EXPECT_EQ(index(customers, "PRIMARY").origin, "primary_key");
    EXPECT_TRUE(index(customers, "PRIMARY").unique);
    EXPECT_EQ(index(customers, "PRIMARY").method, "btree");
    EXPECT_EQ(index(customers, "uq_email").origin, "unique_constraint");
    EXPECT_EQ(index(customers, "idx_name_prefix").origin, "create_index");
    EXPECT_FALSE(index(customers, "idx_name_prefix").unique);
    EXPECT_EQ(index(customers, "idx_name_prefix").keys,
              (std::vector<metadata::IndexKey>{{.column = "name"}}));
    EXPECT_EQ(index(customers, "ft_bio").method, "fulltext");
    EXPECT_FALSE(index(customers, "ft_bio").predicate);

    const auto& lines = extracted().table("sa_shop.order_lines");
    EXPECT_EQ(constraint(lines, "PRIMARY").columns,
              (std::vector<std::string>{"order_id", "line_no"}));
    EXPECT_EQ(index(lines, "PRIMARY").keys,
              (std::vector<metadata::IndexKey>{{.column = "order_id"}, {.column = "line_no"}}));
    EXPECT_EQ(constraint(lines, "qty").type, "check");  // a column check is named after it
    EXPECT_EQ(constraint(lines, "qty").definition, "`qty` > 0");
    const auto& fk_order = constraint(lines, "fk_order");
    EXPECT_EQ(*fk_order.references, (ObjectRef{"sa_shop", "orders"}));
    EXPECT_EQ(fk_order.on_update, "RESTRICT");
    EXPECT_EQ(fk_order.on_delete, "RESTRICT");

    const auto& mixed = extracted().table("sa_shop.Mixed Case Table");
    const auto& self = constraint(mixed, "fk self");
    EXPECT_EQ(self.columns, (std::vector<std::string>{"Manager"}));
    EXPECT_EQ(*self.references, (ObjectRef{"sa_shop", "Mixed Case Table"}));
    EXPECT_EQ(self.referenced_columns, (std::vector<std::string>{"Employee Id"}));
}

TEST_F(MariaDbConnectorTest, MapsViewsAndLineage) {
    const auto& totals = extracted().table("sa_shop.customer_totals");
    EXPECT_EQ(totals.kind, "view");
    ASSERT_TRUE(totals.definition);
    EXPECT_NE(totals.definition->find("`sa_shop`.`customers`"), std::string::npos);
    EXPECT_EQ(totals.owner, "root@localhost");
    EXPECT_FALSE(totals.estimated_rows);
    EXPECT_FALSE(totals.comment);
    // The literal 'x`.`y' in the definition is not a reference.
    EXPECT_EQ(totals.depends_on,
              (std::vector<ObjectRef>{{"sa_shop", "customers"}, {"sa_shop", "orders"}}));
    EXPECT_EQ(extracted().table("sa_shop.vip_totals").depends_on,
              (std::vector<ObjectRef>{{"sa_shop", "customer_totals"}}));
    EXPECT_EQ(extracted().table("sa_shop.weird view").depends_on,
              (std::vector<ObjectRef>{{"sa_shop", "back`tick"}}));
    EXPECT_EQ(column_names(totals), (std::vector<std::string>{"id", "email", "total"}));
}

TEST_F(MariaDbConnectorTest, MapsRoutines) {
    const auto* function = extracted().routine("sa_shop.order_tax");
    ASSERT_NE(function, nullptr);
    EXPECT_EQ(function->kind, "function");
    EXPECT_EQ(function->signature, "`amount` decimal(10,2)");
    EXPECT_EQ(function->return_type, "decimal(10,2)");
    EXPECT_EQ(function->language, "sql");
    EXPECT_EQ(function->comment, "tax of an amount");
    EXPECT_EQ(function->owner, "root@localhost");
    const auto* procedure = extracted().routine("sa_shop.close_order");
    ASSERT_NE(procedure, nullptr);
    EXPECT_EQ(procedure->kind, "procedure");
    EXPECT_EQ(procedure->signature, "IN `p_id` bigint(20), OUT `p_ok` varchar(10)");
    EXPECT_FALSE(procedure->return_type);
}

TEST_F(MariaDbConnectorTest, RecordsSurviveTheWireFormat) {
    for (const auto& [key, table] : extracted().tables) {
        auto back = metadata::table_from_json(metadata::to_json(table));
        ASSERT_TRUE(back) << key << ": " << back.error().describe();
        EXPECT_EQ(*back, table) << key;
    }
}

TEST_F(MariaDbConnectorTest, SinkFiltersSkipRelationsAndRoutines) {
    auto c = connect(source());
    ASSERT_TRUE(c);
    CollectingSink sink;
    sink.skip_relations = {"sa_shop.orders", "sa_shop.Straße 表"};
    sink.skip_schemas = {"sa_shop"};
    auto summary = c->extract(sink);
    ASSERT_TRUE(summary) << summary.error().describe();
    EXPECT_EQ(sink.tables.size(), 10u);
    EXPECT_FALSE(sink.tables.contains("sa_shop.orders"));
    EXPECT_TRUE(sink.routines.empty());
    // Lineage still names a relation the filter skipped: it exists.
    EXPECT_EQ(sink.table("sa_shop.customer_totals").depends_on.size(), 2u);
}

TEST_F(MariaDbConnectorTest, EmptyDatabaseMeansEveryVisibleOne) {
    auto s = source();
    s.database.clear();
    auto c = connect(s);
    ASSERT_TRUE(c);
    CollectingSink sink;
    ASSERT_TRUE(c->extract(sink));
    std::set<std::string> databases;
    for (const auto& [key, table] : sink.tables) databases.insert(table.database);
    // sa_ref is not granted; mysql, information_schema, ... are never extracted.
    EXPECT_EQ(databases, (std::set<std::string>{"sa_shop"}));
    auto schemas = c->list_schemas();
    ASSERT_TRUE(schemas);
    ASSERT_EQ(schemas->size(), 1u);
    EXPECT_EQ((*schemas)[0].schema, "sa_shop");
    EXPECT_EQ((*schemas)[0].database, "sa_shop");
    EXPECT_EQ((*schemas)[0].tables, 12);
}

TEST_F(MariaDbConnectorTest, TestConnectionAndPreflight) {
    auto c = connect(source());
    ASSERT_TRUE(c);
    auto info = c->test_connection();
    ASSERT_TRUE(info);
    EXPECT_NE(info->server_version.find("10.11"), std::string::npos);
    auto report = c->preflight();
    ASSERT_TRUE(report);
    std::map<std::string, bool> checks;
    for (const auto& check : report->checks) {
        checks[check.name] = check.ok;
        EXPECT_TRUE(check.ok) << check.name << ": " << check.detail;
    }
    EXPECT_EQ(checks.size(), 5u);
    EXPECT_TRUE(checks.contains("read_only"));
}

TEST_F(MariaDbConnectorTest, SessionIsNamedBoundedAndReadOnly) {
    auto s = source();
    s.statement_timeout_ms = 2500;
    s.lock_timeout_ms = 1200;
    auto c = connect(s);
    ASSERT_TRUE(c);
    auto attrs = server_->admin_query(
        "SELECT a.PROCESSLIST_ID FROM performance_schema.session_connect_attrs a "
        "WHERE a.ATTR_NAME = 'program_name' AND a.ATTR_VALUE = 'sa-job-7f3c'");
    ASSERT_TRUE(attrs) << attrs.error().describe();
    ASSERT_EQ(attrs->size(), 1u);
    // MariaDB's performance_schema has no per-thread variables: the
    // session reports its own limits in the preflight.
    auto report = c->preflight();
    ASSERT_TRUE(report);
    const auto& read_only = report->checks.back();
    EXPECT_EQ(read_only.name, "read_only");
    EXPECT_TRUE(read_only.ok);
    EXPECT_EQ(read_only.detail,
              "transaction_read_only = 1, max_statement_time = 3.000000 s, lock_wait_timeout = 2 "
              "s, innodb_lock_wait_timeout = 2 s");
    c.reset();
}

TEST_F(MariaDbConnectorTest, ErrorsAreClassifiedWithoutCredentials) {
    auto bad = make_connector(source(), credentials("wrong-password-never-shown"));
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, ErrorCode::permission_denied) << bad.error().describe();
    EXPECT_EQ(bad.error().message.find("wrong-password-never-shown"), std::string::npos);
    EXPECT_EQ(bad.error().message.find(server_->user()), std::string::npos) << bad.error().message;
    EXPECT_NE(bad.error().message.find("1045"), std::string::npos) << bad.error().message;

    auto s = source();
    s.database = "no_such_db";
    auto unknown = make_connector(s, credentials());
    ASSERT_FALSE(unknown);
    // The reader may not even learn whether it exists: access denied (1044).
    EXPECT_TRUE(unknown.error().code == ErrorCode::invalid_argument ||
                unknown.error().code == ErrorCode::permission_denied)
        << unknown.error().describe();
    EXPECT_EQ(unknown.error().message.find(server_->password()), std::string::npos);
}

TEST_F(MariaDbConnectorTest, TlsModes) {
    // require: encrypted without verification (the self-signed certificate is fine).
    auto s = source("require");
    s.ca_file.clear();
    EXPECT_TRUE(connect(s));
    // verify-ca: the chain against the given root, and against the system
    // bundle, which does not hold our self-signed certificate.
    EXPECT_TRUE(connect(source("verify-ca")));
    s = source("verify-ca");
    s.ca_file.clear();
    auto untrusted = make_connector(s, credentials());
    ASSERT_FALSE(untrusted);
    EXPECT_EQ(untrusted.error().code, ErrorCode::permission_denied) << untrusted.error().describe();
    // verify-full: the chain and the name, an IP (SAN IP:127.0.0.1) or a
    // DNS name (SAN DNS:localhost).
    EXPECT_TRUE(connect(source("verify-full")));
    s = source("verify-full");
    s.host = "localhost";
    EXPECT_TRUE(connect(s));
    s = source("verify-full");
    s.ca_file.clear();
    auto unverified = make_connector(s, credentials());
    ASSERT_FALSE(unverified);
    EXPECT_EQ(unverified.error().code, ErrorCode::permission_denied);
}

TEST_F(MariaDbConnectorTest, WrongCertificateAddressIsRefused) {
    // The server also listens on 127.0.0.2, which its certificate does not
    // name: verify-full must fail the handshake (before authentication).
    auto s = source("verify-full");
    s.address = "127.0.0.2";
    s.host = "127.0.0.2";
    auto c = make_connector(s, credentials());
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code, ErrorCode::permission_denied) << c.error().describe();
    EXPECT_NE(c.error().message.find("\"127.0.0.2\""), std::string::npos) << c.error().message;
    // verify-ca accepts the same certificate: only the name was wrong.
    s.sslmode = "verify-ca";
    EXPECT_TRUE(connect(s));
    // The name is what is checked, not the address connected to.
    s.sslmode = "verify-full";
    s.host = "localhost";
    EXPECT_TRUE(connect(s));
}

// Successful logins of the reader, and failed logins of anyone, so far.
std::pair<std::string, std::string> login_counters(const testing::MariaDbServer& server) {
    auto accounts = server.admin_query(
        "SELECT COALESCE(SUM(TOTAL_CONNECTIONS), 0) FROM performance_schema.accounts "
        "WHERE USER = '" +
        server.user() + "'");
    auto denied = server.admin_query("SHOW GLOBAL STATUS LIKE 'Access_denied_errors'");
    if (!accounts || accounts->size() != 1 || !denied || denied->size() != 1) return {};
    return {accounts->front().at(0), denied->front().at(1)};
}

TEST_F(MariaDbConnectorTest, VerifyFullWithANameConnectsAndExtracts) {
    auto s = source("verify-full");
    s.host = "localhost";
    auto c = connect(s);
    ASSERT_TRUE(c);
    CollectingSink sink;
    auto summary = c->extract(sink);
    ASSERT_TRUE(summary) << summary.error().describe();
    EXPECT_EQ(sink.tables.size(), extracted().tables.size());
    EXPECT_TRUE(sink.tables.contains("sa_shop.customers"));
}

TEST_F(MariaDbConnectorTest, VerifyFullNameMismatchIsRefusedBeforeTheLogin) {
    const auto before = login_counters(*server_);
    ASSERT_FALSE(before.first.empty());
    auto s = source("verify-full");
    s.host = "other.example";
    auto c = make_connector(s, credentials());
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code, ErrorCode::permission_denied) << c.error().describe();
    EXPECT_NE(c.error().message.find("does not match the name \"other.example\""),
              std::string::npos)
        << c.error().message;
    EXPECT_EQ(c.error().message.find(server_->password()), std::string::npos);
    // No login was attempted: neither a successful one of the reader nor a
    // refused one.
    EXPECT_EQ(login_counters(*server_), before);
}

TEST_F(MariaDbConnectorTest, VerifyFullWithTheSystemBundleIsUntrusted) {
    auto s = source("verify-full");
    s.host = "localhost";
    s.ca_file.clear();
    auto c = make_connector(s, credentials());
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code, ErrorCode::permission_denied) << c.error().describe();
    EXPECT_NE(c.error().message.find("not trusted"), std::string::npos) << c.error().message;
    EXPECT_NE(c.error().message.find("system CA bundle"), std::string::npos) << c.error().message;
}

TEST_F(MariaDbConnectorTest, VerifyFullOverIpv6) {
    if (!server_->ipv6()) GTEST_SKIP() << "no IPv6 loopback on this machine";
    auto s = source("verify-full");
    s.address = "::1";
    s.host = "localhost";
    EXPECT_TRUE(connect(s));
}

// The pre-check's fingerprint is the certificate's, and Connector/C
// enforces the pin: a wrong one is refused, the right one accepted.
TEST_F(MariaDbConnectorTest, ThePinnedFingerprintIsEnforced) {
    auto s = source("verify-full");
    s.host = "localhost";
    auto fingerprint = mariadb_verify_server_certificate(s);
    ASSERT_TRUE(fingerprint) << fingerprint.error().describe();
    ASSERT_EQ(fingerprint->size(), 40u);

    FILE* file = std::fopen(server_->ca_file().c_str(), "r");
    ASSERT_NE(file, nullptr);
    X509* cert = PEM_read_X509(file, nullptr, nullptr, nullptr);
    std::fclose(file);
    ASSERT_NE(cert, nullptr);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    ASSERT_EQ(X509_digest(cert, EVP_sha1(), md, &md_len), 1);
    X509_free(cert);
    std::string expected;
    for (unsigned i = 0; i < md_len; ++i) {
        char hex[3];
        std::snprintf(hex, sizeof hex, "%02x", md[i]);
        expected += hex;
    }
    EXPECT_EQ(*fingerprint, expected);

    const auto before_right = login_counters(*server_);
    auto right = detail::connect_mariadb_pinned(s, credentials(), *fingerprint);
    EXPECT_TRUE(right) << (right ? "" : right.error().describe());
    // The counters see a login (so their staying put below means something).
    EXPECT_NE(login_counters(*server_).first, before_right.first);

    std::string wrong = *fingerprint;
    wrong.back() = wrong.back() == '0' ? '1' : '0';
    const auto before = login_counters(*server_);
    auto refused = detail::connect_mariadb_pinned(s, credentials(), wrong);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::permission_denied) << refused.error().describe();
    EXPECT_NE(refused.error().message.find("ingerprint"), std::string::npos)
        << refused.error().message;
    EXPECT_EQ(login_counters(*server_), before);  // refused in the handshake, before the login
}

// The connection is made from the source settings and credentials only:
// no option file ($HOME/.my.cnf) and no $MYSQL_PWD.
TEST_F(MariaDbConnectorTest, IgnoresOptionFilesAndEnvironment) {
    const auto home =
        std::filesystem::temp_directory_path() / ("sa-maria-home-" + std::to_string(::getpid()));
    std::filesystem::create_directories(home);
    {
        std::ofstream cnf(home / ".my.cnf");
        cnf << "[client]\nport=1\nssl-ca=/nonexistent\ndatabase=mysql\nuser=root\n";
    }
    const char* old_home = std::getenv("HOME");
    const std::string saved_home = old_home != nullptr ? old_home : "";
    ::setenv("HOME", home.c_str(), 1);
    ::setenv("MYSQL_PWD", server_->password().c_str(), 1);

    auto c = make_connector(source(), credentials());
    SourceCredentials no_password;
    no_password.user = secrets::SecretValue::copy_of(server_->user());
    auto without = make_connector(source(), no_password);

    ::unsetenv("MYSQL_PWD");
    if (old_home != nullptr) ::setenv("HOME", saved_home.c_str(), 1);
    std::filesystem::remove_all(home);

    EXPECT_TRUE(c) << (c ? "" : c.error().describe());
    ASSERT_FALSE(without);  // the password in $MYSQL_PWD was not used
    EXPECT_EQ(without.error().code, ErrorCode::permission_denied) << without.error().describe();
    EXPECT_NE(without.error().message.find("using password: NO"), std::string::npos)
        << without.error().message;
}

// The oracle: the mariadb client's own information_schema answers and
// mariadb-dump's CREATE statements.
TEST_F(MariaDbConnectorTest, MatchesTheMariadbClientAndDump) {
    const auto& sink = extracted();
    auto kinds =
        server_->run_client("mariadb",
                            "-N -B -e \"SELECT TABLE_TYPE, COUNT(*) FROM information_schema.TABLES "
                            "WHERE TABLE_SCHEMA = 'sa_shop' GROUP BY TABLE_TYPE ORDER BY 1\"");
    ASSERT_TRUE(kinds) << kinds.error().describe();
    std::map<std::string, int64_t> counts;
    std::istringstream in(*kinds);
    for (std::string line; std::getline(in, line);) {
        const auto tab = line.find('\t');
        counts[line.substr(0, tab)] = std::stoll(line.substr(tab + 1));
    }
    EXPECT_EQ(counts["BASE TABLE"] + counts["SYSTEM VERSIONED"], summary_.tables);
    EXPECT_EQ(counts["VIEW"], summary_.views);
    EXPECT_EQ(counts["SEQUENCE"], 1);

    auto columns = server_->run_client(
        "mariadb",
        "-N -B -e \"SELECT c.TABLE_NAME, c.COLUMN_NAME FROM information_schema.COLUMNS "
        "c JOIN information_schema.TABLES t USING (TABLE_SCHEMA, TABLE_NAME) "
        "WHERE c.TABLE_SCHEMA = 'sa_shop' AND t.TABLE_TYPE <> 'SEQUENCE' "
        "ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION\"");
    ASSERT_TRUE(columns) << columns.error().describe();
    std::map<std::string, std::vector<std::string>> expected;
    std::istringstream cin(*columns);
    for (std::string line; std::getline(cin, line);) {
        const auto tab = line.find('\t');
        expected["sa_shop." + line.substr(0, tab)].push_back(line.substr(tab + 1));
    }
    std::map<std::string, std::vector<std::string>> actual;
    for (const auto& [key, table] : sink.tables) actual[key] = column_names(table);
    EXPECT_EQ(actual, expected);

    auto dump = server_->run_client("mariadb-dump", "--no-data --routines --skip-comments sa_shop");
    ASSERT_TRUE(dump) << dump.error().describe();
    auto count = [&](const std::string& pattern) {
        const std::regex re(pattern);
        return std::distance(std::sregex_iterator(dump->begin(), dump->end(), re),
                             std::sregex_iterator());
    };
    // Views appear twice: a stand-in "CREATE TABLE" or "CREATE VIEW ... AS
    // SELECT 1" first, then the real one ("VIEW `name` AS").
    const auto views = count(R"(\*/\n/\*!50001 VIEW `)");
    const auto create_tables = count(R"(\nCREATE TABLE `)");
    EXPECT_EQ(views, summary_.views);
    EXPECT_EQ(create_tables, summary_.tables) << *dump;
    EXPECT_EQ(count(R"(CREATE DEFINER=\S+ FUNCTION `)"), 1);
    EXPECT_EQ(count(R"(CREATE DEFINER=\S+ PROCEDURE `)"), 1);
    int64_t functions = 0;
    int64_t procedures = 0;
    for (const auto& r : sink.routines) (r.kind == "function" ? functions : procedures) += 1;
    EXPECT_EQ(functions, 1);
    EXPECT_EQ(procedures, 1);
}

TEST_F(MariaDbConnectorTest, AThousandTablesArriveComplete) {
    std::string sql = "CREATE DATABASE sa_many; USE sa_many;";
    constexpr int kTables = 1000;
    for (int t = 0; t < kTables; ++t) {
        const std::string n = std::to_string(t);
        sql += "CREATE TABLE t" + n + "(id int PRIMARY KEY, a" + n + " varchar(10), b int, " +
               "c datetime, UNIQUE KEY u" + n + "(b)) ENGINE=MyISAM;";
    }
    sql += "CREATE VIEW v AS SELECT id FROM t999; GRANT SELECT, SHOW VIEW ON sa_many.* TO " +
           server_->user() + "@'%';";
    ASSERT_TRUE(server_->admin_query(sql));
    auto s = source();
    s.database = "sa_many";
    auto c = connect(s);
    ASSERT_TRUE(c);
    CollectingSink sink;
    const auto start = std::chrono::steady_clock::now();
    auto summary = c->extract(sink);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    ASSERT_TRUE(summary) << summary.error().describe();
    EXPECT_LT(elapsed, std::chrono::seconds(10));
    EXPECT_EQ(summary->tables, kTables);
    EXPECT_EQ(summary->views, 1);
    EXPECT_EQ(summary->columns, kTables * 4 + 1);
    EXPECT_EQ(summary->indexes, kTables * 2);
    EXPECT_EQ(summary->constraints, kTables * 2);
    ASSERT_EQ(sink.tables.size(), static_cast<size_t>(kTables + 1));
    for (int t = 0; t < kTables; ++t) {
        const std::string n = std::to_string(t);
        const auto& table = sink.table("sa_many.t" + n);
        ASSERT_EQ(column_names(table), (std::vector<std::string>{"id", "a" + n, "b", "c"})) << n;
        ASSERT_EQ(constraint(table, "u" + n).columns, (std::vector<std::string>{"b"})) << n;
        ASSERT_EQ(column(table, "id").primary_key_position, 1) << n;
    }
    EXPECT_EQ(sink.table("sa_many.v").depends_on, (std::vector<ObjectRef>{{"sa_many", "t999"}}));
    ASSERT_TRUE(server_->admin_query("DROP DATABASE sa_many"));
}

// A catalog query that waits (information_schema must open a table another
// session is creating with CREATE TABLE ... SELECT SLEEP(), which holds an
// exclusive metadata lock) is ended by max_statement_time: the job fails
// cleanly and the session goes away with the connector.
TEST_F(MariaDbConnectorTest, StatementTimeoutEndsAWaitingCatalogQuery) {
    auto s = source();
    s.statement_timeout_ms = 1000;
    auto c = connect(s);
    ASSERT_TRUE(c);
    std::thread blocker(
        [&] { (void)server_->admin_query("CREATE TABLE sa_shop.blocker SELECT SLEEP(10) AS s"); });
    // Wait until the blocker holds its lock (visible in the process list).
    std::string blocker_id;
    for (int i = 0; i < 250 && blocker_id.empty(); ++i) {
        auto r = server_->admin_query(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE "
            "'CREATE TABLE sa_shop.blocker%' AND STATE = 'User sleep'");
        if (r && !r->empty()) blocker_id = (*r)[0][0];
        if (blocker_id.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (blocker_id.empty()) blocker.join();
    ASSERT_FALSE(blocker_id.empty());
    CollectingSink sink;
    const auto start = std::chrono::steady_clock::now();
    auto summary = c->extract(sink);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    ASSERT_FALSE(summary);
    EXPECT_EQ(summary.error().code, ErrorCode::unavailable) << summary.error().describe();
    EXPECT_NE(summary.error().message.find("max_statement_time"), std::string::npos)
        << summary.error().message;
    EXPECT_LT(elapsed, std::chrono::seconds(3));
    c.reset();
    ASSERT_TRUE(server_->admin_query("KILL " + blocker_id));
    blocker.join();
    ASSERT_TRUE(server_->admin_query("DROP TABLE IF EXISTS sa_shop.blocker"));
    auto sessions =
        server_->admin_query("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '" +
                             server_->user() + "'");
    ASSERT_TRUE(sessions);
    // The close is asynchronous on the server: give it a moment.
    for (int i = 0; i < 50 && (*sessions)[0][0] != "0"; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        sessions = server_->admin_query(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '" + server_->user() +
            "'");
        ASSERT_TRUE(sessions);
    }
    EXPECT_EQ((*sessions)[0][0], "0");
}

}  // namespace
}  // namespace sa::agent::connectors
