#pragma once
// Test helpers for the timestamp tests: a temp directory, a real RFC 3161 TSA
// (`openssl ts -reply` behind an HTTPS handler, with a TSA certificate that
// has extendedKeyUsage critical timeStamping from its own CA), and line-level
// file access for tampering.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "agent/egress/testing/tls_test_server.h"
#include "common/crypto/random.h"
#include "common/testing/temp_dir.h"
#include "common/util/files.h"

namespace sa::agent::timestamp::tsa_testing {

namespace fs = std::filesystem;

using sa::testing::TempDir;

inline void sh(const std::string& command) {
    ASSERT_EQ(std::system((command + " >/dev/null 2>&1").c_str()), 0) << command;
}

// A TSA in directory d: ca.pem (its CA), tsa.pem/tsa.key, tsa.cnf.
inline void make_test_tsa(const fs::path& d, const std::string& ca_name) {
    fs::create_directories(d);
    std::string q = "'" + d.string() + "'";
    sh("cd " + q +
       " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
       " -keyout ca.key -out ca.pem -days 2 -subj '/CN=" +
       ca_name +
       "'"
       " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign");
    sh("cd " + q +
       " && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
       " -keyout tsa.key -out tsa.csr -subj '/CN=Test TSA'");
    util::write_file_atomic((d / "ext.cnf").string(),
                            "extendedKeyUsage=critical,timeStamping\n"
                            "keyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n",
                            0644);
    sh("cd " + q +
       " && openssl x509 -req -in tsa.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
       " -out tsa.pem -days 2 -extfile ext.cnf");
    util::write_file_atomic((d / "serial").string(), "01\n", 0644);
    util::write_file_atomic((d / "tsa.cnf").string(),
                            "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\ndir = " + d.string() +
                                "\nserial = $dir/serial\ncrypto_device = builtin\n"
                                "signer_cert = $dir/tsa.pem\ncerts = $dir/ca.pem\n"
                                "signer_key = $dir/tsa.key\nsigner_digest = sha256\n"
                                "default_policy = 1.2.3.4.1\ndigests = sha256\n"
                                "accuracy = secs:1\ness_cert_id_alg = sha256\n",
                            0644);
}

// Serves POST `path` with `openssl ts -reply` using the TSA in tsa_dir.
inline void serve_tsa(agent::testing::TlsTestServer& server, fs::path tsa_dir,
                      const std::string& path = "/tsa") {
    server.http().Post(path, [tsa_dir](const httplib::Request& req, httplib::Response& res) {
        std::string id = crypto::random_token(6);
        fs::path query = tsa_dir / ("q-" + id + ".tsq");
        fs::path reply = tsa_dir / ("r-" + id + ".tsr");
        std::ofstream(query, std::ios::binary) << req.body;
        std::string cmd = "openssl ts -reply -config '" + (tsa_dir / "tsa.cnf").string() +
                          "' -queryfile '" + query.string() + "' -out '" + reply.string() +
                          "' >/dev/null 2>&1";
        if (std::system(cmd.c_str()) != 0) {
            res.status = 500;
            return;
        }
        std::ifstream in(reply, std::ios::binary);
        std::stringstream body;
        body << in.rdbuf();
        res.set_content(body.str(), "application/timestamp-reply");
    });
}

inline std::vector<std::string> read_lines(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(in, line)) lines.push_back(line);
    return lines;
}

inline void write_lines(const fs::path& file, const std::vector<std::string>& lines) {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    for (const auto& l : lines) out << l << '\n';
}

inline std::string read_all(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace sa::agent::timestamp::tsa_testing
