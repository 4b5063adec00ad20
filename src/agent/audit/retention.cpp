#include "agent/audit/retention.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "agent/audit/canonical.h"
#include "agent/audit/format.h"
#include "common/crypto/encoding.h"
#include "common/util/files.h"
#include "common/util/time.h"

namespace sa::agent::audit {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

bool is_hash_b64(const json& v) {
    if (!v.is_string()) return false;
    auto raw = crypto::base64_decode(v.get<std::string>());
    return raw && raw->size() == 32;
}

std::string marker_path(const std::string& dir, const std::string& segment) {
    return (fs::path(dir) / (segment + kPreservedSuffix)).string();
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

}  // namespace

std::optional<int64_t> parse_rfc3339_millis(std::string_view ts) {
    // YYYY-MM-DDTHH:MM:SS.mmmZ
    if (ts.size() != 24 || ts[4] != '-' || ts[7] != '-' || ts[10] != 'T' || ts[13] != ':' ||
        ts[16] != ':' || ts[19] != '.' || ts[23] != 'Z')
        return std::nullopt;
    auto num = [&](size_t at, size_t n) -> std::optional<int64_t> {
        int64_t v = 0;
        for (size_t i = at; i < at + n; ++i) {
            if (ts[i] < '0' || ts[i] > '9') return std::nullopt;
            v = v * 10 + (ts[i] - '0');
        }
        return v;
    };
    auto y = num(0, 4), mo = num(5, 2), d = num(8, 2), h = num(11, 2), mi = num(14, 2),
         s = num(17, 2), ms = num(20, 3);
    if (!y || !mo || !d || !h || !mi || !s || !ms) return std::nullopt;
    if (*mo < 1 || *mo > 12 || *d < 1 || *d > 31 || *h > 23 || *mi > 59 || *s > 60)
        return std::nullopt;
    const int64_t days = days_from_civil(*y, static_cast<unsigned>(*mo), static_cast<unsigned>(*d));
    return ((days * 24 + *h) * 60 + *mi) * 60000 + *s * 1000 + *ms;
}

json to_json(const RetentionAnchor& a) {
    return json{{"first_seq", a.first_seq},
                {"prev", a.prev},
                {"frontier", a.frontier},
                {"removed", a.removed},
                {"removed_first_seq", a.removed_first_seq},
                {"removed_last_seq", a.removed_last_seq},
                {"ts", a.ts}};
}

Result<RetentionAnchor> parse_anchor_line(std::string_view line) {
    if (auto st = check_canonical_json(line); !st) return std::unexpected(st.error());
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object())
        return fail(ErrorCode::invalid_argument, "retention anchor is not a JSON object");
    auto uint_field = [&](const char* key) -> Result<uint64_t> {
        auto it = j.find(key);
        if (it == j.end() || !it->is_number_unsigned())
            return fail(ErrorCode::invalid_argument,
                        std::string("anchor field ") + key + " missing or not an integer");
        return it->get<uint64_t>();
    };
    RetentionAnchor a;
    auto first = uint_field("first_seq");
    auto rfirst = uint_field("removed_first_seq");
    auto rlast = uint_field("removed_last_seq");
    if (!first) return std::unexpected(first.error());
    if (!rfirst) return std::unexpected(rfirst.error());
    if (!rlast) return std::unexpected(rlast.error());
    a.first_seq = *first;
    a.removed_first_seq = *rfirst;
    a.removed_last_seq = *rlast;
    if (a.first_seq == 0 || a.removed_last_seq != a.first_seq - 1 ||
        a.removed_first_seq > a.removed_last_seq)
        return fail(ErrorCode::invalid_argument,
                    "anchor range is inconsistent (removed_first_seq <= removed_last_seq = "
                    "first_seq - 1 required)");
    auto prev = j.find("prev");
    if (prev == j.end() || !is_hash_b64(*prev))
        return fail(ErrorCode::invalid_argument, "anchor prev is not base64 of 32 bytes");
    a.prev = prev->get<std::string>();
    auto ts = j.find("ts");
    if (ts == j.end() || !ts->is_string())
        return fail(ErrorCode::invalid_argument, "anchor ts missing or not a string");
    a.ts = ts->get<std::string>();
    auto frontier = j.find("frontier");
    if (frontier == j.end() || !frontier->is_array())
        return fail(ErrorCode::invalid_argument, "anchor frontier missing or not an array");
    for (const auto& h : *frontier) {
        if (!is_hash_b64(h))
            return fail(ErrorCode::invalid_argument,
                        "anchor frontier hash is not base64 of 32 bytes");
        a.frontier.push_back(h.get<std::string>());
    }
    if (a.frontier.size() != static_cast<size_t>(std::popcount(a.first_seq)))
        return fail(ErrorCode::invalid_argument,
                    "anchor frontier has " + std::to_string(a.frontier.size()) +
                        " hashes; a tree of " + std::to_string(a.first_seq) + " records has " +
                        std::to_string(std::popcount(a.first_seq)) + " perfect subtrees");
    auto removed = j.find("removed");
    if (removed == j.end() || !removed->is_array())
        return fail(ErrorCode::invalid_argument, "anchor removed missing or not an array");
    for (const auto& n : *removed) {
        if (!n.is_string() || !parse_segment_name(n.get<std::string>()))
            return fail(ErrorCode::invalid_argument, "anchor removed holds a non-segment name");
        a.removed.push_back(n.get<std::string>());
    }
    return a;
}

