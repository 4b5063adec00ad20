#include "agent/siem/syslog.h"

#include <algorithm>

#include "common/util/time.h"

namespace sa::agent::siem {
namespace {

// PRINTUSASCII (%d33-126), at most max characters, "-" (NILVALUE) when empty.
std::string header_field(std::string_view value, size_t max) {
    if (value.empty()) return "-";
    std::string out;
    for (char c : value.substr(0, max)) out += (c >= 33 && c <= 126) ? c : '?';
    return out;
}

std::string sd_name(std::string_view value) {
    std::string out;
    for (char c : value.substr(0, 32)) {
        bool ok = c >= 33 && c <= 126 && c != '=' && c != ']' && c != '"';
        out += ok ? c : '_';
    }
    return out.empty() ? "_" : out;
}

std::string sd_value(std::string_view value) {
    std::string out;
    for (char c : value) {
        if (c == '"' || c == '\\' || c == ']') out += '\\';
        out += c;
    }
    return out;
}

}  // namespace

std::string format_rfc5424(const SyslogMessage& m) {
    int facility = std::clamp(m.facility, 0, 23);
    int severity = std::clamp(m.severity, 0, 7);
    std::string out = "<" + std::to_string(facility * 8 + severity) + ">1 ";
    out += m.unix_ms > 0 ? util::rfc3339_millis(m.unix_ms) : "-";
    out += ' ' + header_field(m.hostname, 255);
    out += ' ' + header_field(m.app_name, 48);
    out += ' ' + header_field(m.procid, 128);
    out += ' ' + header_field(m.msgid, 32);
    out += ' ';
    if (m.structured_data.empty()) {
        out += '-';
    } else {
        for (const auto& element : m.structured_data) {
            out += '[' + sd_name(element.id);
            for (const auto& [name, value] : element.params) {
                out += ' ' + sd_name(name) + "=\"" + sd_value(value) + '"';
            }
            out += ']';
        }
    }
    if (!m.msg.empty()) out += " \xEF\xBB\xBF" + m.msg;
    return out;
}

std::string frame_octet_counting(std::string_view message) {
    return std::to_string(message.size()) + " " + std::string(message);
}

SyslogSink::SyslogSink(egress::StreamConnection::Options options) : options_(std::move(options)) {}

Status SyslogSink::send(const SyslogMessage& message) {
    std::string frame = frame_octet_counting(format_rfc5424(message));
    // A receiver that restarted closed our connection; find out before
    // writing, so the frame is not written into a dead socket and lost.
    if (connection_ && connection_->peer_closed()) connection_.reset();
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (!connection_) {
            auto opened = egress::StreamConnection::open(options_);
            if (!opened) return std::unexpected(opened.error());
            connection_.emplace(std::move(*opened));
        }
        auto sent = connection_->send_all(frame);
        if (sent) return {};
        connection_.reset();
        if (attempt == 1) return sent;
    }
    return fail(ErrorCode::unavailable, "syslog receiver unreachable");
}

}  // namespace sa::agent::siem
