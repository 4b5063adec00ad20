#include "agent/secrets/secret_value.h"

#include <openssl/crypto.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <new>
#include <set>
#include <utility>

namespace sa::agent::secrets {
namespace {

std::atomic<SecretValue::ReleaseObserver> g_release_observer{nullptr};

size_t page_size() {
    static const size_t size = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    return size;
}

// Every live value's bytes, for redact_live_secrets(). A value registers
// when its mapping is filled and leaves before its bytes are wiped, so a
// reader holding the mutex never sees released memory.
struct LiveSecrets {
    std::mutex mutex;
    std::set<std::pair<const char*, size_t>> values;
};

LiveSecrets& live_secrets() {
    static LiveSecrets* live = new LiveSecrets();  // never destroyed: used until exit
    return *live;
}

void replace_all(std::string& text, std::string_view needle, bool& replaced) {
    static constexpr std::string_view kRedacted = "[REDACTED]";
    for (size_t at = text.find(needle); at != std::string::npos;
         at = text.find(needle, at + kRedacted.size())) {
        text.replace(at, needle.size(), kRedacted);
        replaced = true;
    }
}

}  // namespace

bool redact_live_secrets(std::string& text,
                         const std::function<std::string(std::string_view)>& encode) {
    bool replaced = false;
    LiveSecrets& live = live_secrets();
    std::lock_guard lock(live.mutex);
    for (const auto& [data, size] : live.values) {
        if (size < kMinRedactedLength) continue;
        const std::string_view value(data, size);
        replace_all(text, value, replaced);
        if (encode) {
            std::string encoded = encode(value);
            if (!encoded.empty() && encoded != value) replace_all(text, encoded, replaced);
            wipe(encoded);
        }
    }
    return replaced;
}

void SecretValue::set_release_observer_for_testing(ReleaseObserver observer) {
    g_release_observer.store(observer);
}

SecretValue SecretValue::copy_of(std::string_view bytes) {
    SecretValue value;
    if (bytes.empty()) return value;
    const size_t page = page_size();
    const size_t mapped = (bytes.size() + page - 1) / page * page;
    void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    // Out of address space is not an expected error a caller can handle.
    if (p == MAP_FAILED) throw std::bad_alloc();
    // Best effort: RLIMIT_MEMLOCK may be small; locked() records the outcome.
    value.locked_ = ::mlock(p, mapped) == 0;
    ::madvise(p, mapped, MADV_DONTDUMP);
    std::memcpy(p, bytes.data(), bytes.size());
    value.data_ = static_cast<char*>(p);
    value.size_ = bytes.size();
    value.mapped_ = mapped;
    {
        LiveSecrets& live = live_secrets();
        std::lock_guard lock(live.mutex);
        live.values.emplace(value.data_, value.size_);
    }
    return value;
}

SecretValue SecretValue::from(std::string&& s) {
    SecretValue value = copy_of(s);
    wipe(s);
    return value;
}

SecretValue::~SecretValue() {
    release();
}

SecretValue::SecretValue(SecretValue&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      mapped_(std::exchange(other.mapped_, 0)),
      locked_(std::exchange(other.locked_, false)) {}

SecretValue& SecretValue::operator=(SecretValue&& other) noexcept {
    if (this != &other) {
        release();
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
        mapped_ = std::exchange(other.mapped_, 0);
        locked_ = std::exchange(other.locked_, false);
    }
    return *this;
}

void SecretValue::release() noexcept {
    if (data_ == nullptr) return;
    {
        LiveSecrets& live = live_secrets();
        std::lock_guard lock(live.mutex);
        live.values.erase({data_, size_});
    }
    OPENSSL_cleanse(data_, mapped_);
    if (ReleaseObserver observer = g_release_observer.load()) {
        observer(reinterpret_cast<const unsigned char*>(data_), mapped_);
    }
    if (locked_) ::munlock(data_, mapped_);
    ::munmap(data_, mapped_);
    data_ = nullptr;
    size_ = 0;
    mapped_ = 0;
    locked_ = false;
}

void wipe(std::string& s) noexcept {
    // Bytes beyond size() may still hold earlier, longer contents: growing to
    // capacity() never reallocates, and makes the whole buffer addressable.
    s.resize(s.capacity());
    if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
    s.clear();
}

}  // namespace sa::agent::secrets
