#pragma once
// The agent's configuration: a YAML file parsed once, at startup, into an
// immutable Config that is passed down explicitly (no globals).
//
// Every error is a single line "<path.of.key>: <what is wrong>" (ErrorCode
// invalid_argument), e.g. `sources[1].connector: unknown connector "oracle"
// (supported: sqlite, postgres)`; YAML syntax errors give "line L, column C: ...".
// Unknown keys are errors, so a typo never silently falls back to a default.
// SECURITY NOTE: secret-bearing fields (hub.client_secret) accept only a
// reference {secret: "STORE/PATH#KEY"}; a literal is refused and never
// echoed in the error.
// Parsing never throws: yaml-cpp exceptions are caught and converted.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "agent/secrets/aws/aws_settings.h"
#include "agent/secrets/azure/azure_settings.h"
#include "agent/secrets/dapr/dapr_settings.h"
#include "agent/secrets/gcp/gcp_settings.h"
#include "agent/secrets/secret_store.h"
#include "agent/secrets/secret_stores.h"
#include "agent/secrets/vault/vault_settings.h"
#include "common/result.h"

namespace sa::agent::config {

enum class LogLevel { debug, info, warn, error };

struct AgentSection {
    std::string id;         // default: the host name
    std::string state_dir;  // required
    // The agent's Ed25519 signing key (PKCS#8 PEM) from the secret store;
    // absent: STATE_DIR/agent.key, created on first start.
    std::optional<secrets::SecretRef> key;
};

struct HubSection {
    std::string url;                     // https://host[:port][/prefix], no trailing '/'
    std::optional<std::string> ca_file;  // absent: system trust store
    // Paths of the pinned Ed25519 SPKI PEM keys jobs may be signed with, from
    // `job_signing_public_key` (one) and/or `job_signing_keys` (a list: pin the
    // hub's next key beside the current one before it rotates). At least one.
    std::vector<std::string> job_signing_keys;
    std::string client_id;
    // The credential, always a reference: `hub.client_secret`, or for
    // private_key_jwt `hub.private_key` (a PEM private key).
    secrets::SecretRef client_secret;
    // How the agent authenticates to the token endpoint: "client_secret_basic"
    // (an Authorization header), "client_secret_post" (form fields; RFC 6749
    // 2.3.1) or "private_key_jwt" (a signed assertion, RFC 7523); the hub
    // accepts all three.
    std::string client_auth = "client_secret_basic";
    int poll_wait_seconds = 25;  // 0..30
};

struct SourceConfig {
    std::string name;       // [A-Za-z0-9_.-]{1,128}, unique
    std::string connector;  // "sqlite" | "postgres" | "mariadb"
    std::string path;       // sqlite: the database file
    // postgres, mariadb: where it listens (the name is checked against the
    // egress policy by the supervisor; the worker connects to the checked
    // address), the database, and the credentials (always secret-store
    // references, read just in time for each job).
    std::string host;
    int port = 5432;       // mariadb: 3306
    std::string database;  // required for postgres; mariadb: empty reads every database
    std::optional<secrets::SecretRef> user;
    std::optional<secrets::SecretRef> password;
    std::string sslmode = "verify-full";  // disable | require | verify-ca | verify-full
    std::optional<std::string> ca_file;   // root certificate(s) to verify the server with
    // Bounds on every catalog query and every lock wait on the source.
    int statement_timeout_seconds = 30;
    int lock_timeout_seconds = 5;
    // A label ([a-z0-9_-]{1,32}) naming how sensitive the source is; every
    // job runs in its own worker process, so jobs on sources of different
    // sensitivity never share one. Audited with each job.
    std::string sensitivity = "default";
};

// `jobs.sandbox`: how each job's worker process is confined (docs/jobs.md).
struct SandboxSection {
    // strict: a worker whose host lacks a sandbox layer refuses to run the job.
    bool strict = false;
    int64_t memory_bytes = 4ll << 30;     // address space per worker
    int64_t cpu_seconds = 3600;           // CPU time per worker
    int64_t open_files = 256;             // descriptors per worker
    int64_t file_size_bytes = 1ll << 30;  // largest file (a spool chunk) a worker writes
};

// `jobs:` how leased jobs are checked and run.
struct JobsSection {
    // The customer's policy file (docs/jobs.md); absent: the built-in default
    // (every operation on every configured source, default limits).
    std::optional<std::string> policy_file;
    int workers = 1;                      // jobs run at once (1..64), capped by the policy
    int heartbeat_interval_seconds = 30;  // 1..300
    int cancel_grace_seconds = 10;        // SIGTERM -> SIGKILL (1..300)
    int clock_skew_seconds = 60;          // leeway for a job's exp/nbf (0..300)
    // An agent whose control loop has not moved for this long is not live
    // (/livez 503): stuck, not crashed. 10..3600; 0 (not set): 300 s.
    int watchdog_seconds = 0;
    // The worker program; absent: this agent binary ("secure-agent worker").
    std::optional<std::string> worker_executable;
    SandboxSection sandbox;
};

struct HealthSection {
    std::string host = "127.0.0.1";  // a loopback IP literal (127.0.0.0/8 or ::1)
    int port = 9464;                 // 0: the OS picks
    // Connection health probes of the hub and its token endpoint: every
    // probe_interval_seconds (0: off, else 5..3600); /readyz turns not ready
    // after probe_failure_threshold (1..100) failures in a row.
    int probe_interval_seconds = 60;
    int probe_failure_threshold = 3;
};

enum class AuditOnFailure { fail_closed, fail_open };

// `audit.tsa`: an RFC 3161 Time-Stamp Authority that time-stamps checkpoints.
struct TsaSection {
    std::string url;      // https:// only
    std::string ca_file;  // PEM: the CA(s) that issue the TSA's signing certificate
    std::optional<std::string> tls_ca_file;  // CA of the TSA's HTTPS server; absent: system store
};

// One entry of `audit.siem`: where audit records are exported to.
struct SiemExport {
    enum class Type { syslog, json_lines };
    std::string name;  // [A-Za-z0-9_.-]{1,64}, unique; names the export cursor
    Type type = Type::syslog;
    // syslog
    std::string host;
    int port = 6514;
    bool tls = true;                     // transport: tls (RFC 5425) | tcp (RFC 6587)
    std::optional<std::string> ca_file;  // the SIEM's CA; absent: system trust store
    // Mutual TLS (transport tls only; both or neither): the client
    // certificate chain (PEM file, leaf first; not secret) and its private key
    // (always a secret-store reference, read for each new connection).
    std::optional<std::string> client_cert;
    std::optional<secrets::SecretRef> client_key;
    // json_lines
    std::string path;          // a file, or "-" for stdout
    int max_backlog_mb = 256;  // 1..65536: unsent records beyond this are skipped and reported
};

// Optional `audit:` section: where and how the tamper-evident audit log is written.
struct AuditSection {
    std::string dir;                      // default: STATE_DIR/audit
    int batch_interval_ms = 5;            // 1..1000, group commit pacing
    int checkpoint_every_records = 1000;  // 1..1000000
    int checkpoint_interval_ms = 10000;   // 100..3600000
    AuditOnFailure on_failure = AuditOnFailure::fail_closed;
    int retention_days = 365;  // 30..365: whole daily segments older than this are removed
    std::optional<TsaSection> tsa;
    std::vector<SiemExport> siem;
    // The salt of hmac() values from a secret store: standard base64 text of
    // at least 32 bytes (audit::FieldHasher::from_secret). Absent:
    // DIR/hmac.salt, 32 random bytes created on first start.
    std::optional<secrets::SecretRef> hmac_salt;
};

// One `egress.allow` entry: a destination the agent may connect to.
struct EgressAllow {
    std::string host;  // exact, "*.example.com" (one label deep) or an IP literal
    int port = 443;
    std::vector<std::string> cidrs;      // optional: resolved addresses must be inside one
    std::optional<std::string> ca_file;  // CA bundle for this destination
    std::vector<std::string> pins;       // "sha256/BASE64" SPKI pins (checked at load)
    int64_t max_bytes_per_second = 0;    // upload rate limit for this destination; 0: none
    int max_redirects = 0;               // 0..10; 0: redirects are returned, not followed
    // Plain http:// allowed (metadata services, a Dapr sidecar); only for
    // loopback/link-local destinations (egress::check_plaintext_rule).
    bool plaintext_http = false;
};

// `egress.proxy`: an HTTP CONNECT proxy for every outbound connection.
struct EgressProxy {
    std::string url;                             // "http://host[:port]" (no credentials in it)
    std::string username;                        // empty: no proxy authentication
    std::optional<secrets::SecretRef> password;  // required with a username
    std::vector<std::string> no_proxy;           // destinations reached directly
};

// Optional `egress:` section. The hub, TSA and SIEM destinations of this file
// are allowed implicitly; everything else needs an entry.
struct EgressSection {
    std::string min_tls = "1.2";  // "1.2" | "1.3"
    std::vector<EgressAllow> allow;
    std::vector<std::string> deny;  // extra CIDRs to deny
    // CA bundle for every destination without its own (hub.ca_file,
    // allow[].ca_file, ...), e.g. a TLS-inspecting corporate proxy's CA;
    // absent: the system trust store.
    std::optional<std::string> ca_file;
    // Absent: HTTPS_PROXY / NO_PROXY from the environment, if set.
    std::optional<EgressProxy> proxy;
    int64_t max_bytes_per_second = 0;  // global upload rate limit; 0: none
    int64_t burst_bytes = 0;           // 0: one second of the rate (at least 64 KiB)
};

// The settings of a secret store that is reached over the network.
using RemoteStoreSettings =
    std::variant<secrets::vault::VaultSettings, secrets::aws::AwsSecretsManagerSettings,
                 secrets::azure::AzureKeyVaultSettings, secrets::gcp::GcpSecretManagerSettings,
                 secrets::dapr::DaprSettings>;

// Every secret store type the config accepts.
const std::vector<std::string>& secret_store_types();

struct Config {
    AgentSection agent;
    HubSection hub;
    std::vector<secrets::StoreSpec> secret_stores;
    // By store name: the settings of each remote store in secret_stores.
    std::map<std::string, RemoteStoreSettings> remote_secret_stores;
    std::vector<SourceConfig> sources;
    JobsSection jobs;
    HealthSection health;
    AuditSection audit;
    EgressSection egress;
    LogLevel log_level = LogLevel::info;
    // SHA-256 (hex) of the exact file bytes, so drift between deployments is visible.
    std::string fingerprint;

    const SourceConfig* find_source(std::string_view name) const;
};

// Parses YAML text. Checks everything that needs no file system access.
Result<Config> parse_config(std::string_view yaml_text);

// Reads and parses the file; errors reading it name the file.
Result<Config> load_config(const std::string& path);

// Checks what parse_config cannot: the CA file and the job-signing key exist
// and are readable (the key must be an Ed25519 public key PEM), and each file
// secret store's directory exists. Does NOT read any secret.
Status check_files(const Config& config);

// Connectors this build supports.
const std::vector<std::string>& supported_connectors();

const char* to_string(LogLevel level);
const char* to_string(AuditOnFailure mode);  // "fail_closed" | "fail_open"

// True for 127.0.0.0/8 and ::1 written as IP literals (no names: "localhost"
// could resolve elsewhere).
bool is_loopback_literal(std::string_view host);

}  // namespace sa::agent::config
