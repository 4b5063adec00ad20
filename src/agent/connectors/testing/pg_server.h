#pragma once
// Test support: a throwaway PostgreSQL 15 cluster on 127.0.0.1 at a free
// port, with password (scram-sha-256) authentication over TCP for a reader
// role (with or without TLS) and trust only on the cluster's private UNIX
// socket, which the fixture itself uses for setup and inspection. Two
// databases: "sa_shop" holds a small schema, "sa_rich" one that exercises
// every relation kind and field of the metadata model plus identifier edge
// cases (see pg_server.cpp). The cluster is stopped and its directory removed
// when the PgServer is destroyed.
//
// Needs root (initdb runs as the postgres user via runuser) and the
// postgresql-15 package; skip_reason() says why it cannot run otherwise.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"

struct pg_conn;  // libpq's PGconn

namespace sa::agent::connectors::testing {

using Rows = std::vector<std::vector<std::string>>;

// A superuser session over the private socket that stays open (to hold a
// lock or a temporary table while a test runs). Closed on destruction.
class AdminSession final {
  public:
    explicit AdminSession(pg_conn* conn) : conn_(conn) {}
    ~AdminSession();
    AdminSession(const AdminSession&) = delete;
    AdminSession& operator=(const AdminSession&) = delete;
    // Rows as text ("" for NULL); errors carry the server's message.
    Result<Rows> query(const std::string& sql);

  private:
    pg_conn* conn_;
};

class PgServer final {
  public:
    // A table (and its column) in schema "Straße 表" of the rich database.
    static constexpr const char* kLongName =
        "a_name_of_sixty_three_bytes_which_is_the_longest_postgres_keeps";

    // Empty when the fixture can run here; else why not (for GTEST_SKIP).
    static std::string skip_reason();
    // initdb, start, create the role, the database and its schema.
    static Result<std::unique_ptr<PgServer>> start();

    ~PgServer();
    PgServer(const PgServer&) = delete;
    PgServer& operator=(const PgServer&) = delete;

    uint16_t port() const { return port_; }
    const std::string& database() const { return database_; }
    // The database with the rich fixture schema.
    const std::string& rich_database() const { return rich_database_; }
    const std::string& user() const { return user_; }
    // Random per cluster; tests must not print it.
    const std::string& password() const { return password_; }
    std::string major_version() const { return "15"; }
    // The server also speaks TLS with a self-signed certificate for
    // "localhost"; this PEM file is that certificate (the trust root).
    std::string ca_file() const { return dir_ + "/server.crt"; }

    // Runs sql as the superuser on the test database over the private
    // socket; returns the rows, each value as text ("" for NULL).
    Result<Rows> admin_query(const std::string& sql) const;
    // The same on another database (e.g. "postgres" to create one).
    Result<Rows> admin_query_on(const std::string& database, const std::string& sql) const;
    Result<std::unique_ptr<AdminSession>> admin_session(const std::string& database) const;

    // Runs one of the server's client tools (e.g. "pg_dump", "psql") as the
    // postgres user over the private socket: argv[0] is the tool's name,
    // the connection options (-h socket dir -p port -U postgres) are
    // inserted after it. Returns its standard output; errors carry the
    // exit status and standard error. No password is involved.
    Result<std::string> run_tool(const std::vector<std::string>& argv) const;

  private:
    PgServer() = default;
    Status stop();

    std::string dir_;
    uint16_t port_ = 0;
    std::string database_ = "sa_shop";
    std::string rich_database_ = "sa_rich";
    std::string user_ = "sa_reader";
    std::string password_;
    bool running_ = false;
};

}  // namespace sa::agent::connectors::testing
