#pragma once
// A single-pass validator for the canonical JSON the audit writer produces,
// so the verifier can check a record line without building a DOM and
// re-dumping it.
//
// "Canonical" means: exactly the bytes nlohmann::json::dump() (no indent,
// ensure_ascii off, strict UTF-8) writes for some value without
// floating-point numbers. Concretely:
//   - no whitespace anywhere outside strings;
//   - object keys strictly increasing in byte order of their decoded text
//     (so sorted and unique), compared as unsigned bytes like std::map;
//   - numbers are integers: "0", or [1-9][0-9]* up to 2^64-1, or
//     -[1-9][0-9]* down to -2^63 (no "-0", fractions, exponents, leading
//     zeros; anything else parses as a double in nlohmann);
//   - strings are valid UTF-8 (RFC 3629: no overlongs, surrogates or code
//     points above U+10FFFF) with exactly nlohmann's escapes: \" \\ \b \f \n
//     \r \t, \u00xx (lowercase hex) for the other code points below 0x20, and
//     nothing else escaped (no \/, no \u for printable or non-ASCII text);
//   - literals true, false, null; nothing after the value.
// The validator is iterative (no recursion), so hostile nesting depth cannot
// overflow the stack; its memory is one small frame per open container, and
// nesting deeper than 100000 levels is refused (nlohmann's recursive dump,
// the check this replaces, does not survive such depth either).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace sa::agent::audit {

// The parts of a canonical record line the verifier needs. Views point into
// the scanned line.
struct RecordHead {
    uint64_t seq = 0;
    // `prev` exactly as it appears between its quotes. Since base64 never
    // needs escaping, a prev containing a backslash can match no leaf hash.
    std::string_view prev_raw;
};

class CanonicalScanner final {
  public:
    // invalid_argument with the reason and byte offset unless `text` is the
    // canonical dump of some JSON value.
    Status check_value(std::string_view text);

    // Checks that `line` is a canonical, well-typed record: an object whose
    // keys are among actor, agent_id, fields, job_id, prev, seq, trace_id, ts,
    // type; with seq a non-negative integer; ts, type, actor, agent_id, prev
    // strings; job_id and trace_id absent or strings; fields an object.
    Result<RecordHead> scan_record(std::string_view line);

  private:
    struct Frame {
        bool object = false;
        bool has_key = false;
        bool key_escaped = false;
        const char* key_begin = nullptr;  // raw text of the previous key
        const char* key_end = nullptr;
    };
    // Scans one value starting at p; on success p is just past it.
    bool value(const char*& p, const char* end);
    bool string(const char*& p, const char* end, bool& escaped);
    bool number(const char*& p, const char* end, bool& negative);
    bool key_after(const Frame& f, const char* b, const char* e, bool escaped);
    std::unexpected<Error> failure(const char* at) const;

    std::vector<Frame> stack_;  // reused across calls: no per-line allocation
    std::string key_a_;         // decoded keys, only for keys with escapes
    std::string key_b_;
    const char* begin_ = nullptr;
    const char* why_ = nullptr;
    const char* where_ = nullptr;
};

// Convenience forms using a per-thread scanner.
Status check_canonical_json(std::string_view text);
Result<RecordHead> scan_record_line(std::string_view line);

}  // namespace sa::agent::audit
