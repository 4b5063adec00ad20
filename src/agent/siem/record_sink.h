#pragma once
// RecordSink: where the audit exporter sends audit records (a SIEM over
// syslog, a JSON-lines file, stdout). The exporter gives it batches of record
// lines and asks it to confirm delivery before it moves its durable cursor.
//
// Contract (at least once):
// - send() hands over a batch of complete record lines (canonical JSON, no
//   newline), in seq order. It may buffer.
// - confirm() is the delivery point: success means every line sent since the
//   last successful confirm() has reached its destination as far as this
//   transport can tell (file: fdatasync; syslog: the connection is still up a
//   moment after the write). Only then may the exporter persist its cursor.
// - After a failed send() or confirm(), everything since the last successful
//   confirm() may be lost: the exporter sends it again (duplicates are allowed,
//   records carry seq for de-duplication downstream).
// - describe() names the destination for logs and errors; never secrets.
// Sinks are used from one thread at a time (the exporter's).
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/result.h"

namespace sa::agent::siem {

class RecordSink {
  public:
    virtual ~RecordSink() = default;
    virtual Status send(std::span<const std::string_view> record_lines) = 0;
    virtual Status confirm() = 0;
    virtual std::string describe() const = 0;
};

using RecordSinkPtr = std::unique_ptr<RecordSink>;

}  // namespace sa::agent::siem
