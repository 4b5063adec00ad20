#pragma once
// Test support: a throwaway PostgreSQL 15 cluster on 127.0.0.1 at a free
// port, with password (scram-sha-256) authentication over TCP for a reader
// role (with or without TLS) and trust only on the cluster's private UNIX socket, which the
// fixture itself uses for setup and inspection. One database, "sa_shop",
// holds a small schema (see pg_server.cpp). The cluster is stopped and its
// directory removed when the PgServer is destroyed.
//
// Needs root (initdb runs as the postgres user via runuser) and the
// postgresql-15 package; skip_reason() says why it cannot run otherwise.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"

namespace sa::agent::connectors::testing {

class PgServer final {
  public:
    // Empty when the fixture can run here; else why not (for GTEST_SKIP).
    static std::string skip_reason();
    // initdb, start, create the role, the database and its schema.
    static Result<std::unique_ptr<PgServer>> start();

    ~PgServer();
    PgServer(const PgServer&) = delete;
    PgServer& operator=(const PgServer&) = delete;

    uint16_t port() const { return port_; }
    const std::string& database() const { return database_; }
    const std::string& user() const { return user_; }
    // Random per cluster; tests must not print it.
    const std::string& password() const { return password_; }
    std::string major_version() const { return "15"; }
    // The server also speaks TLS with a self-signed certificate for
    // "localhost"; this PEM file is that certificate (the trust root).
    std::string ca_file() const { return dir_ + "/server.crt"; }

    // Runs sql as the superuser on the test database over the private
    // socket; returns the rows, each value as text ("" for NULL).
    Result<std::vector<std::vector<std::string>>> admin_query(const std::string& sql) const;

  private:
    PgServer() = default;
    Status stop();

    std::string dir_;
    uint16_t port_ = 0;
    std::string database_ = "sa_shop";
    std::string user_ = "sa_reader";
    std::string password_;
    bool running_ = false;
};

}  // namespace sa::agent::connectors::testing
