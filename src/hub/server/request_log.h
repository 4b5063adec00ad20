#pragma once
// Structured log: one JSON object per line ({"ts", "level", "event", ...}).
// Callers must never pass secrets (tokens, client secrets, keys) as fields.
//
// Thread safety: write() may be called from any thread; lines never interleave.
#include <mutex>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string_view>

namespace sa::hub::server {

class JsonLog final {
  public:
    explicit JsonLog(std::ostream& out) : out_(out) {}

    // fields must be a JSON object (or null); its members follow ts/level/event.
    void write(std::string_view level, std::string_view event, const nlohmann::json& fields = {});

  private:
    std::mutex mu_;
    std::ostream& out_;
};

}  // namespace sa::hub::server
