#pragma once
// The offline commands of agent-hub. They work directly on DIR/hub.db, so
// they run whether or not `serve` is running (SQLite WAL + busy timeout make
// the two processes safe together). Each returns the process exit code:
// 0 success, 1 failure (message on err). cli.cpp maps the command line here.
#include <chrono>
#include <optional>
#include <ostream>
#include <string>

#include "common/crypto/password_hash.h"
#include "common/result.h"
#include "hub/jobs/job_queue.h"

namespace sa::hub::cli {

inline constexpr const char* kDataDirEnv = "AGENT_HUB_DATA";

struct Io {
    std::ostream& out;
    std::ostream& err;
};

// --data wins, then $AGENT_HUB_DATA; error when neither is set.
Result<std::string> resolve_data_dir(const std::optional<std::string>& flag);

// Prints the client secret once; only its scrypt hash is stored.
int app_create(const std::string& data_dir, const std::string& name, bool json, Io io,
               const crypto::ScryptParams& params = crypto::ScryptParams{});
// With public_key_file (a PEM SubjectPublicKeyInfo: Ed25519, EC P-256 or
// RSA >= 2048 bits) the app authenticates with private_key_jwt instead: no
// secret is issued; client_id and the key's thumbprint (its kid) are printed.
int app_create_with_key(const std::string& data_dir, const std::string& name,
                        const std::string& public_key_file, bool json, Io io);
// Replaces a key app's public key; the previous key keeps working for
// overlap (0: stops at once), as with app_rotate.
int app_set_key(const std::string& data_dir, const std::string& name,
                const std::string& public_key_file, std::chrono::seconds overlap, bool json, Io io);
// Each app with its authentication (client_secret | private_key_jwt).
int app_list(const std::string& data_dir, bool json, Io io);
// One app: state (active | revoked), authentication, rotation and overlap,
// accepted keys (key apps), history.
int app_show(const std::string& data_dir, const std::string& name, bool json, Io io);
// Prints the new client secret once; the previous one keeps working for
// overlap (0: stops at once). Records the operator and time.
int app_rotate(const std::string& data_dir, const std::string& name, std::chrono::seconds overlap,
               bool json, Io io, const crypto::ScryptParams& params = crypto::ScryptParams{});
// Permanent: the app gets no more tokens and its live tokens stop working.
int app_revoke(const std::string& data_dir, const std::string& name, bool json, Io io);

// Who runs this command, for the app history: the OS user of the real uid,
// with the invoking user when run through sudo ("root (sudo by alice)");
// "uid N" when the user has no name, never empty.
std::string current_operator();
int job_create(const std::string& data_dir, const std::string& app, const std::string& source,
               const std::string& operation, bool json, Io io);

struct JobSpec {
    std::string app;
    std::string source;
    std::string operation = "extract_metadata";
    jobs::Filters filters;  // checked by JobQueue::create; errors name the flag
    // --mode full|incremental: extract_metadata only (JobQueue::create says
    // so otherwise); nullopt: full.
    std::optional<std::string> mode;
};

struct WaitOptions {
    bool wait = false;
    std::chrono::milliseconds timeout{60'000};
    std::chrono::milliseconds poll{100};  // how often the store is read
};

// Queues a job and prints its id. With wait.wait it then polls the store
// until the job ends and prints it as job_show does; exit code 0 succeeded,
// 1 failed/refused/cancelled (or the job could not be created), 2 when the
// timeout passed first (the message on err says the job is still STATUS).
int job_create(const std::string& data_dir, const JobSpec& spec, const WaitOptions& wait, bool json,
               Io io);
// Shows operation, filters, mode (requested), baseline and applied mode,
// status, reason, progress and last heartbeat, cancel request and result
// (docs/protocol.md).
int job_show(const std::string& data_dir, const std::string& id, bool json, Io io);
// queued -> cancelled at once; leased -> cancel requested (the agent learns it
// from its next heartbeat); an ended job is an error (exit 1).
int job_cancel(const std::string& data_dir, const std::string& id, bool json, Io io);

// Rotation step 1: creates (or shows) the next job-signing key, not used yet,
// and prints its key id and public key path for customers to pin.
int pki_prepare_job_key(const std::string& data_dir, bool json, Io io);
// Rotation step 2: makes the prepared key (or a new one) the job-signing key
// (the previous public key is kept beside it) and prints both key ids and the
// new public key's path.
int pki_rotate_job_key(const std::string& data_dir, bool json, Io io);
int job_list(const std::string& data_dir, const std::optional<std::string>& app,
             const std::optional<std::string>& status, bool json, Io io);
// The catalog (hub/ingest/catalog.h). tables and columns print one line per
// relation or column (JSON: an array of ingest::to_json objects); an unknown
// source is an empty list for tables, kept for existing scripts.
int catalog_tables(const std::string& data_dir, const std::optional<std::string>& source,
                   const std::optional<std::string>& app, bool json, Io io);
int catalog_columns(const std::string& data_dir, const std::string& source,
                    const std::string& table, const std::optional<std::string>& app, bool json,
                    Io io);
// Functions and procedures of a source; an unknown source is an error (exit 1).
int catalog_routines(const std::string& data_dir, const std::string& source,
                     const std::optional<std::string>& app, bool json, Io io);
// What a relation reads (its depends_on) and which relations read it.
// relation: an object name as catalog.h describes (SCHEMA.NAME, ...).
int catalog_lineage(const std::string& data_dir, const std::string& source,
                    const std::string& relation, const std::optional<std::string>& app, bool json,
                    Io io);
// The stored record of a relation or routine: pretty JSON, or one line with json.
int catalog_show(const std::string& data_dir, const std::string& source, const std::string& object,
                 const std::optional<std::string>& app, bool json, Io io);

}  // namespace sa::hub::cli
