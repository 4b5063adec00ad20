#pragma once
// SyslogRecordSink: audit records as RFC 5424 syslog messages to a SIEM over
// TLS (RFC 5425) or, when configured explicitly, plain TCP (RFC 6587), both
// with octet-counting framing.
//
// One message per record:
//   PRI       facility 13 (log audit); severity 4 (warning) for record types
//             ending in ".refused", ".failed" or ".failure" and for
//             "audit.recovered", 6 (informational) otherwise
//   TIMESTAMP the record's ts
//   HOSTNAME  Options::hostname ("-" when empty)
//   APP-NAME  "secure-agent"; PROCID "-"; MSGID the record type (cut to 32)
//   SD        [audit@32473 seq="N" agent="AGENT_ID" job="JOB_ID"] (job only
//             when the record has one). 32473 is the example private
//             enterprise number of RFC 5424 §7.2.2; a registered PEN can
//             replace it without changing anything else.
//   MSG       the record line itself (canonical JSON, UTF-8 with BOM), so a
//             SIEM copy can still be checked against the signed checkpoints.
//
// Syslog over TCP/TLS has no application-level acknowledgement. confirm()
// therefore means "the connection is still alive a moment (confirm_wait)
// after the write": a receiver that went away during the batch has closed the
// connection by then, and the batch is sent again. This narrows the loss
// window to what the receiver accepted into its socket but did not process;
// a receiver that needs stronger guarantees should use RELP (not built).
#include <chrono>
#include <optional>
#include <string>

#include "agent/audit/format.h"
#include "agent/egress/stream_client.h"
#include "agent/siem/client_certificate.h"
#include "agent/siem/record_sink.h"
#include "agent/siem/syslog.h"

namespace sa::agent::siem {

inline constexpr const char* kAuditSdId = "audit@32473";
inline constexpr const char* kSyslogAppName = "secure-agent";

// The syslog message for one record (`line` is the record's raw line).
SyslogMessage audit_record_message(const audit::Record& record, std::string_view line,
                                   const std::string& hostname);
// 4 (warning) or 6 (informational), as described above.
int audit_record_severity(std::string_view type);
// Unix milliseconds of an RFC 3339 UTC time "YYYY-MM-DDTHH:MM:SS[.fff]Z";
// nullopt for anything else.
std::optional<int64_t> parse_rfc3339_utc_millis(std::string_view text);

class SyslogRecordSink final : public RecordSink {
  public:
    struct Options {
        egress::StreamConnection::Options connection;
        std::string hostname;  // the agent's host name for HOSTNAME; empty -> "-"
        std::chrono::milliseconds confirm_wait{100};
        // Mutual TLS (connection.tls only): presented on every connection;
        // the key is read from its store for each new connection.
        std::optional<ClientCertificate> client_certificate;
    };

    explicit SyslogRecordSink(Options options);

    // Parses each line (invalid_argument for one that is not a record),
    // connects when needed and writes the whole batch. unavailable when the
    // receiver cannot be reached (or refused the client certificate) or the
    // write fails; the client key's read or check errors as they come.
    Status send(std::span<const std::string_view> record_lines) override;
    // Waits confirm_wait, then unavailable when the receiver closed the
    // connection (the batch may be lost; the connection is dropped).
    Status confirm() override;
    std::string describe() const override;

  private:
    // Opens a connection, reading the client key first when there is one.
    Status open_connection();

    Options options_;
    std::optional<egress::StreamConnection> connection_;
};

}  // namespace sa::agent::siem
