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
int app_list(const std::string& data_dir, bool json, Io io);
// One app: state (active | revoked), rotation and overlap, history.
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
int job_show(const std::string& data_dir, const std::string& id, bool json, Io io);
int job_list(const std::string& data_dir, const std::optional<std::string>& app,
             const std::optional<std::string>& status, bool json, Io io);
int catalog_tables(const std::string& data_dir, const std::optional<std::string>& source,
                   const std::optional<std::string>& app, bool json, Io io);
int catalog_columns(const std::string& data_dir, const std::string& source,
                    const std::string& table, const std::optional<std::string>& app, bool json,
                    Io io);

}  // namespace sa::hub::cli
