#include "agent/connectors/testing/mariadb_server.h"

#include <arpa/inet.h>
#include <mysql.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <thread>

#include "agent/connectors/testing/server_process.h"
#include "common/crypto/random.h"
#include "common/util/files.h"

namespace sa::agent::connectors::testing {

namespace {

namespace fs = std::filesystem;

constexpr const char* kServer = "/usr/sbin/mariadbd";

// Every object kind and field the connector maps, plus identifier edge
// cases. sa_ref is invisible to the reader: the foreign key into it must
// still name it.
constexpr const char* kFixture = R"sql(
CREATE DATABASE sa_ref CHARACTER SET utf8mb4;
CREATE TABLE sa_ref.countries(code char(2) PRIMARY KEY, name varchar(80) NOT NULL)
  COMMENT 'reference data';
CREATE DATABASE sa_shop CHARACTER SET utf8mb4;
USE sa_shop;
CREATE TABLE customers(
  id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY COMMENT 'surrogate key',
  email varchar(255) NOT NULL,
  name varchar(100) DEFAULT 'anonymous',
  country char(2) NULL,
  active tinyint(1) NOT NULL DEFAULT 1,
  status enum('new','vip','gone') NOT NULL DEFAULT 'new',
  tags set('a','b','c') DEFAULT NULL,
  profile json,
  notes longtext,
  created_at timestamp NOT NULL DEFAULT current_timestamp(),
  bio text,
  UNIQUE KEY uq_email (email),
  KEY idx_name_prefix (name(10)),
  FULLTEXT KEY ft_bio (bio),
  CONSTRAINT fk_country FOREIGN KEY (country) REFERENCES sa_ref.countries(code)
    ON UPDATE CASCADE ON DELETE SET NULL,
  CONSTRAINT chk_email CHECK (email LIKE '%@%')
) ENGINE=InnoDB COMMENT 'people who buy';
CREATE TABLE orders(
  id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
  customer_id int unsigned NOT NULL,
  total decimal(10,2) NOT NULL DEFAULT 0.00,
  tax decimal(10,2) AS (total * 0.2) VIRTUAL,
  total_cents bigint AS (total * 100) STORED,
  placed datetime(3),
  note varchar(20) DEFAULT 'NULL',
  KEY idx_customer (customer_id),
  CONSTRAINT fk_customer FOREIGN KEY (customer_id) REFERENCES customers(id) ON DELETE CASCADE
);
CREATE TABLE order_lines(
  order_id bigint NOT NULL,
  line_no int NOT NULL,
  sku varchar(40),
  qty int CHECK (qty > 0),
  PRIMARY KEY (order_id, line_no),
  CONSTRAINT fk_order FOREIGN KEY (order_id) REFERENCES orders(id));
CREATE TABLE `Mixed Case Table`(
  `Employee Id` int PRIMARY KEY,
  `Manager` int,
  CONSTRAINT `fk self` FOREIGN KEY (`Manager`) REFERENCES `Mixed Case Table`(`Employee Id`));
CREATE TABLE `Straße 表`(`größe` int, `列` varchar(10));
CREATE TABLE `select`(`table` int, `from` int);
CREATE TABLE `t_64_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx`(
  `c_64_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx` int);
CREATE TABLE `back``tick`(`a``b` int);
CREATE TABLE history(id int PRIMARY KEY, v int) WITH SYSTEM VERSIONING;
CREATE SEQUENCE seq_orders;
CREATE VIEW customer_totals AS
  SELECT c.id, c.email, sum(o.total) AS total FROM customers c JOIN orders o
  ON o.customer_id = c.id WHERE c.email <> 'x`.`y' GROUP BY c.id, c.email;
CREATE VIEW vip_totals AS SELECT id, total FROM customer_totals WHERE total > 100;
CREATE VIEW `weird view` AS SELECT `a``b` FROM `back``tick`;
CREATE FUNCTION order_tax(amount decimal(10,2)) RETURNS decimal(10,2) DETERMINISTIC
  COMMENT 'tax of an amount' RETURN amount * 0.2;
CREATE PROCEDURE close_order(IN p_id bigint, OUT p_ok varchar(10)) BEGIN SET p_ok = 'ok'; END;
INSERT INTO sa_ref.countries VALUES ('DE', 'content-never-read');
INSERT INTO customers(email, country) VALUES ('content-never-read@example.com', 'DE');
)sql";

// Whether this machine has an IPv6 loopback to listen on (CI machines may not).
bool ipv6_loopback_available() {
    const int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_loopback;
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
}

}  // namespace

