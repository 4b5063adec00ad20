#include "hub/jobs/job_signer.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "common/jose/jws.h"
#include "common/protocol/protocol.h"

namespace sa::hub::jobs {
namespace {

// stat() of path; nullopt-like "false" when it cannot be read.
bool stat_file(const std::string& path, struct stat& st) {
    return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

std::shared_ptr<const JobSigner::Key> JobSigner::make_key(crypto::Ed25519PrivateKey key) {
    auto pub = key.public_key();
    std::string kid = pub.key_id();
    return std::make_shared<const Key>(Key{std::move(key), std::move(pub), std::move(kid)});
}

JobSigner::JobSigner(crypto::Ed25519PrivateKey key) : key_(make_key(std::move(key))) {}

Result<std::unique_ptr<JobSigner>> JobSigner::watching(const std::string& key_path) {
    struct stat st {};
    if (!stat_file(key_path, st)) {
        return fail(ErrorCode::io, "cannot read " + key_path + ": " + std::strerror(errno));
    }
    auto key = crypto::Ed25519PrivateKey::from_pem_file(key_path);
    if (!key) return fail(ErrorCode::integrity, key_path + ": " + key.error().message);
    auto signer = std::unique_ptr<JobSigner>(new JobSigner(std::move(*key)));
    signer->key_path_ = key_path;
    // Stamped after loading: if the file changed in between, the next
    // signature reloads it (a harmless extra read), never the reverse.
    signer->stamp_ =
        FileStamp{st.st_dev, st.st_ino,
                  static_cast<long long>(st.st_mtim.tv_sec) * 1'000'000'000LL + st.st_mtim.tv_nsec,
                  static_cast<long long>(st.st_size)};
    return signer;
}

void JobSigner::reload_if_changed() const {
    if (key_path_.empty()) return;
    struct stat st {};
    if (!stat_file(key_path_, st)) return;  // keep signing with the key we have
    FileStamp now{st.st_dev, st.st_ino,
                  static_cast<long long>(st.st_mtim.tv_sec) * 1'000'000'000LL + st.st_mtim.tv_nsec,
                  static_cast<long long>(st.st_size)};
    if (now == stamp_) return;
    auto key = crypto::Ed25519PrivateKey::from_pem_file(key_path_);
    // The rotation writes the file atomically (rename), so a failure here is
    // a broken file: keep the old key and look again next time.
    if (!key) return;
    key_ = make_key(std::move(*key));
    stamp_ = now;
}

std::shared_ptr<const JobSigner::Key> JobSigner::current() const {
    std::lock_guard<std::mutex> lock(mu_);
    reload_if_changed();
    return key_;
}

crypto::Ed25519PublicKey JobSigner::public_key() const {
    return current()->public_key;
}

std::string JobSigner::key_id() const {
    return current()->kid;
}

SignedJob JobSigner::sign_job(const LeasedJob& leased) const {
    const Job& j = leased.job;
    if (!j.lease_id || !j.leased_at_ms || !j.lease_expires_at_ms) {
        // JobQueue::try_lease always sets these: reaching here is a bug.
        throw std::logic_error("JobSigner::sign: job " + j.id + " carries no lease");
    }
    int64_t iat = *j.leased_at_ms / 1000;
    nlohmann::json claims = {
        {"iss", protocol::kIssuer},
        {"aud", leased.client_id},
        {"jti", *j.lease_id},
        {"iat", iat},
        {"nbf", iat},
        {"exp", *j.lease_expires_at_ms / 1000},
        {"job_id", j.id},
        {"app", j.app},
        {"source", j.source},
        {"operation", j.operation},
    };
    if (!j.filters.empty()) claims["filters"] = filters_to_json(j.filters);
    // extract_metadata only; an agent that predates incremental runs ignores
    // both claims and extracts in full, which the hub always accepts.
    if (auto m = signed_mode(j)) {
        claims["mode"] = *m;
        if (*m == mode::kIncremental) claims["baseline_job_id"] = *j.baseline_job_id;
    }
    auto key = current();
    return SignedJob{jose::sign(key->key, key->kid, protocol::kJobType, claims), key->kid};
}

}  // namespace sa::hub::jobs