Result<std::vector<LoadedAnchor>> read_anchors(const std::string& dir) {
    std::vector<LoadedAnchor> out;
    auto st = for_each_parsed_line(dir, kRetentionFile, parse_anchor_line,
                                   [&](RetentionAnchor&& a, uint64_t line) {
                                       out.push_back(LoadedAnchor{std::move(a), line});
                                   });
    if (!st) return std::unexpected(st.error());
    return out;
}

Status preserve_segment(const std::string& dir, const std::string& segment,
                        const std::string& reason) {
    if (!parse_segment_name(segment))
        return fail(ErrorCode::invalid_argument, segment + " is not an audit segment name");
    std::error_code ec;
    if (!fs::exists(fs::path(dir) / segment, ec))
        return fail(ErrorCode::not_found, "no audit segment " + segment + " in " + dir);
    auto text =
        canonical_dump(json{{"reason", reason}, {"ts", util::rfc3339_millis(util::unix_millis())}});
    if (!text) return std::unexpected(text.error());
    return util::write_file_atomic(marker_path(dir, segment), *text + "\n", 0600);
}

Status unpreserve_segment(const std::string& dir, const std::string& segment) {
    if (!parse_segment_name(segment))
        return fail(ErrorCode::invalid_argument, segment + " is not an audit segment name");
    if (::unlink(marker_path(dir, segment).c_str()) != 0 && errno != ENOENT)
        return fail(ErrorCode::io, "cannot remove the preservation mark of " + segment + ": " +
                                       std::strerror(errno));
    return {};
}

bool is_preserved(const std::string& dir, const std::string& segment) {
    std::error_code ec;
    return fs::exists(marker_path(dir, segment), ec);
}

Result<std::vector<PreservedSegment>> list_preserved(const std::string& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return fail(ErrorCode::not_found, "no audit directory " + dir);
    std::vector<std::pair<uint64_t, PreservedSegment>> found;
    const std::string_view suffix = kPreservedSuffix;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::string name = it->path().filename().string();
        if (!name.ends_with(suffix)) continue;
        std::string segment = name.substr(0, name.size() - suffix.size());
        auto n = parse_segment_name(segment);
        if (!n) continue;
        PreservedSegment p{segment, "", ""};
        if (auto text = util::read_file(it->path().string())) {
            json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
            if (j.is_object()) {
                if (j.contains("reason") && j["reason"].is_string()) p.reason = j["reason"];
                if (j.contains("ts") && j["ts"].is_string()) p.ts = j["ts"];
            }
        }
        found.emplace_back(*n, std::move(p));
    }
    if (ec) return fail(ErrorCode::io, "cannot list " + dir + ": " + ec.message());
    std::sort(found.begin(), found.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<PreservedSegment> out;
    for (auto& f : found) out.push_back(std::move(f.second));
    return out;
}

Result<std::vector<std::string>> segments_for(const std::string& dir, const SegmentQuery& q) {
    auto segments = list_segments(dir);
    if (!segments) return std::unexpected(segments.error());
    std::string job_needle;
    if (!q.job_id.empty()) {
        auto quoted = canonical_dump(json(q.job_id));
        if (!quoted) return std::unexpected(quoted.error());
        job_needle = "\"job_id\":" + *quoted;
    }
    std::vector<std::string> out;
    for (const auto& name : *segments) {
        auto reader = LineViewReader::open((fs::path(dir) / name).string());
        if (!reader) return std::unexpected(reader.error());
        std::string_view line;
        bool complete = true;
        bool match = false;
        while (!match && reader->next(line, complete)) {
            if (!job_needle.empty()) {
                // Cheap substring test first; the parse confirms it is the
                // record's own job_id and not a value inside fields.
                if (line.find(job_needle) == std::string_view::npos) continue;
                auto rec = parse_record_line(line);
                if (!rec || rec->job_id != q.job_id) continue;
            }
            if (q.since_millis || q.until_millis) {
                // ts is the record's second-to-last key and nothing after it
                // can hold an unescaped quote: the last `,"ts":"` is its own.
                const std::string_view key = ",\"ts\":\"";
                auto at = line.rfind(key);
                if (at == std::string_view::npos) continue;
                auto ms = parse_rfc3339_millis(line.substr(at + key.size(), 24));
                if (!ms) continue;
                if (q.since_millis && *ms < *q.since_millis) continue;
                if (q.until_millis && *ms > *q.until_millis) continue;
            }
            match = true;
        }
        if (reader->error()) return std::unexpected(*reader->error());
        if (match) out.push_back(name);
    }
    return out;
}

}  // namespace sa::agent::audit
