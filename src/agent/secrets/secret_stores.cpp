#include "agent/secrets/secret_stores.h"

#include <algorithm>
#include <optional>
#include <random>
#include <thread>

namespace sa::agent::secrets {

// One store with its access options and cache.
struct SecretStores::Entry {
    SecretStorePtr store;
    AccessOptions options;

    struct Cached {
        SecretValue value;
        std::chrono::steady_clock::time_point expires;
    };
    std::mutex mutex;                     // guards cache
    std::map<std::string, Cached> cache;  // by ref.to_string()

    std::optional<SecretValue> lookup(const std::string& id,
                                      std::chrono::steady_clock::time_point now) {
        if (options.cache_ttl.count() == 0) return std::nullopt;
        std::lock_guard lock(mutex);
        auto it = cache.find(id);
        if (it == cache.end()) return std::nullopt;
        if (now >= it->second.expires) {
            cache.erase(it);  // the value is wiped with its SecretValue
            return std::nullopt;
        }
        return SecretValue::copy_of(it->second.value.reveal());
    }

    void remember(const std::string& id, const SecretValue& value,
                  std::chrono::steady_clock::time_point now) {
        if (options.cache_ttl.count() == 0 || options.cache_max_entries == 0) return;
        std::lock_guard lock(mutex);
        std::erase_if(cache, [&](const auto& item) { return now >= item.second.expires; });
        if (cache.size() >= options.cache_max_entries && !cache.contains(id)) {
            // Full: drop the entry closest to expiry (the oldest).
            auto oldest = std::min_element(
                cache.begin(), cache.end(),
                [](const auto& a, const auto& b) { return a.second.expires < b.second.expires; });
            cache.erase(oldest);
        }
        cache.insert_or_assign(
            id, Cached{SecretValue::copy_of(value.reveal()), now + options.cache_ttl});
    }
};

namespace {

// Exponential backoff with full jitter: uniform in [0, min(max, base * 2^n)].
std::chrono::milliseconds backoff(const AccessOptions& options, int retry) {
    const int64_t cap = options.retry_max.count();
    int64_t ceiling = options.retry_base.count();
    for (int i = 0; i < retry && ceiling < cap; ++i) ceiling *= 2;
    ceiling = std::min(ceiling, cap);
    thread_local std::mt19937_64 random{std::random_device{}()};
    return std::chrono::milliseconds(
        std::uniform_int_distribution<int64_t>(0, std::max<int64_t>(ceiling, 0))(random));
}

}  // namespace

SecretStores::SecretStores()
    : sleeper_([](std::chrono::milliseconds wait) { std::this_thread::sleep_for(wait); }),
      now_([] { return std::chrono::steady_clock::now(); }) {}
SecretStores::~SecretStores() = default;
SecretStores::SecretStores(SecretStores&&) noexcept = default;
SecretStores& SecretStores::operator=(SecretStores&&) noexcept = default;

void SecretStores::add(const std::string& name, SecretStorePtr store, AccessOptions options) {
    auto entry = std::make_unique<Entry>();
    entry->store = std::move(store);
    entry->options = options;
    entry->options.max_attempts = std::max(entry->options.max_attempts, 1);
    stores_[name] = std::move(entry);
}

bool SecretStores::has(const std::string& name) const {
    return stores_.contains(name);
}

void SecretStores::set_observer(std::function<void(const AccessEvent&)> observer) {
    observer_ = std::move(observer);
}

void SecretStores::set_sleeper_for_testing(Sleeper sleeper) {
    sleeper_ = std::move(sleeper);
}

void SecretStores::set_now_for_testing(Now now) {
    now_ = std::move(now);
}

Result<SecretValue> SecretStores::read(const SecretRef& ref, const AccessContext& context) const {
    const auto start = std::chrono::steady_clock::now();
    AccessEvent event{.store = ref.store,
                      .path = ref.path,
                      .key = ref.key,
                      .purpose = std::string(context.purpose),
                      .job_id = std::string(context.job_id)};
    auto finish = [&](Result<SecretValue> result) {
        event.latency_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - start)
                               .count();
        event.outcome = result ? "ok" : to_string(result.error().code);
        if (!result) event.error = result.error().message;
        if (observer_) observer_(event);
        return result;
    };

    auto it = stores_.find(ref.store);
    if (it == stores_.end()) {
        return finish(fail(ErrorCode::not_found, "unknown secret store \"" + ref.store + "\""));
    }
    Entry& entry = *it->second;
    const std::string id = ref.to_string();
    if (auto hit = entry.lookup(id, now_())) {
        event.cached = true;
        return finish(std::move(*hit));
    }
    Result<SecretValue> result = fail(ErrorCode::internal, "secret store was not asked");
    for (int attempt = 1; attempt <= entry.options.max_attempts; ++attempt) {
        if (attempt > 1) sleeper_(backoff(entry.options, attempt - 2));
        ++event.attempts;
        result = entry.store->read(ref);
        if (result || result.error().code != ErrorCode::unavailable) break;
    }
    if (result) entry.remember(id, *result, now_());
    return finish(std::move(result));
}

CredentialReader SecretStores::reader(std::string purpose) const {
    return [this, purpose = std::move(purpose)](const SecretRef& ref) {
        return read(ref, AccessContext{.purpose = purpose});
    };
}

}  // namespace sa::agent::secrets
