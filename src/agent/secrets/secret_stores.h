#pragma once
// SecretStores: the registry of configured secret stores, keyed by the store
// name that references use ("STORE/PATH#KEY"), and the one place every
// secret read of the agent goes through. Around each store it adds:
//
// - Retry: only `unavailable` is retried (not_found, permission_denied and
//   invalid_argument cannot get better by asking again), with exponential
//   backoff and full jitter, up to AccessOptions::max_attempts.
// - An optional TTL cache (off by default; AccessOptions::cache_ttl), bounded
//   to cache_max_entries values, held as SecretValues. Without it every read
//   reaches the store, so a rotated value is used on the next read.
// - One AccessEvent per read for the audit log (store, path, key, purpose,
//   job id, outcome, latency, attempts, cache hit) - never the value.
//
// Stores are built and added by the wiring (app/secret_store_wiring); this
// registry knows none of their types. Thread-safe once built (add() and
// set_observer() belong to start-up).
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "agent/secrets/secret_store.h"

namespace sa::agent::secrets {

struct AccessOptions {
    int max_attempts = 3;  // 1 = no retry
    std::chrono::milliseconds retry_base{200};
    std::chrono::milliseconds retry_max{5'000};
    std::chrono::seconds cache_ttl{0};  // 0 = no cache
    size_t cache_max_entries = 100;
};

// One entry of the config's secret_stores section (built into stores by
// app/secret_store_wiring). The settings of remote types (vault, ...) are
// kept by the config next to it.
struct StoreSpec {
    std::string name;
    std::string type;    // "file" | "env" | a remote type
    std::string path;    // type file: the directory
    std::string prefix;  // type env: prepended to each reference's PATH
    AccessOptions access;
};

// Why a secret is read, for the audit record.
struct AccessContext {
    std::string_view purpose;  // e.g. "hub client secret"
    std::string_view job_id;   // empty outside a job
};

// What the audit log records about one read.
struct AccessEvent {
    std::string store;
    std::string path;
    std::string key;
    std::string purpose;
    std::string job_id;
    // "ok", or the error kind (to_string(ErrorCode)): "not_found",
    // "permission_denied", "unavailable", "invalid_argument", ...
    std::string outcome;
    std::string error;  // the message when not ok (names store and path, never a value)
    int64_t latency_ms = 0;
    int attempts = 0;  // store calls made (0 for a cache hit)
    bool cached = false;
};

class SecretStores final {
  public:
    // Waits between retries; a test seam (the default sleeps).
    using Sleeper = std::function<void(std::chrono::milliseconds)>;
    // The time the cache goes by; a test seam (the default is steady_clock).
    using Now = std::function<std::chrono::steady_clock::time_point()>;

    SecretStores();
    ~SecretStores();
    SecretStores(SecretStores&&) noexcept;
    SecretStores& operator=(SecretStores&&) noexcept;

    // Adds (or replaces) a store. Start-up only.
    void add(const std::string& name, SecretStorePtr store, AccessOptions options = {});
    bool has(const std::string& name) const;
    // Called after every read(), on the reading thread; must not throw.
    void set_observer(std::function<void(const AccessEvent&)> observer);
    void set_sleeper_for_testing(Sleeper sleeper);
    void set_now_for_testing(Now now);

    // Reads from the store ref.store names. Errors: not_found for an unknown
    // store, otherwise what the store reports (after retries).
    Result<SecretValue> read(const SecretRef& ref, const AccessContext& context = {}) const;

    // A CredentialReader reading through this registry with a fixed purpose.
    // The registry must outlive it.
    CredentialReader reader(std::string purpose) const;

  private:
    struct Entry;
    std::map<std::string, std::unique_ptr<Entry>> stores_;
    std::function<void(const AccessEvent&)> observer_;
    Sleeper sleeper_;
    Now now_;
};

}  // namespace sa::agent::secrets
