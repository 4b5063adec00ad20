#include "agent/audit/canonical.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/audit/format.h"

namespace sa::agent::audit {
namespace {

using nlohmann::json;

// The definition the scanner replaces: nlohmann parses it, it holds no
// floating-point number, and dump() gives back exactly the same bytes.
bool reference_canonical(std::string_view text) {
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return false;
    if (!check_no_floats(j)) return false;
    try {
        return j.dump() == text;
    } catch (const json::exception&) {
        return false;
    }
}

// The record check as it was before the scanner: canonical, known keys only,
// typed fields.
bool reference_record(std::string_view line) {
    if (!reference_canonical(line)) return false;
    json j = json::parse(line);
    if (!j.is_object()) return false;
    static const std::vector<std::string> kKnown = {"actor", "agent_id", "fields", "job_id", "prev",
                                                    "seq",   "trace_id", "ts",     "type"};
    for (auto it = j.begin(); it != j.end(); ++it)
        if (std::find(kKnown.begin(), kKnown.end(), it.key()) == kKnown.end()) return false;
    if (!j.contains("seq") || !j["seq"].is_number_unsigned()) return false;
    for (const char* k : {"ts", "type", "actor", "agent_id", "prev"})
        if (!j.contains(k) || !j[k].is_string()) return false;
    for (const char* k : {"job_id", "trace_id"})
        if (j.contains(k) && !j[k].is_string()) return false;
    return j.contains("fields") && j["fields"].is_object();
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

// For failure messages: the text with non-printable bytes as \xNN.
std::string printable(std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
        if (c >= 0x20 && c < 0x7F) {
            out += static_cast<char>(c);
        } else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    return out;
}

class Generator {
  public:
    explicit Generator(uint32_t seed) : rng_(seed) {}

    uint32_t below(uint32_t n) { return std::uniform_int_distribution<uint32_t>(0, n - 1)(rng_); }

    std::string text(size_t max_len = 24) {
        std::string s;
        const size_t n = below(static_cast<uint32_t>(max_len) + 1);
        for (size_t i = 0; i < n; ++i) {
            switch (below(10)) {
                case 0:
                    append_utf8(s, below(0x20));  // control characters
                    break;
                case 1:
                    s += "\"\\/"[below(3)];
                    break;
                case 2: {
                    uint32_t cp = 0x80 + below(0x10FFFF - 0x80);
                    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
                    append_utf8(s, cp);
                    break;
                }
                case 3:
                    append_utf8(s, 0x7F + below(3));  // DEL and the first C1 controls
                    break;
                default:
                    s += static_cast<char>('a' + below(26));
            }
        }
        return s;
    }

    json integer() {
        switch (below(6)) {
            case 0:
                return std::numeric_limits<uint64_t>::max() - below(3);
            case 1:
                return std::numeric_limits<int64_t>::min() + below(3);
            case 2:
                return -static_cast<int64_t>(below(100000));
            case 3:
                return 0;
            default:
                return static_cast<uint64_t>(rng_());
        }
    }

    json value(int depth) {
        switch (below(depth > 3 ? 5 : 7)) {
            case 0:
                return text();
            case 1:
                return integer();
            case 2:
                return below(2) == 0;
            case 3:
                return nullptr;
            case 4:
                return text(4);
            case 5: {
                json a = json::array();
                for (uint32_t i = below(4); i > 0; --i) a.push_back(value(depth + 1));
                return a;
            }
            default:
                return object(depth + 1);
        }
    }

    json object(int depth) {
        json o = json::object();
        for (uint32_t i = below(5); i > 0; --i) o[text(below(4) == 0 ? 3 : 8)] = value(depth);
        return o;
    }

    std::string record_line(uint64_t seq) {
        json rec{{"seq", seq},
                 {"ts", "2026-11-29T10:00:00.000Z"},
                 {"type", text(12)},
                 {"actor", text(8)},
                 {"agent_id", "edge"},
                 {"fields", object(1)},
                 {"prev", seq == 0 ? std::string() : std::string(43, 'A') + "="}};
        if (below(2)) rec["job_id"] = text(10);
        if (below(3) == 0) rec["trace_id"] = text(10);
        return rec.dump();
    }

    // One small edit of the kinds a careless or hostile editor would make.
    std::string mutate(std::string s) {
        static const std::vector<std::string> kInserts = {" ",
                                                          "\t",
                                                          "\n",
                                                          ",",
                                                          ":",
                                                          "\"",
                                                          "\\",
                                                          "0",
                                                          "-",
                                                          ".5",
                                                          "e1",
                                                          "E+2",
                                                          "\\u0041",
                                                          "\\/",
                                                          "\\u001F",
                                                          "\\u000a",
                                                          "\\ud83d\\ude00",
                                                          "\xC0\x80",
                                                          "\xED\xA0\x80",
                                                          "\xF4\x90\x80\x80",
                                                          "\xFF",
                                                          "\x80",
                                                          "\xE2\x82",
                                                          "}",
                                                          "]",
                                                          "{}",
                                                          "[]",
                                                          "null",
                                                          "tru",
                                                          "\x01",
                                                          "\"a\":1,",
                                                          "-0",
                                                          "00",
                                                          "1.0",
                                                          "99999999999999999999"};
        if (s.empty()) return kInserts[below(static_cast<uint32_t>(kInserts.size()))];
        const size_t at = below(static_cast<uint32_t>(s.size()));
        switch (below(6)) {
            case 0:
                s.insert(at, kInserts[below(static_cast<uint32_t>(kInserts.size()))]);
                break;
            case 1:
                s.erase(at, 1 + below(3));
                break;
            case 2:
                s[at] = static_cast<char>(below(256));
                break;
            case 3:
                s[at] = "{}[],:\"\\-0123456789.eE tfn"[below(26)];
                break;
            case 4:
                s += kInserts[below(static_cast<uint32_t>(kInserts.size()))];
                break;
            default: {  // swap two neighbouring members or elements
                const size_t comma = s.find(',', at);
                if (comma == std::string::npos) {
                    s.insert(at, " ");
                    break;
                }
                const size_t next = s.find_first_of(",}]", comma + 1);
                const size_t prev = s.rfind(',', comma - 1);
                const size_t from =
                    prev == std::string::npos ? s.find_first_of("{[") + 1 : prev + 1;
                if (next == std::string::npos || from > comma) break;
                s = s.substr(0, from) + s.substr(comma + 1, next - comma - 1) + "," +
                    s.substr(from, comma - from) + s.substr(next);
            }
        }
        return s;
    }

  private:
    std::mt19937 rng_;
};

TEST(CanonicalTest, AcceptsWhatNlohmannDumps) {
    Generator gen(1234);
    for (int i = 0; i < 3000; ++i) {
        const std::string text = gen.value(0).dump();
        EXPECT_TRUE(check_canonical_json(text)) << text;
        const std::string line = gen.record_line(static_cast<uint64_t>(i));
        auto head = scan_record_line(line);
        ASSERT_TRUE(head) << line << ": " << head.error().message;
        EXPECT_EQ(head->seq, static_cast<uint64_t>(i));
        EXPECT_EQ(head->prev_raw, json::parse(line)["prev"].get<std::string>());
    }
}

TEST(CanonicalTest, AgreesWithNlohmannOnMutatedValues) {
    Generator gen(99);
    int rejected = 0;
    for (int i = 0; i < 6000; ++i) {
        std::string text = gen.value(0).dump();
        for (uint32_t n = 1 + gen.below(2); n > 0; --n) text = gen.mutate(text);
        const bool expected = reference_canonical(text);
        const bool got = static_cast<bool>(check_canonical_json(text));
        EXPECT_EQ(got, expected) << printable(text);
        if (!expected) ++rejected;
    }
    EXPECT_GT(rejected, 3000);  // the mutations really exercise the reject paths
}

TEST(CanonicalTest, AgreesWithTheOldRecordCheckOnMutatedRecords) {
    Generator gen(7);
    int rejected = 0;
    for (int i = 0; i < 6000; ++i) {
        std::string line = gen.record_line(static_cast<uint64_t>(i));
        if (i % 4 != 0) line = gen.mutate(line);
        const bool expected = reference_record(line);
        auto got = scan_record_line(line);
        EXPECT_EQ(static_cast<bool>(got), expected) << printable(line);
        auto parsed = parse_record_line(line);
        EXPECT_EQ(static_cast<bool>(parsed), expected) << printable(line);
        if (got && parsed) {
            EXPECT_EQ(got->seq, parsed->seq);
            EXPECT_EQ(got->prev_raw, parsed->prev);
        }
        if (!expected) ++rejected;
    }
    EXPECT_GT(rejected, 2000);
}

struct Case {
    const char* name;
    std::string text;
};

TEST(CanonicalTest, RejectsNonCanonicalVariants) {
    const std::vector<Case> cases = {
        {"space after colon", R"({"a": 1})"},
        {"space after comma", R"({"a":1, "b":2})"},
        {"leading space", R"( {"a":1})"},
        {"trailing space", R"({"a":1} )"},
        {"trailing newline", "{\"a\":1}\n"},
        {"trailing CR", "{\"a\":1}\r"},
        {"trailing garbage", R"({"a":1}x)"},
        {"two values", R"({"a":1}{})"},
        {"unsorted keys", R"({"b":1,"a":2})"},
        {"duplicate keys", R"({"a":1,"a":1})"},
        {"nested unsorted", R"({"a":{"y":1,"x":2}})"},
        {"nested duplicate", R"({"a":[{"k":1,"k":2}]})"},
        {"prefix sorts first", R"({"ab":1,"a":2})"},
        {"escaped key sorted by escaped text", R"({"a!":2,"a\n":1})"},
        {"float", R"({"a":1.0})"},
        {"float 0.5", R"({"a":0.5})"},
        {"exponent", R"({"a":1e3})"},
        {"exponent upper", R"({"a":1E3})"},
        {"negative exponent", R"({"a":-1e-3})"},
        {"leading zero", R"({"a":01})"},
        {"negative zero", R"({"a":-0})"},
        {"plus sign", R"({"a":+1})"},
        {"above uint64", R"({"a":18446744073709551616})"},
        {"below int64", R"({"a":-9223372036854775809})"},
        {"escaped slash", R"({"a":"\/"})"},
        {"escaped letter", R"({"a":"\u0041"})"},
        {"uppercase hex", R"({"a":"\u001F"})"},
        {"long form of newline", R"({"a":"\u000a"})"},
        {"long form of tab", R"({"a":"\u0009"})"},
        {"escaped DEL", R"({"a":"\u007f"})"},
        {"escaped non-ASCII", R"({"a":"\u00e9"})"},
        {"surrogate pair escape", R"({"a":"\ud83d\ude00"})"},
        {"unknown escape", R"({"a":"\x"})"},
        {"raw control char", "{\"a\":\"\x01\"}"},
        {"raw tab", "{\"a\":\"\t\"}"},
        {"overlong", "{\"a\":\"\xC0\x80\"}"},
        {"overlong 3", "{\"a\":\"\xE0\x80\x80\"}"},
        {"surrogate", "{\"a\":\"\xED\xA0\x80\"}"},
        {"above U+10FFFF", "{\"a\":\"\xF4\x90\x80\x80\"}"},
        {"lone continuation", "{\"a\":\"\x80\"}"},
        {"truncated sequence", "{\"a\":\"\xE2\x82\"}"},
        {"0xFF", "{\"a\":\"\xFF\"}"},
        {"invalid UTF-8 in key", "{\"\xC3\":1}"},
        {"unterminated string", R"({"a":"b)"},
        {"unterminated object", R"({"a":1)"},
        {"trailing comma", R"({"a":1,})"},
        {"trailing comma array", R"({"a":[1,]})"},
        {"single quotes", R"({'a':1})"},
        {"bare word", R"({"a":nul})"},
        {"capital literal", R"({"a":True})"},
        {"NaN", R"({"a":NaN})"},
        {"empty", ""},
    };
    for (const auto& c : cases) {
        EXPECT_FALSE(reference_canonical(c.text)) << "reference accepts " << c.name;
        auto st = check_canonical_json(c.text);
        EXPECT_FALSE(st) << c.name;
        if (!st) {
            EXPECT_EQ(st.error().code, ErrorCode::invalid_argument) << c.name;
        }
    }
}

TEST(CanonicalTest, AcceptsTheEdgesNlohmannWrites) {
    const std::vector<Case> cases = {
        {"empty object", "{}"},
        {"empty containers", R"({"a":[],"b":{}})"},
        {"uint64 max", R"({"a":18446744073709551615})"},
        {"int64 min", R"({"a":-9223372036854775808})"},
        {"zero", R"({"a":0})"},
        {"short escapes", R"({"a":"\"\\\b\f\n\r\t"})"},
        {"long escapes", R"({"a":"\u0000\u0001\u000b\u001f"})"},
        {"raw DEL and slash", "{\"a\":\"\x7f/\"}"},
        {"4-byte UTF-8", "{\"a\":\"\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF\"}"},
        {"noncharacter", "{\"a\":\"\xEF\xBF\xBF\"}"},
        // Keys sort by their decoded bytes: "\n" (0x0a) before "!" (0x21),
        // although the escaped text "\\n" would sort after it.
        {"escaped key order", R"({"a\n":1,"a!":2})"},
        {"quote key order", R"({"a\"":1,"a#":2})"},
        {"non-ASCII keys last", "{\"z\":1,\"\xC3\xA9\":2}"},
        {"prefix first", R"({"a":1,"ab":2})"},
        {"literals", R"([true,false,null])"},
        {"string", R"("x")"},
        {"number", "-5"},
    };
    for (const auto& c : cases) {
        EXPECT_TRUE(reference_canonical(c.text)) << "reference rejects " << c.name;
        EXPECT_TRUE(check_canonical_json(c.text)) << c.name;
    }
}

TEST(CanonicalTest, DeepNestingDoesNotRecurseAndIsBounded) {
    // Deeper than a recursive descent parser's stack would survive.
    const size_t depth = 100'000;
    std::string text(depth, '[');
    text += std::string(depth, ']');
    EXPECT_TRUE(check_canonical_json(text));
    text.pop_back();
    EXPECT_FALSE(check_canonical_json(text));
    // One level more than the limit is refused, however well formed.
    std::string deeper = "[" + std::string(depth, '[') + std::string(depth, ']') + "]";
    auto st = check_canonical_json(deeper);
    ASSERT_FALSE(st);
    EXPECT_NE(st.error().message.find("nesting"), std::string::npos) << st.error().message;
}

TEST(CanonicalTest, RecordTypes) {
    const std::string ok =
        R"({"actor":"a","agent_id":"e","fields":{},"prev":"","seq":0,"ts":"t","type":"x"})";
    auto head = scan_record_line(ok);
    ASSERT_TRUE(head) << head.error().message;
    EXPECT_EQ(head->seq, 0u);
    EXPECT_EQ(head->prev_raw, "");

    const std::string max =
        R"({"actor":"a","agent_id":"e","fields":{},"prev":"p","seq":18446744073709551615,"ts":"t","type":"x"})";
    head = scan_record_line(max);
    ASSERT_TRUE(head) << head.error().message;
    EXPECT_EQ(head->seq, std::numeric_limits<uint64_t>::max());

    const std::vector<Case> bad = {
        {"negative seq",
         R"({"actor":"a","agent_id":"e","fields":{},"prev":"","seq":-1,"ts":"t","type":"x"})"},
        {"string seq",
         R"({"actor":"a","agent_id":"e","fields":{},"prev":"","seq":"0","ts":"t","type":"x"})"},
        {"missing seq",
         R"({"actor":"a","agent_id":"e","fields":{},"prev":"","ts":"t","type":"x"})"},
        {"missing fields", R"({"actor":"a","agent_id":"e","prev":"","seq":0,"ts":"t","type":"x"})"},
        {"array fields",
         R"({"actor":"a","agent_id":"e","fields":[],"prev":"","seq":0,"ts":"t","type":"x"})"},
        {"numeric actor",
         R"({"actor":1,"agent_id":"e","fields":{},"prev":"","seq":0,"ts":"t","type":"x"})"},
        {"null job_id",
         R"({"actor":"a","agent_id":"e","fields":{},"job_id":null,"prev":"","seq":0,"ts":"t","type":"x"})"},
        {"unknown field",
         R"({"actor":"a","agent_id":"e","extra":1,"fields":{},"prev":"","seq":0,"ts":"t","type":"x"})"},
        {"unsorted",
         R"({"agent_id":"e","actor":"a","fields":{},"prev":"","seq":0,"ts":"t","type":"x"})"},
        {"duplicate",
         R"({"actor":"a","actor":"a","agent_id":"e","fields":{},"prev":"","seq":0,"ts":"t","type":"x"})"},
        {"array", R"([1])"},
        {"trailing", ok + " "},
    };
    for (const auto& c : bad) {
        EXPECT_FALSE(reference_record(c.text)) << "reference accepts " << c.name;
        auto r = scan_record_line(c.text);
        EXPECT_FALSE(r) << c.name;
        EXPECT_FALSE(parse_record_line(c.text)) << c.name;
    }
    auto unknown = scan_record_line(bad[7].text);
    ASSERT_FALSE(unknown);
    EXPECT_NE(unknown.error().message.find("unknown field extra"), std::string::npos)
        << unknown.error().message;
}

TEST(CanonicalTest, ReasonNamesTheOffset) {
    auto st = check_canonical_json(R"({"a":1, "b":2})");
    ASSERT_FALSE(st);
    EXPECT_NE(st.error().message.find("at byte 7"), std::string::npos) << st.error().message;
}

}  // namespace
}  // namespace sa::agent::audit
