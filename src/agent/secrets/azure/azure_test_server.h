#pragma once
// Test-only Azure endpoints on 127.0.0.1, faithful to the documented wire
// protocol and strict about the requests they accept:
//
// - Key Vault "Get Secret" over https (TlsTestServer):
//   https://learn.microsoft.com/rest/api/keyvault/secrets/get-secret/get-secret
//   GET /secrets/{name}[/{version}]?api-version=7.4, Authorization: Bearer.
//   200 SecretBundle {"value","id","attributes":{"enabled",...}}; errors are
//   KeyVaultError {"error":{"code","message","innererror"?}}: 401
//   Unauthorized (+ WWW-Authenticate), 403 Forbidden / AccessDenied,
//   403 Forbidden / SecretDisabled, 404 SecretNotFound, 400 BadParameter.
// - Managed identity token from IMDS over plain http (httplib::Server):
//   https://learn.microsoft.com/entra/identity/managed-identities-azure-resources/how-to-use-vm-token
//   GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=...
//   [&client_id=...] with "Metadata: true"; 200 {"access_token",
//   "refresh_token":"","expires_in":"3599","expires_on","not_before",
//   "resource","token_type":"Bearer"} (numbers as strings); errors
//   {"error","error_description"}: 400 invalid_request "Identity not found",
//   400 bad_request_102 without the Metadata header.
// - Microsoft identity platform token endpoint (client credentials,
//   client_secret_post) on the https server:
//   https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow
//   POST /{tenant}/oauth2/v2.0/token, form grant_type, client_id,
//   client_secret, scope; 200 {"token_type":"Bearer","expires_in":3599,
//   "access_token"}; 401 invalid_client.
//
// Every request that breaks the protocol is answered with the vendor's 400
// and recorded in violations(), which tests expect to be empty.
#include <httplib.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/egress/testing/tls_test_server.h"

namespace sa::agent::secrets::azure::testing {

// httplib::Server (plain http) on 127.0.0.1 with an OS-chosen port.
class PlainTestServer final {
  public:
    PlainTestServer();
    ~PlainTestServer();
    PlainTestServer(const PlainTestServer&) = delete;
    PlainTestServer& operator=(const PlainTestServer&) = delete;

    httplib::Server& http() { return server_; }
    void start();
    void stop();
    int port() const { return port_; }
    std::string url(std::string_view path = "") const;

  private:
    httplib::Server server_;
    std::thread thread_;
    std::atomic<bool> finished_{false};
    int port_ = 0;
};

class AzureTestServer final {
  public:
    static constexpr const char* kImdsPath = "/metadata/identity/oauth2/token";
    static constexpr const char* kTenant = "contoso-tenant";
    static constexpr const char* kClientId = "agent-app";

    AzureTestServer();  // starts both servers
    ~AzureTestServer();

    std::string vault_url() const { return vault_.url(); }
    std::string imds_url() const { return imds_.url(kImdsPath); }
    std::string authority() const { return vault_.url(); }  // AUTHORITY/TENANT/oauth2/v2.0/token
    int vault_port() const { return vault_.port(); }
    int imds_port() const { return imds_.port(); }

    // Secrets: each put adds a new current version (id "v1", "v2", ...).
    void put_secret(const std::string& name, const std::string& value);
    void disable_secret(const std::string& name);
    void forbid_secret(const std::string& name);     // 403 AccessDenied
    void malformed_secret(const std::string& name);  // 200 with a non-JSON body
    // The next Key Vault answers have this status and body (one per entry).
    void fail_vault(long status, const std::string& body, int times = 1);
    // Revokes every issued token: Key Vault answers 401 until a new one is used.
    void revoke_tokens();

    // IMDS: the identities assigned to the VM ("" = system-assigned).
    void set_identities(std::set<std::string> client_ids);
    void fail_imds(long status, const std::string& body, int times = 1);
    void set_token_lifetime(int seconds);

    // The client secret the token endpoint accepts.
    void set_client_secret(const std::string& secret);

    int vault_requests() const;
    int imds_requests() const;
    int token_requests() const;
    std::vector<std::string> violations() const;

  private:
    struct Secret {
        std::vector<std::string> versions;  // values, "v1" first
        bool enabled = true;
        bool forbidden = false;
        bool malformed = false;
    };
    struct Failure {
        long status;
        std::string body;
    };

    void violation(const std::string& what);  // mutex_ held
    std::string issue_token();                // mutex_ held
    void handle_vault(const httplib::Request& req, httplib::Response& res);
    void handle_imds(const httplib::Request& req, httplib::Response& res);
    void handle_token(const httplib::Request& req, httplib::Response& res);

    mutable std::mutex mutex_;
    std::map<std::string, Secret> secrets_;
    std::vector<Failure> vault_failures_;
    std::vector<Failure> imds_failures_;
    std::set<std::string> tokens_;
    std::set<std::string> identities_{""};
    std::string client_secret_;
    int token_lifetime_ = 3599;
    int next_token_ = 0;
    int vault_requests_ = 0;
    int imds_requests_ = 0;
    int token_requests_ = 0;
    std::vector<std::string> violations_;
    agent::testing::TlsTestServer vault_;
    PlainTestServer imds_;
};

}  // namespace sa::agent::secrets::azure::testing
