#pragma once
// Test-only PKI: a throwaway CA and a server certificate for 127.0.0.1 and
// localhost, generated in memory with OpenSSL (ECDSA P-256), so TLS tests
// need no checked-in keys and no external tools.
#include <string>

namespace sa::agent::testing {

struct TestCert {
    std::string cert_pem;
    std::string key_pem;
};

struct TestPki {
    TestCert ca;
    TestCert server;  // signed by ca; SAN IP:127.0.0.1, IP:::1, DNS:localhost,
                      // DNS:hub.test (a name only fake resolvers know)
    TestCert client;  // signed by ca; CN "secure-agent test client", EKU clientAuth

    // Aborts the test binary on failure (OpenSSL misuse is a bug here).
    static TestPki generate(const std::string& ca_name = "secure-agent test CA");
};

// One PKI per test binary, and a second one from another CA (for wrong-CA
// and wrong-pin cases): key generation is the slow part, so both are made
// once, on first use.
const TestPki& pki();
const TestPki& other_pki();

// Raw SHA-256 of the certificate's SubjectPublicKeyInfo (an SPKI pin).
std::string spki_sha256(const std::string& cert_pem);

// Writes text to path (creating parent directories); returns path.
std::string write_test_file(const std::string& path, const std::string& text);

}  // namespace sa::agent::testing
