#include "hub/server/request_log.h"

#include "common/util/time.h"

namespace sa::hub::server {

void JsonLog::write(std::string_view level, std::string_view event, const nlohmann::json& fields) {
    nlohmann::ordered_json line;
    line["ts"] = util::rfc3339_millis(util::unix_millis());
    line["level"] = level;
    line["event"] = event;
    if (fields.is_object()) {
        for (const auto& [k, v] : fields.items()) line[k] = v;
    }
    // Request paths and agent-reported text are untrusted: invalid UTF-8 is
    // replaced rather than allowed to throw.
    std::string text = line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    std::lock_guard<std::mutex> lock(mu_);
    out_ << text << '\n';
    out_.flush();
}

}  // namespace sa::hub::server
