#include "agent/siem/syslog_record_sink.h"

#include <gtest/gtest.h>

namespace sa::agent::siem {
namespace {

TEST(SyslogRecordSink, MessageCarriesTheRecordAndItsSeq) {
    std::string line =
        R"({"actor":"agent:edge-1","agent_id":"edge-1","fields":{"outcome":"failed"},)"
        R"("job_id":"j-7","prev":"","seq":3,"ts":"2026-11-29T09:54:51.902Z","type":"job.failed"})";
    auto record = audit::parse_record_line(line);
    ASSERT_TRUE(record) << record.error().describe();
    EXPECT_EQ(format_rfc5424(audit_record_message(*record, line, "edge-host")),
              "<108>1 2026-11-29T09:54:51.902Z edge-host secure-agent - job.failed "
              "[audit@32473 seq=\"3\" agent=\"edge-1\" job=\"j-7\"] \xEF\xBB\xBF" +
                  line);
}

TEST(SyslogRecordSink, SeverityAndMsgidLength) {
    EXPECT_EQ(audit_record_severity("job.finished"), 6);
    EXPECT_EQ(audit_record_severity("token.refused"), 4);
    EXPECT_EQ(audit_record_severity("delivery.failed"), 4);
    EXPECT_EQ(audit_record_severity("audit.failure"), 4);
    EXPECT_EQ(audit_record_severity("audit.recovered"), 4);
    std::string line = R"({"actor":"a","agent_id":"a","fields":{},"prev":"","seq":0,)"
                       R"("ts":"2026-11-29T09:54:51.902Z","type":")" +
                       std::string(40, 'x') + "\"}";
    auto record = audit::parse_record_line(line);
    ASSERT_TRUE(record) << record.error().describe();
    auto text = format_rfc5424(audit_record_message(*record, line, ""));
    EXPECT_NE(text.find(" - secure-agent - " + std::string(32, 'x') +
                        " [audit@32473 seq=\"0\" "
                        "agent=\"a\"]"),
              std::string::npos)
        << text;
}

TEST(SyslogRecordSink, ParsesRfc3339Utc) {
    EXPECT_EQ(parse_rfc3339_utc_millis("2003-10-11T22:14:15.003Z"), 1065910455003);
    EXPECT_EQ(parse_rfc3339_utc_millis("1970-01-01T00:00:01Z"), 1000);
    EXPECT_EQ(parse_rfc3339_utc_millis("2003-10-11T22:14:15.5Z"), 1065910455500);
    EXPECT_FALSE(parse_rfc3339_utc_millis("2003-10-11T22:14:15.003+02:00"));
    EXPECT_FALSE(parse_rfc3339_utc_millis("2003-10-11 22:14:15Z"));
    EXPECT_FALSE(parse_rfc3339_utc_millis(""));
}

TEST(SyslogRecordSink, UnreachableReceiverIsUnavailable) {
    // Port 1 on loopback: nothing listens there.
    SyslogRecordSink sink({.connection = {.host = "127.0.0.1", .port = 1, .tls = false}});
    std::string line = R"({"actor":"a","agent_id":"a","fields":{},"prev":"","seq":0,)"
                       R"("ts":"2026-11-29T09:54:51.902Z","type":"t"})";
    std::vector<std::string_view> lines{line};
    auto sent = sink.send(lines);
    ASSERT_FALSE(sent);
    EXPECT_EQ(sent.error().code, ErrorCode::unavailable);
    EXPECT_EQ(sink.confirm().error().code, ErrorCode::unavailable);
    EXPECT_EQ(sink.describe(), "syslog over TCP to 127.0.0.1:1");
}

TEST(SyslogRecordSink, RefusesANonRecordLine) {
    SyslogRecordSink sink({.connection = {.host = "127.0.0.1", .port = 1, .tls = false}});
    std::vector<std::string_view> lines{"not json"};
    EXPECT_EQ(sink.send(lines).error().code, ErrorCode::invalid_argument);
}

}  // namespace
}  // namespace sa::agent::siem
