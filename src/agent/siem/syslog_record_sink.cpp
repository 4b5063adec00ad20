#include "agent/siem/syslog_record_sink.h"

#include <ctime>
#include <thread>

namespace sa::agent::siem {
namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Reads exactly n digits at text[pos]; false otherwise.
bool digits(std::string_view text, size_t pos, size_t n, int& out) {
    if (pos + n > text.size()) return false;
    out = 0;
    for (size_t i = pos; i < pos + n; ++i) {
        if (text[i] < '0' || text[i] > '9') return false;
        out = out * 10 + (text[i] - '0');
    }
    return true;
}

}  // namespace

int audit_record_severity(std::string_view type) {
    if (ends_with(type, ".refused") || ends_with(type, ".failed") || ends_with(type, ".failure") ||
        type == "audit.recovered")
        return 4;
    return 6;
}

std::optional<int64_t> parse_rfc3339_utc_millis(std::string_view t) {
    int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, millis = 0;
    if (!digits(t, 0, 4, year) || t.size() < 20 || t[4] != '-' || !digits(t, 5, 2, month) ||
        t[7] != '-' || !digits(t, 8, 2, day) || t[10] != 'T' || !digits(t, 11, 2, hour) ||
        t[13] != ':' || !digits(t, 14, 2, minute) || t[16] != ':' || !digits(t, 17, 2, second))
        return std::nullopt;
    size_t pos = 19;
    if (t[pos] == '.') {
        size_t start = ++pos;
        while (pos < t.size() && t[pos] >= '0' && t[pos] <= '9') ++pos;
        size_t n = pos - start;
        if (n == 0) return std::nullopt;
        int frac = 0;
        digits(t, start, std::min<size_t>(n, 3), frac);
        for (size_t i = n; i < 3; ++i) frac *= 10;
        millis = frac;
    }
    if (pos + 1 != t.size() || t[pos] != 'Z') return std::nullopt;
    if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
        return std::nullopt;
    std::tm tm{};
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    time_t secs = ::timegm(&tm);
    return static_cast<int64_t>(secs) * 1000 + millis;
}

SyslogMessage audit_record_message(const audit::Record& record, std::string_view line,
                                   const std::string& hostname) {
    SdElement sd{kAuditSdId, {{"seq", std::to_string(record.seq)}, {"agent", record.agent_id}}};
    if (!record.job_id.empty()) sd.params.emplace_back("job", record.job_id);
    return SyslogMessage{.facility = 13,
                         .severity = audit_record_severity(record.type),
                         .unix_ms = parse_rfc3339_utc_millis(record.ts).value_or(0),
                         .hostname = hostname,
                         .app_name = kSyslogAppName,
                         .procid = "",
                         .msgid = record.type,
                         .structured_data = {std::move(sd)},
                         .msg = std::string(line)};
}

SyslogRecordSink::SyslogRecordSink(Options options) : options_(std::move(options)) {}

Status SyslogRecordSink::send(std::span<const std::string_view> record_lines) {
    std::string frames;
    for (auto line : record_lines) {
        auto record = audit::parse_record_line(line);
        if (!record)
            return fail(ErrorCode::invalid_argument,
                        "not an audit record: " + record.error().message);
        frames += frame_octet_counting(
            format_rfc5424(audit_record_message(*record, line, options_.hostname)));
    }
    // A receiver that restarted closed our connection: notice before writing,
    // so the batch does not go into a dead socket.
    if (connection_ && connection_->peer_closed()) connection_.reset();
    if (!connection_) {
        if (auto connected = open_connection(); !connected) return connected;
    }
    if (auto sent = connection_->send_all(frames); !sent) {
        connection_.reset();
        return sent;
    }
    return {};
}

Status SyslogRecordSink::open_connection() {
    if (!options_.client_certificate || !options_.connection.tls) {
        auto opened = egress::StreamConnection::open(options_.connection);
        if (!opened) return std::unexpected(opened.error());
        connection_.emplace(std::move(*opened));
        return {};
    }
    // Just in time: the key is read for this connection only, so a rotated
    // key is picked up on the next one, and released once the connection's
    // SSL_CTX holds it (when open() returns).
    const ClientCertificate& cert = *options_.client_certificate;
    auto key = read_client_key(cert);
    if (!key) return std::unexpected(key.error());
    egress::StreamConnection::Options options = options_.connection;
    EVP_PKEY* raw = key->get();
    options.configure_tls = [&cert, raw](ssl_ctx_st* ctx) {
        return install_client_certificate(ctx, cert.cert_file, raw);
    };
    auto opened = egress::StreamConnection::open(options);
    if (!opened) return std::unexpected(opened.error());
    connection_.emplace(std::move(*opened));
    return {};
}

Status SyslogRecordSink::confirm() {
    if (!connection_) return fail(ErrorCode::unavailable, "not connected to " + describe());
    std::this_thread::sleep_for(options_.confirm_wait);
    if (connection_->peer_closed()) {
        connection_.reset();
        return fail(ErrorCode::unavailable,
                    describe() + " closed the connection; the last batch may be lost");
    }
    return {};
}

std::string SyslogRecordSink::describe() const {
    const auto& c = options_.connection;
    return std::string(c.tls ? "syslog over TLS to " : "syslog over TCP to ") + c.host + ":" +
           std::to_string(c.port);
}

}  // namespace sa::agent::siem
