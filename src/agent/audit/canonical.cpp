#include "agent/audit/canonical.h"

#include <algorithm>
#include <cstddef>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace sa::agent::audit {
namespace {

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

bool is_continuation(unsigned char c) {
    return (c & 0xC0) == 0x80;
}

// Appends the decoded text of a canonical string body (escapes already
// validated) to out.
void decode_into(const char* b, const char* e, std::string& out) {
    out.clear();
    while (b < e) {
        if (*b != '\\') {
            out.push_back(*b++);
            continue;
        }
        switch (b[1]) {
            case 'b':
                out.push_back('\b');
                break;
            case 'f':
                out.push_back('\f');
                break;
            case 'n':
                out.push_back('\n');
                break;
            case 'r':
                out.push_back('\r');
                break;
            case 't':
                out.push_back('\t');
                break;
            case 'u': {
                const char lo = b[5];
                const int low = lo <= '9' ? lo - '0' : lo - 'a' + 10;
                out.push_back(static_cast<char>((b[4] - '0') * 16 + low));
                b += 6;
                continue;
            }
            default:  // '"' or '\\'
                out.push_back(b[1]);
                break;
        }
        b += 2;
    }
}

// Unsigned byte order, as std::map<std::string> orders nlohmann's keys.
int compare_bytes(std::string_view a, std::string_view b) {
    const size_t n = std::min(a.size(), b.size());
    if (n > 0) {
        if (int c = std::memcmp(a.data(), b.data(), n); c != 0) return c;
    }
    if (a.size() == b.size()) return 0;
    return a.size() < b.size() ? -1 : 1;
}

// The record's keys in byte order, which is also the order they must appear in.
enum Key : int { actor, agent_id, fields, job_id, prev, seq, trace_id, ts, type, key_count };
constexpr std::string_view kKeys[key_count] = {"actor", "agent_id", "fields", "job_id", "prev",
                                               "seq",   "trace_id", "ts",     "type"};
// Far beyond any record the agent writes, and beyond what nlohmann's
// recursive dump() (the old check) survives; bounds the frame stack's memory
// (32 bytes a level) for hostile input.
constexpr size_t kMaxDepth = 100'000;

constexpr unsigned kRequired = (1u << actor) | (1u << agent_id) | (1u << fields) | (1u << prev) |
                               (1u << seq) | (1u << ts) | (1u << type);

}  // namespace

std::unexpected<Error> CanonicalScanner::failure(const char* at) const {
    return fail(ErrorCode::invalid_argument, std::string("not in canonical form: ") + why_ +
                                                 " at byte " +
                                                 std::to_string(static_cast<size_t>(at - begin_)));
}

bool CanonicalScanner::string(const char*& p, const char* end, bool& escaped) {
    escaped = false;
    for (;;) {
#if defined(__SSE2__)
        // 16 bytes at a time until a byte needs a closer look: '"', '\\', a
        // control character or a non-ASCII byte (both < 0x20 as signed char).
        const __m128i quote = _mm_set1_epi8('"');
        const __m128i backslash = _mm_set1_epi8('\\');
        const __m128i space = _mm_set1_epi8(0x20);
        while (end - p >= 16) {
            const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
            const __m128i hit =
                _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                             _mm_cmplt_epi8(v, space));
            const int mask = _mm_movemask_epi8(hit);
            if (mask != 0) {
                p += __builtin_ctz(static_cast<unsigned>(mask));
                break;
            }
            p += 16;
        }
#endif
        if (p >= end) {
            why_ = "unterminated string";
            where_ = p;
            return false;
        }
        const auto c = static_cast<unsigned char>(*p);
        if (c == '"') {
            ++p;
            return true;
        }
        if (c == '\\') {
            escaped = true;
            if (end - p < 2) {
                why_ = "unterminated escape";
                where_ = p;
                return false;
            }
            switch (p[1]) {
                case '"':
                case '\\':
                case 'b':
                case 'f':
                case 'n':
                case 'r':
                case 't':
                    p += 2;
                    continue;
                case 'u':
                    break;
                default:
                    why_ = "escape sequence the writer never produces";
                    where_ = p;
                    return false;
            }
            // Only control characters without a short form are written as
            // \u00xx, in lowercase hex.
            const char hi = end - p >= 6 ? p[4] : 0;
            const char lo = end - p >= 6 ? p[5] : 0;
            const bool lo_hex = is_digit(lo) || (lo >= 'a' && lo <= 'f');
            if (end - p < 6 || p[2] != '0' || p[3] != '0' || (hi != '0' && hi != '1') || !lo_hex) {
                why_ = "\\u escape the writer never produces (only \\u0000-\\u001f, lowercase)";
                where_ = p;
                return false;
            }
            const int code = (hi - '0') * 16 + (is_digit(lo) ? lo - '0' : lo - 'a' + 10);
            if (code == 0x08 || code == 0x09 || code == 0x0a || code == 0x0c || code == 0x0d) {
                why_ = "\\u escape for a character with a short escape";
                where_ = p;
                return false;
            }
            p += 6;
            continue;
        }
        if (c < 0x20) {
            why_ = "unescaped control character in string";
            where_ = p;
            return false;
        }
        if (c < 0x80) {
            ++p;
            continue;
        }
        // RFC 3629 UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
        const auto* u = reinterpret_cast<const unsigned char*>(p);
        const std::ptrdiff_t left = end - p;
        size_t len = 0;
        if (c >= 0xC2 && c <= 0xDF) {
            if (left >= 2 && is_continuation(u[1])) len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (left >= 3 && is_continuation(u[1]) && is_continuation(u[2])) {
                const bool ok = c == 0xE0 ? u[1] >= 0xA0 : c == 0xED ? u[1] <= 0x9F : true;
                if (ok) len = 3;
            }
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (left >= 4 && is_continuation(u[1]) && is_continuation(u[2]) &&
                is_continuation(u[3])) {
                const bool ok = c == 0xF0 ? u[1] >= 0x90 : c == 0xF4 ? u[1] <= 0x8F : true;
                if (ok) len = 4;
            }
        }
        if (len == 0) {
            why_ = "invalid UTF-8";
            where_ = p;
            return false;
        }
        p += len;
    }
}

