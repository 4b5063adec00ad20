#pragma once
// Test support: a throwaway MariaDB 10.11 server on 127.0.0.1 (and 127.0.0.2, which the certificate
// does not name, and ::1 where the machine has an IPv6 loopback) at a free port, with TLS (a
// self-signed certificate with subjectAltName DNS:localhost and IP:127.0.0.1), performance_schema
// on, and a reader account (random password) granted SELECT and SHOW VIEW on the fixture database
// only (and SELECT on mysql.proc, so that routines are visible). The fixture itself (setup and
// inspection) uses root over the server's private UNIX socket. Databases: "sa_shop" (the rich
// fixture, see mariadb_server.cpp) and "sa_ref" (referenced by a foreign key; invisible to the
// reader). The server is stopped and its directory removed when the MariaDbServer is destroyed.
//
// Needs root (mariadbd runs as the mysql user) and the mariadb-server
// package; skip_reason() says why it cannot run otherwise.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"

namespace sa::agent::connectors::testing {

class MariaDbServer final {
  public:
    // Empty when the fixture can run here; else why not (for GTEST_SKIP).
    static std::string skip_reason();
    // install-db, start, create the account and the fixture databases.
    static Result<std::unique_ptr<MariaDbServer>> start();

    ~MariaDbServer();
    MariaDbServer(const MariaDbServer&) = delete;
    MariaDbServer& operator=(const MariaDbServer&) = delete;

    uint16_t port() const { return port_; }
    const std::string& database() const { return database_; }
    const std::string& user() const { return user_; }
    // Random per server; tests must not print it.
    const std::string& password() const { return password_; }
    // The server's self-signed certificate (the trust root for verify-*).
    std::string ca_file() const { return dir_ + "/server.crt"; }
    const std::string& socket() const { return socket_; }
    // Whether the server also listens on ::1 (the same port).
    bool ipv6() const { return ipv6_; }

    // Runs sql (one or more statements) as root over the private socket;
    // returns the rows of the last result, each value as text ("" for NULL).
    Result<std::vector<std::vector<std::string>>> admin_query(const std::string& sql) const;
    // Runs a client tool (mariadb, mariadb-dump) with "--no-defaults
    // --socket=... -uroot" and the given arguments; returns its stdout.
    Result<std::string> run_client(const std::string& tool, const std::string& arguments) const;

  private:
    MariaDbServer() = default;
    void stop();

    std::string dir_;
    std::string socket_;
    uint16_t port_ = 0;
    std::string database_ = "sa_shop";
    std::string user_ = "sa_reader";
    std::string password_;
    bool running_ = false;
    bool ipv6_ = false;
};

}  // namespace sa::agent::connectors::testing
