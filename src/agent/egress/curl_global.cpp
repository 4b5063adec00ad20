#include "agent/egress/curl_global.h"

#include <curl/curl.h>
#include <malloc.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace sa::agent::egress {
namespace detail {
namespace {

std::atomic<CurlReleaseObserver> g_release_observer{nullptr};
// Counts this thread's calls of wiping_strdup: how ensure_curl_global_init
// checks that libcurl really allocates through curl_allocator().
thread_local size_t t_strdup_calls = 0;

// Why libcurl gets a wiping allocator: it copies what we hand it into its
// own heap blocks and frees them without wiping. A core image of the agent
// found, in freed libcurl memory, the Authorization header (the hub client
// secret as Basic credentials, bearer tokens) and the proxy's
// Proxy-Authorization value - libcurl assembles every request's headers in
// a dynamic buffer and copies them into its upload buffer. The same happens
// to request bodies (client_secret_post forms, secret-store requests) and
// response bodies (access tokens, secret values) passing through its
// buffers. Wiping each block on release leaves nothing behind in freed
// memory; live copies are the callers' business (CurlList, SecretValue).
void wipe_block(void* ptr) noexcept {
    const size_t size = malloc_usable_size(ptr);
    OPENSSL_cleanse(ptr, size);
    if (CurlReleaseObserver observer = g_release_observer.load()) {
        observer(static_cast<const unsigned char*>(ptr), size);
    }
}

void* wiping_malloc(size_t size) {
    return std::malloc(size);
}

void wiping_free(void* ptr) {
    if (ptr == nullptr) return;
    wipe_block(ptr);
    std::free(ptr);
}

void* wiping_realloc(void* ptr, size_t size) {
    if (ptr == nullptr) return std::malloc(size);
    // Never the libc realloc: it may move the data and free the old block
    // unwiped. Size 0 still returns a fresh block (glibc would free and
    // return NULL, which a caller could take for a failure and free again).
    void* moved = std::malloc(size == 0 ? 1 : size);
    if (moved == nullptr) return nullptr;  // the old block stays valid, as with realloc
    std::memcpy(moved, ptr, std::min(malloc_usable_size(ptr), size));
    wiping_free(ptr);
    return moved;
}

char* wiping_strdup(const char* str) {
    ++t_strdup_calls;
    const size_t size = std::strlen(str) + 1;
    auto* copy = static_cast<char*>(std::malloc(size));
    if (copy != nullptr) std::memcpy(copy, str, size);
    return copy;
}

void* wiping_calloc(size_t count, size_t size) {
    return std::calloc(count, size);
}

}  // namespace

const CurlAllocator& curl_allocator() {
    static const CurlAllocator allocator{&wiping_malloc, &wiping_free, &wiping_realloc,
                                         &wiping_strdup, &wiping_calloc};
    return allocator;
}

void set_curl_release_observer_for_testing(CurlReleaseObserver observer) {
    g_release_observer.store(observer);
}

}  // namespace detail

namespace {

Status init_once() {
    // Must be the process's first libcurl call: when libcurl was already
    // initialised it reports success yet keeps its default allocator.
    const detail::CurlAllocator& a = detail::curl_allocator();
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, a.malloc, a.free, a.realloc, a.strdup,
                             a.calloc) != CURLE_OK) {
        return fail(ErrorCode::internal, "egress: libcurl could not be initialised");
    }
    // So prove it: curl_slist_append copies its line with the strdup hook.
    const size_t before = detail::t_strdup_calls;
    curl_slist* probe = curl_slist_append(nullptr, "probe");
    const bool hooked = detail::t_strdup_calls != before;
    curl_slist_free_all(probe);
    if (probe == nullptr) return fail(ErrorCode::internal, "egress: libcurl could not allocate");
    if (!hooked) {
        return fail(ErrorCode::internal,
                    "egress: libcurl was initialised before its wiping allocator was installed");
    }
    return {};
}

}  // namespace

Status ensure_curl_global_init() {
    static const Status status = init_once();  // thread-safe, runs once
    return status;
}

}  // namespace sa::agent::egress