bool CanonicalScanner::number(const char*& p, const char* end, bool& negative) {
    negative = false;
    const char* start = p;
    if (p < end && *p == '-') {
        negative = true;
        ++p;
    }
    if (p >= end || !is_digit(*p)) {
        why_ = "digit expected";
        where_ = p;
        return false;
    }
    if (*p == '0') {
        ++p;
        if (negative) {
            why_ = "-0 (written as 0)";
            where_ = start;
            return false;
        }
        if (p < end && is_digit(*p)) {
            why_ = "leading zero";
            where_ = start;
            return false;
        }
    } else {
        while (p < end && is_digit(*p)) ++p;
    }
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) {
        why_ = "floating-point number (fraction or exponent)";
        where_ = start;
        return false;
    }
    // Beyond these nlohmann parses a double, which records may not hold.
    const char* digits = negative ? start + 1 : start;
    const std::string_view limit = negative ? "9223372036854775808" : "18446744073709551615";
    const auto n = static_cast<size_t>(p - digits);
    if (n > limit.size() || (n == limit.size() && std::string_view(digits, n).compare(limit) > 0)) {
        why_ = "integer outside the 64-bit range (a floating-point number)";
        where_ = start;
        return false;
    }
    return true;
}

bool CanonicalScanner::key_after(const Frame& f, const char* b, const char* e, bool escaped) {
    if (!escaped && !f.key_escaped)
        return compare_bytes(
                   std::string_view(f.key_begin, static_cast<size_t>(f.key_end - f.key_begin)),
                   std::string_view(b, static_cast<size_t>(e - b))) < 0;
    decode_into(f.key_begin, f.key_end, key_a_);
    decode_into(b, e, key_b_);
    return compare_bytes(key_a_, key_b_) < 0;
}

bool CanonicalScanner::value(const char*& p, const char* end) {
    enum class Next { value, key, after };
    const size_t base = stack_.size();
    Next next = Next::value;
    for (;;) {
        if (next == Next::value) {
            if (stack_.size() - base >= kMaxDepth) {
                why_ = "nesting deeper than 100000 levels";
                where_ = p;
                return false;
            }
            if (p >= end) {
                why_ = "value expected";
                where_ = p;
                return false;
            }
            switch (*p) {
                case '{':
                    ++p;
                    if (p < end && *p == '}') {
                        ++p;
                        next = Next::after;
                    } else {
                        stack_.push_back(Frame{true, false, false, nullptr, nullptr});
                        next = Next::key;
                    }
                    continue;
                case '[':
                    ++p;
                    if (p < end && *p == ']') {
                        ++p;
                        next = Next::after;
                    } else {
                        stack_.push_back(Frame{false, false, false, nullptr, nullptr});
                    }
                    continue;
                case '"': {
                    ++p;
                    bool escaped = false;
                    if (!string(p, end, escaped)) return false;
                    next = Next::after;
                    continue;
                }
                case 't':
                case 'f':
                case 'n': {
                    const std::string_view rest(p, static_cast<size_t>(end - p));
                    const std::string_view word = *p == 't' ? "true" : *p == 'f' ? "false" : "null";
                    if (!rest.starts_with(word)) {
                        why_ = "invalid literal";
                        where_ = p;
                        return false;
                    }
                    p += word.size();
                    next = Next::after;
                    continue;
                }
                default: {
                    if (*p != '-' && !is_digit(*p)) {
                        why_ = "value expected";
                        where_ = p;
                        return false;
                    }
                    bool negative = false;
                    if (!number(p, end, negative)) return false;
                    next = Next::after;
                    continue;
                }
            }
        }
        if (next == Next::key) {
            if (p >= end || *p != '"') {
                why_ = "object key expected";
                where_ = p;
                return false;
            }
            const char* key = p;
            ++p;
            bool escaped = false;
            if (!string(p, end, escaped)) return false;
            Frame& f = stack_.back();
            if (f.has_key && !key_after(f, key + 1, p - 1, escaped)) {
                why_ = "object keys not in strictly increasing byte order (unsorted or duplicate)";
                where_ = key;
                return false;
            }
            f.has_key = true;
            f.key_escaped = escaped;
            f.key_begin = key + 1;
            f.key_end = p - 1;
            if (p >= end || *p != ':') {
                why_ = "':' expected";
                where_ = p;
                return false;
            }
            ++p;
            next = Next::value;
            continue;
        }
        // Next::after: a value just ended.
        if (stack_.size() == base) return true;
        const bool object = stack_.back().object;
        if (p < end && *p == ',') {
            ++p;
            next = object ? Next::key : Next::value;
            continue;
        }
        if (p < end && *p == (object ? '}' : ']')) {
            ++p;
            stack_.pop_back();
            continue;
        }
        why_ = object ? "',' or '}' expected" : "',' or ']' expected";
        where_ = p;
        return false;
    }
}

