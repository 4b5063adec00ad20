#include "agent/connectors/testing/pg_server.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "common/crypto/random.h"

namespace sa::agent::connectors::testing {

namespace {

namespace fs = std::filesystem;

constexpr const char* kBin = "/usr/lib/postgresql/15/bin/";

constexpr const char* kSchema = R"sql(
CREATE SCHEMA sales;
CREATE SCHEMA hr;
CREATE TABLE sales.customers(
  id integer PRIMARY KEY,
  email text NOT NULL UNIQUE,
  name varchar(100),
  created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE sales.orders(
  id bigserial PRIMARY KEY,
  customer_id integer NOT NULL REFERENCES sales.customers(id) ON DELETE CASCADE,
  total numeric(10,2));
CREATE INDEX orders_customer_idx ON sales.orders(customer_id);
CREATE INDEX orders_lower_idx ON sales.orders((total * 2)) WHERE total > 0;
CREATE TABLE sales.order_lines(
  order_id bigint REFERENCES sales.orders(id) ON UPDATE RESTRICT,
  line_no integer,
  sku text,
  PRIMARY KEY (line_no, order_id));
CREATE VIEW sales.customer_totals AS
  SELECT customer_id, sum(total) AS total FROM sales.orders GROUP BY customer_id;
CREATE TABLE hr."Mixed Case"(
  "Employee Id" integer PRIMARY KEY,
  manager integer REFERENCES hr."Mixed Case"("Employee Id"));
CREATE TABLE hr.payroll(
  employee integer REFERENCES hr."Mixed Case"("Employee Id"),
  customer integer REFERENCES sales.customers(id) ON DELETE SET NULL,
  amount numeric);
INSERT INTO sales.customers VALUES (1, 'content-never-read@example.com', 'x', now());
)sql";

std::string quote(const std::string& s) {
    return "'" + s + "'";  // only our own paths (letters, digits, '/', '-', '_')
}

Status run(const std::string& command) {
    const int rc = std::system(command.c_str());
    if (rc != 0) {
        return fail(ErrorCode::internal, "command failed (" + std::to_string(rc) + "): " + command);
    }
    return {};
}

Result<uint16_t> free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail(ErrorCode::io, "socket failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
    ::close(fd);
    if (!ok) return fail(ErrorCode::io, "cannot find a free port");
    return ntohs(addr.sin_port);
}

using Rows = std::vector<std::vector<std::string>>;

Result<Rows> exec_on(const std::string& socket_dir, uint16_t port, const std::string& database,
                     const std::string& sql) {
    const std::string p = std::to_string(port);
    const char* keys[] = {"host", "port", "user", "dbname", nullptr};
    const char* values[] = {socket_dir.c_str(), p.c_str(), "postgres", database.c_str(), nullptr};
    PGconn* conn = PQconnectdbParams(keys, values, 0);
    if (PQstatus(conn) != CONNECTION_OK) {
        std::string message = PQerrorMessage(conn);
        PQfinish(conn);
        return fail(ErrorCode::unavailable, "admin connection failed: " + message);
    }
    PGresult* result = PQexec(conn, sql.c_str());
    const auto status = PQresultStatus(result);
    Rows rows;
    std::string error;
    if (status == PGRES_TUPLES_OK) {
        for (int r = 0; r < PQntuples(result); ++r) {
            std::vector<std::string> row;
            for (int c = 0; c < PQnfields(result); ++c) row.emplace_back(PQgetvalue(result, r, c));
            rows.push_back(std::move(row));
        }
    } else if (status != PGRES_COMMAND_OK) {
        error = PQresultErrorMessage(result);
    }
    PQclear(result);
    PQfinish(conn);
    if (!error.empty()) return fail(ErrorCode::internal, "admin query failed: " + error);
    return rows;
}

}  // namespace

std::string PgServer::skip_reason() {
    if (::geteuid() != 0) return "needs root to run initdb as the postgres user";
    std::error_code ec;
    if (!fs::exists(std::string(kBin) + "initdb", ec)) return "PostgreSQL 15 is not installed";
    if (::getpwnam("postgres") == nullptr) return "no postgres user";
    return "";
}

Result<std::unique_ptr<PgServer>> PgServer::start() {
    if (auto reason = skip_reason(); !reason.empty()) return fail(ErrorCode::unavailable, reason);
    std::unique_ptr<PgServer> server(new PgServer());
    server->dir_ = (fs::temp_directory_path() / ("sa-pg-" + crypto::random_token(9))).string();
    // base64url tokens may start with '-': harmless inside a path.
    std::error_code ec;
    fs::create_directories(server->dir_, ec);
    if (ec) return fail(ErrorCode::io, "cannot create the cluster directory");
    auto port = free_port();
    if (!port) return std::unexpected(port.error());
    server->port_ = *port;
    server->password_ = crypto::random_token(18);

    const std::string dir = quote(server->dir_);
    const std::string as_postgres = "runuser -u postgres -- ";
    if (auto st = run("chown postgres: " + dir); !st) return std::unexpected(st.error());
    if (auto st = run(as_postgres + kBin + "initdb -D " + dir +
                      "/data -U postgres -E UTF8 --locale=C --no-sync --auth-local=trust"
                      " --auth-host=scram-sha-256 > " +
                      dir + "/initdb.log 2>&1");
        !st) {
        return std::unexpected(st.error());
    }
    // A self-signed certificate for "localhost" (EC: fast to generate); the
    // certificate doubles as the clients' trust root.
    if (auto st = run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
                      "-nodes -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost "
                      "-keyout " +
                      dir + "/server.key -out " + dir + "/server.crt > /dev/null 2>&1 && chown " +
                      "postgres: " + dir + "/server.key && chmod 600 " + dir +
                      "/server.key && chmod 644 " + dir + "/server.crt");
        !st) {
        return std::unexpected(st.error());
    }
    if (auto st =
            run(as_postgres + kBin + "pg_ctl -D " + dir + "/data -l " + dir +
                "/server.log -w -o \"-k " + server->dir_ + " -p " + std::to_string(server->port_) +
                " -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on -c ssl_cert_file=" +
                server->dir_ + "/server.crt -c ssl_key_file=" + server->dir_ +
                "/server.key\" start > /dev/null 2>&1");
        !st) {
        return std::unexpected(st.error());
    }
    server->running_ = true;

    // The password travels in SQL text to our own throwaway server only.
    if (auto r =
            exec_on(server->dir_, server->port_, "postgres",
                    "CREATE ROLE " + server->user_ + " LOGIN PASSWORD '" + server->password_ + "'");
        !r) {
        return std::unexpected(r.error());
    }
    // CREATE DATABASE cannot share a multi-statement (implicit) transaction.
    if (auto r = exec_on(server->dir_, server->port_, "postgres",
                         "CREATE DATABASE " + server->database_);
        !r) {
        return std::unexpected(r.error());
    }
    if (auto r = exec_on(
            server->dir_, server->port_, server->database_,
            std::string(kSchema) + "GRANT USAGE ON SCHEMA sales, hr TO " + server->user_ + ";");
        !r) {
        return std::unexpected(r.error());
    }
    return server;
}

Result<Rows> PgServer::admin_query(const std::string& sql) const {
    return exec_on(dir_, port_, database_, sql);
}

Status PgServer::stop() {
    if (!running_) return {};
    running_ = false;
    return run("runuser -u postgres -- " + std::string(kBin) + "pg_ctl -D " + quote(dir_) +
               "/data -m immediate -w stop > /dev/null 2>&1");
}

PgServer::~PgServer() {
    (void)stop();
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
}

}  // namespace sa::agent::connectors::testing
