#pragma once
// RFC 5424 syslog messages and the octet-counting framing of RFC 5425
// (syslog over TLS) and RFC 6587 (over TCP), for exporting audit records to
// a SIEM, and SyslogSink, which sends them through the egress layer.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/egress/stream_client.h"
#include "common/result.h"

namespace sa::agent::siem {

// RFC 5424 §6.3 structured data element: [id name="value" ...].
struct SdElement {
    std::string id;
    std::vector<std::pair<std::string, std::string>> params;
};

struct SyslogMessage {
    int facility = 13;  // 13 = log audit (RFC 5424 table 1)
    int severity = 6;   // 6 = informational
    int64_t unix_ms = 0;
    std::string hostname;  // empty -> "-"
    std::string app_name;  // empty -> "-"
    std::string procid;    // empty -> "-"
    std::string msgid;     // empty -> "-"
    std::vector<SdElement> structured_data;
    std::string msg;  // UTF-8; sent with a BOM as RFC 5424 MSG-UTF8
};

// Header fields are cut to their RFC lengths and any character outside
// printable US-ASCII becomes '?'; SD names lose '=', ' ', ']' and '"';
// SD values escape '"', '\' and ']'. Facility and severity are clamped.
std::string format_rfc5424(const SyslogMessage& message);

// "LEN SP MSG" (RFC 5425 §4.3, RFC 6587 §3.4.1).
std::string frame_octet_counting(std::string_view message);

// Sends messages to one syslog receiver over TLS (or plain TCP when the
// options say so), connecting on first use and reconnecting once when the
// receiver closed the connection. Not thread-safe.
class SyslogSink final {
  public:
    explicit SyslogSink(egress::StreamConnection::Options options);

    // Errors: unavailable when the receiver cannot be reached; the caller
    // keeps the record (spool) and tries again later.
    Status send(const SyslogMessage& message);

  private:
    egress::StreamConnection::Options options_;
    std::optional<egress::StreamConnection> connection_;
};

}  // namespace sa::agent::siem