Status CanonicalScanner::check_value(std::string_view text) {
    stack_.clear();
    begin_ = text.data();
    const char* p = text.data();
    const char* end = p + text.size();
    if (!value(p, end)) return failure(where_);
    if (p != end) {
        why_ = "bytes after the value";
        return failure(p);
    }
    return {};
}

Result<RecordHead> CanonicalScanner::scan_record(std::string_view line) {
    stack_.clear();
    begin_ = line.data();
    const char* p = line.data();
    const char* end = p + line.size();
    RecordHead head;
    if (p >= end || *p != '{') return fail(ErrorCode::invalid_argument, "not a JSON object");
    ++p;
    unsigned seen = 0;
    int last = -1;
    if (p < end && *p == '}') {
        ++p;
    } else {
        for (;;) {
            if (p >= end || *p != '"') {
                why_ = "object key expected";
                return failure(p);
            }
            const char* key_at = p;
            ++p;
            bool escaped = false;
            if (!string(p, end, escaped)) return failure(where_);
            const std::string_view key(key_at + 1, static_cast<size_t>(p - 1 - (key_at + 1)));
            // Known keys need no escapes, so an escaped key is never one of them.
            int k = 0;
            while (k < key_count && (escaped || key != kKeys[k])) ++k;
            if (k == key_count) {
                // Still report a non-canonical line as such first.
                if (auto st = check_value(line); !st) return std::unexpected(st.error());
                return fail(ErrorCode::invalid_argument,
                            "unknown field " + std::string(key.substr(0, 64)));
            }
            if (k <= last) {
                why_ = "object keys not in strictly increasing byte order (unsorted or duplicate)";
                return failure(key_at);
            }
            last = k;
            seen |= 1u << k;
            if (p >= end || *p != ':') {
                why_ = "':' expected";
                return failure(p);
            }
            ++p;
            if (k == Key::seq) {
                if (p >= end || !is_digit(*p)) {
                    if (auto st = check_value(line); !st) return std::unexpected(st.error());
                    return fail(ErrorCode::invalid_argument,
                                "field seq missing or not a non-negative integer");
                }
                const char* digits = p;
                bool negative = false;
                if (!number(p, end, negative)) return failure(where_);
                uint64_t v = 0;
                for (const char* d = digits; d < p; ++d)
                    v = v * 10 + static_cast<uint64_t>(*d - '0');
                head.seq = v;
            } else if (k == Key::fields) {
                if (p >= end || *p != '{') {
                    if (auto st = check_value(line); !st) return std::unexpected(st.error());
                    return fail(ErrorCode::invalid_argument,
                                "field fields missing or not an object");
                }
                if (!value(p, end)) return failure(where_);
            } else {
                if (p >= end || *p != '"') {
                    if (auto st = check_value(line); !st) return std::unexpected(st.error());
                    return fail(ErrorCode::invalid_argument,
                                "field " + std::string(kKeys[k]) + " missing or not a string");
                }
                ++p;
                const char* b = p;
                if (!string(p, end, escaped)) return failure(where_);
                if (k == Key::prev)
                    head.prev_raw = std::string_view(b, static_cast<size_t>(p - 1 - b));
            }
            if (p < end && *p == ',') {
                ++p;
                continue;
            }
            if (p < end && *p == '}') {
                ++p;
                break;
            }
            why_ = "',' or '}' expected";
            return failure(p);
        }
    }
    if (p != end) {
        why_ = "bytes after the record";
        return failure(p);
    }
    if ((seen & kRequired) != kRequired) {
        for (int k = 0; k < key_count; ++k) {
            if ((kRequired & (1u << k)) == 0 || (seen & (1u << k)) != 0) continue;
            const char* what = k == Key::seq      ? " missing or not a non-negative integer"
                               : k == Key::fields ? " missing or not an object"
                                                  : " missing or not a string";
            return fail(ErrorCode::invalid_argument, "field " + std::string(kKeys[k]) + what);
        }
    }
    return head;
}

Status check_canonical_json(std::string_view text) {
    thread_local CanonicalScanner scanner;
    return scanner.check_value(text);
}

Result<RecordHead> scan_record_line(std::string_view line) {
    thread_local CanonicalScanner scanner;
    return scanner.scan_record(line);
}

}  // namespace sa::agent::audit
