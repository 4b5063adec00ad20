#pragma once
// libcurl's process-wide initialisation, done once for every egress client
// (curl_global_init is not thread-safe, so it must not race). Every egress
// client calls ensure_curl_global_init before any other curl_ function, so
// it is the process's first libcurl call and libcurl allocates through the
// wiping allocator below for its whole life.
#include <cstddef>

#include "common/result.h"

namespace sa::agent::egress {

// Errors: internal when libcurl cannot be initialised or was initialised
// by someone else first (then it would not use the wiping allocator, and
// the egress clients refuse to run rather than leave secrets in freed
// memory). Cheap after the first call.
Status ensure_curl_global_init();

namespace detail {

// The allocation functions handed to curl_global_init_mem. Every block is
// wiped (its whole usable size) before it goes back to the C library, and
// realloc never uses the libc realloc (which may move the data and leave
// the old block unwiped).
struct CurlAllocator {
    void* (*malloc)(size_t size);
    void (*free)(void* ptr);
    void* (*realloc)(void* ptr, size_t size);
    char* (*strdup)(const char* str);
    void* (*calloc)(size_t count, size_t size);
};
const CurlAllocator& curl_allocator();

// Test seam: called with a block's bytes right after they were wiped and
// right before they are freed, so a test can prove the wipe happened. Never
// set outside tests. Not thread-safe with concurrent frees.
using CurlReleaseObserver = void (*)(const unsigned char* bytes, size_t length);
void set_curl_release_observer_for_testing(CurlReleaseObserver observer);

}  // namespace detail
}  // namespace sa::agent::egress
