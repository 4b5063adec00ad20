#pragma once
// Signs a leased job as a JWS (EdDSA) with the hub's job-signing key. The
// agent checks it against the public keys its operator pinned (by kid); the
// claims are listed in docs/protocol.md section 2 ("The signed job").
//
// Key rotation (`agent-hub pki rotate-job-key`) replaces the key file while
// `serve` runs. A signer made by watching() notices the new file at the next
// signature (one stat() per signed job) and signs with the new key from then
// on; if the new file cannot be read it keeps the key it has and tries again
// at the next signature.
//
// Thread safety: all methods are safe from any thread.
#include <sys/types.h>
#include <memory>
#include <mutex>
#include <string>

#include "common/crypto/ed25519.h"
#include "common/result.h"
#include "hub/jobs/job_queue.h"

namespace sa::hub::jobs {

struct SignedJob {
    std::string jws;  // compact serialization
    std::string kid;  // the key id in its header
};

class JobSigner final {
  public:
    // A fixed key (tests, tools).
    explicit JobSigner(crypto::Ed25519PrivateKey key);

    // Loads the PKCS#8 PEM key at key_path and follows replacements of that
    // file. Errors: integrity when the file does not hold an Ed25519 key, io.
    static Result<std::unique_ptr<JobSigner>> watching(const std::string& key_path);

    // typ secure-agent-job+jwt; kid = key id of the current key; iss
    // agent-hub; aud = the app's client id; jti = lease id; iat = nbf = lease
    // time; exp = lease expiry; job_id, app, source, operation, and filters
    // when the job has any; for extract_metadata "mode" (signed_mode()) and,
    // when that is incremental, "baseline_job_id". Requires a job with lease
    // fields set.
    SignedJob sign_job(const LeasedJob& leased) const;
    std::string sign(const LeasedJob& leased) const { return sign_job(leased).jws; }

    // The current key (after a possible reload).
    crypto::Ed25519PublicKey public_key() const;
    std::string key_id() const;

  private:
    struct Key {
        crypto::Ed25519PrivateKey key;
        crypto::Ed25519PublicKey public_key;
        std::string kid;
    };
    struct FileStamp {
        dev_t dev = 0;
        ino_t ino = 0;
        long long mtime_ns = 0;
        long long size = 0;
        bool operator==(const FileStamp&) const = default;
    };
    static std::shared_ptr<const Key> make_key(crypto::Ed25519PrivateKey key);
    // Swaps in the key file's new content when its stamp changed. Holds mu_.
    void reload_if_changed() const;
    std::shared_ptr<const Key> current() const;

    std::string key_path_;  // empty: a fixed key
    mutable std::mutex mu_;
    mutable std::shared_ptr<const Key> key_;
    mutable FileStamp stamp_;
};

}  // namespace sa::hub::jobs
