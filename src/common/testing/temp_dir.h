#pragma once
// Test helper: a fresh directory under the system temp directory, removed
// with everything in it when the TempDir goes out of scope. Header-only, for
// the tests of every capability (agent and hub).
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include "common/crypto/random.h"

namespace sa::testing {

class TempDir final {
  public:
    explicit TempDir(std::string_view prefix = "sa-test-")
        : path_(std::filesystem::temp_directory_path() /
                (std::string(prefix) + crypto::random_token(9))) {
        std::filesystem::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::filesystem::path& path() const { return path_; }
    std::string str() const { return path_.string(); }
    // PATH/name, as a string.
    std::string file(std::string_view name) const { return (path_ / name).string(); }

  private:
    std::filesystem::path path_;
};

}  // namespace sa::testing
