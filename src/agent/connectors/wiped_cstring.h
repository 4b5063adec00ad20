#pragma once
// A NUL-terminated copy of a secret for a database driver's C API, wiped
// (whole capacity) when it goes out of scope. Reserved once, so no
// reallocation leaves a stray copy behind.
#include <string>
#include <string_view>

#include "agent/secrets/json_wipe.h"

namespace sa::agent::connectors {

class WipedCString final {
  public:
    explicit WipedCString(std::string_view bytes) {
        value_.reserve(bytes.size() + 1);
        value_.assign(bytes.data(), bytes.size());
    }
    ~WipedCString() { secrets::wipe(value_); }
    WipedCString(const WipedCString&) = delete;
    WipedCString& operator=(const WipedCString&) = delete;
    const char* c_str() const { return value_.c_str(); }
    std::string_view view() const { return value_; }
    // Drivers take C strings: a NUL inside would silently cut the value.
    bool contains_nul() const { return value_.find('\0') != std::string::npos; }

  private:
    std::string value_;
};

}  // namespace sa::agent::connectors