std::string MariaDbServer::skip_reason() {
    if (::geteuid() != 0) return "needs root to run mariadbd as the mysql user";
    std::error_code ec;
    if (!fs::exists(kServer, ec)) return "MariaDB server is not installed";
    if (::getpwnam("mysql") == nullptr) return "no mysql user";
    return "";
}

Result<std::unique_ptr<MariaDbServer>> MariaDbServer::start() {
    if (auto reason = skip_reason(); !reason.empty()) return fail(ErrorCode::unavailable, reason);
    std::unique_ptr<MariaDbServer> server(new MariaDbServer());
    server->dir_ = (fs::temp_directory_path() / ("sa-maria-" + crypto::random_token(9))).string();
    std::error_code ec;
    fs::create_directories(server->dir_, ec);
    if (ec) return fail(ErrorCode::io, "cannot create the server directory");
    server->socket_ = server->dir_ + "/sock";
    auto port = free_loopback_port();
    if (!port) return std::unexpected(port.error());
    server->port_ = *port;
    server->password_ = crypto::random_token(18);
    server->ipv6_ = ipv6_loopback_available();

    const std::string dir = shell_quote(server->dir_);
    // Native AIO off: concurrent throwaway servers (tests run in parallel)
    // can exhaust the kernel's AIO contexts. A failed install is retried
    // from scratch once, and its log is kept in the error.
    // The server gets its own tmpdir: servers running side by side must not
    // share internal temporary table files.
    const std::string install =
        "mkdir -p " + dir + "/tmp && chown mysql: " + dir + " " + dir + "/tmp" +
        " && mariadb-install-db --no-defaults --user=mysql --datadir=" + dir +
        "/data --skip-test-db --auth-root-authentication-method=socket "
        "--debug-no-sync --innodb-use-native-aio=0 "
        "--innodb-flush-log-at-trx-commit=0 > " +
        dir + "/install.log 2>&1";
    Status installed = run_command(install);
    if (!installed) {
        fs::remove_all(server->dir_ + "/data", ec);
        installed = run_command(install);
    }
    if (!installed) {
        std::string log;
        if (auto text = util::read_file(server->dir_ + "/install.log")) {
            log = text->size() > 2000 ? text->substr(text->size() - 2000) : *text;
        }
        return fail(ErrorCode::internal, installed.error().message + "\ninstall.log:\n" + log);
    }
    if (auto st =
            run_command("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
                        "-nodes -days 2 -subj /CN=localhost "
                        "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " +
                        dir + "/server.key -out " + dir + "/server.crt > /dev/null 2>&1 && chown " +
                        "mysql: " + dir + "/server.key && chmod 600 " + dir +
                        "/server.key && chmod 644 " + dir + "/server.crt");
        !st) {
        return std::unexpected(st.error());
    }
    if (auto st =
            run_command(std::string(kServer) + " --no-defaults --user=mysql --datadir=" + dir +
                        "/data --socket=" + shell_quote(server->socket_) +
                        " --port=" + std::to_string(server->port_) +
                        " --bind-address=127.0.0.1,127.0.0.2" + (server->ipv6_ ? ",::1" : "") +
                        " --debug-no-sync --skip-name-resolve --skip-log-bin"
                        " --performance-schema=ON --innodb-buffer-pool-size=32M"
                        " --innodb-flush-log-at-trx-commit=0 --innodb-use-native-aio=0"
                        " --tmpdir=" +
                        dir + "/tmp --ssl-cert=" + dir + "/server.crt --ssl-key=" + dir +
                        "/server.key --pid-file=" + dir + "/pid --log-error=" + dir +
                        "/server.log > /dev/null 2>&1 &");
        !st) {
        return std::unexpected(st.error());
    }
    server->running_ = true;
    bool up = false;
    for (int i = 0; i < 150 && !up; ++i) {
        up = std::system(("mariadb-admin --no-defaults --socket=" + shell_quote(server->socket_) +
                          " -uroot ping > /dev/null 2>&1")
                             .c_str()) == 0;
        if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (!up) return fail(ErrorCode::unavailable, "mariadbd did not start (see server.log)");

    if (auto r = server->admin_query(kFixture); !r) return std::unexpected(r.error());
    // The password travels in SQL text to our own throwaway server only.
    // SELECT on mysql.proc lets information_schema show routines and their
    // parameters without the right to execute them.
    if (auto r = server->admin_query(
            "CREATE USER " + server->user_ + "@'%' IDENTIFIED BY '" + server->password_ +
            "'; GRANT SELECT, SHOW VIEW ON sa_shop.* TO " + server->user_ +
            "@'%'; GRANT SELECT ON mysql.proc TO " + server->user_ + "@'%'");
        !r) {
        return std::unexpected(r.error());
    }
    return server;
}

Result<std::vector<std::vector<std::string>>> MariaDbServer::admin_query(
    const std::string& sql) const {
    MYSQL* m = mysql_init(nullptr);
    if (m == nullptr) return fail(ErrorCode::internal, "mysql_init failed");
    const unsigned protocol = MYSQL_PROTOCOL_SOCKET;
    mysql_optionsv(m, MYSQL_OPT_PROTOCOL, &protocol);
    mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    std::vector<std::vector<std::string>> rows;
    std::string error;
    if (mysql_real_connect(m, nullptr, "root", "", nullptr, 0, socket_.c_str(),
                           CLIENT_MULTI_STATEMENTS) == nullptr) {
        error = std::string("admin connection failed: ") + mysql_error(m);
    } else if (mysql_real_query(m, sql.data(), sql.size()) != 0) {
        error = std::string("admin query failed: ") + mysql_error(m);
    } else {
        for (;;) {
            MYSQL_RES* res = mysql_store_result(m);
            if (res != nullptr) {
                rows.clear();
                const unsigned fields = mysql_num_fields(res);
                while (MYSQL_ROW row = mysql_fetch_row(res)) {
                    unsigned long* lengths = mysql_fetch_lengths(res);
                    std::vector<std::string> values;
                    for (unsigned i = 0; i < fields; ++i) {
                        values.emplace_back(row[i] != nullptr ? std::string(row[i], lengths[i])
                                                              : std::string());
                    }
                    rows.push_back(std::move(values));
                }
                mysql_free_result(res);
            } else if (mysql_errno(m) != 0) {
                error = std::string("admin query failed: ") + mysql_error(m);
                break;
            }
            const int next = mysql_next_result(m);
            if (next > 0) {
                error = std::string("admin query failed: ") + mysql_error(m);
                break;
            }
            if (next < 0) break;
        }
    }
    mysql_close(m);
    if (!error.empty()) return fail(ErrorCode::internal, error);
    return rows;
}

Result<std::string> MariaDbServer::run_client(const std::string& tool,
                                              const std::string& arguments) const {
    const std::string command =
        tool + " --no-defaults --socket=" + shell_quote(socket_) + " -uroot " + arguments;
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) return fail(ErrorCode::io, "cannot run " + tool);
    std::string out;
    char buffer[4096];
    size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
    const int rc = ::pclose(pipe);
    if (rc != 0) return fail(ErrorCode::internal, tool + " failed (" + std::to_string(rc) + ")");
    return out;
}

void MariaDbServer::stop() {
    if (!running_) return;
    running_ = false;
    const std::string pid_file = dir_ + "/pid";
    std::ifstream in(pid_file);
    pid_t pid = 0;
    if (in >> pid && pid > 0) {
        ::kill(pid, SIGTERM);
        std::error_code ec;
        for (int i = 0; i < 300 && fs::exists(pid_file, ec); ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        if (fs::exists(pid_file, ec)) ::kill(pid, SIGKILL);
    }
}

MariaDbServer::~MariaDbServer() {
    stop();
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
}

}  // namespace sa::agent::connectors::testing
