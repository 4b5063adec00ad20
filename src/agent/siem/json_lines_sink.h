#pragma once
// JsonLinesSink: audit records as JSON lines (the record line itself, then
// "\n") appended to a file, or written to stdout.
//
// A file is opened O_APPEND, created with mode 0600 (records hold HMACs of
// sensitive values and job ids); confirm() fdatasyncs it. For stdout ("-"),
// confirm() flushes stdio: what happens after the pipe is the reader's
// business. Writes are whole batches; a failed write may leave a partial last
// line in the file, which the next send starts on a fresh line after, so a
// reader sees at most one torn line per failure and then the resent records.
#include <cstdio>
#include <memory>
#include <string>

#include "agent/siem/record_sink.h"

namespace sa::agent::siem {

class JsonLinesSink final : public RecordSink {
  public:
    // path "-" means stdout. Errors: io / permission_denied when the file
    // cannot be opened.
    static Result<std::unique_ptr<JsonLinesSink>> open(const std::string& path);
    ~JsonLinesSink() override;
    JsonLinesSink(const JsonLinesSink&) = delete;
    JsonLinesSink& operator=(const JsonLinesSink&) = delete;

    Status send(std::span<const std::string_view> record_lines) override;
    Status confirm() override;
    std::string describe() const override;

  private:
    JsonLinesSink(int fd, std::string path);

    int fd_ = -1;  // -1 for stdout
    std::string path_;
    bool torn_ = false;  // a write failed part way: start the next send on a new line
};

}  // namespace sa::agent::siem
