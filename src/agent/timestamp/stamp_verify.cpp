#include "agent/timestamp/stamp_verify.h"

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/audit/format.h"
#include "agent/timestamp/checkpoint_stamper.h"
#include "agent/timestamp/tsa_client.h"
#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"
#include "common/util/time.h"

namespace sa::agent::timestamp {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int64_t kClockSkewMillis = 5 * 60 * 1000;

struct IndexedCheckpoint {
    std::string sha256;  // of the line as stored
    std::optional<int64_t> ts_millis;
    uint64_t line = 0;
};

// Strict "YYYY-MM-DDTHH:MM:SS.mmmZ" (what rfc3339_millis writes) to Unix ms.
std::optional<int64_t> parse_rfc3339_millis(std::string_view s) {
    if (s.size() != 24 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':' || s[19] != '.' || s[23] != 'Z') {
        return std::nullopt;
    }
    auto num = [&](size_t at, size_t len) -> std::optional<int> {
        int v = 0;
        for (size_t i = at; i < at + len; ++i) {
            if (s[i] < '0' || s[i] > '9') return std::nullopt;
            v = v * 10 + (s[i] - '0');
        }
        return v;
    };
    auto year = num(0, 4), month = num(5, 2), day = num(8, 2), hour = num(11, 2),
         minute = num(14, 2), second = num(17, 2), millis = num(20, 3);
    if (!year || !month || !day || !hour || !minute || !second || !millis) return std::nullopt;
    if (*month < 1 || *month > 12 || *day < 1 || *day > 31 || *hour > 23 || *minute > 59 ||
        *second > 60) {
        return std::nullopt;
    }
    std::tm tm{};
    tm.tm_year = *year - 1900;
    tm.tm_mon = *month - 1;
    tm.tm_mday = *day;
    tm.tm_hour = *hour;
    tm.tm_min = *minute;
    tm.tm_sec = *second;
    int64_t ms = static_cast<int64_t>(timegm(&tm)) * 1000 + *millis;
    // Rejects dates timegm normalized (Feb 30 and the like).
    if (util::rfc3339_millis(ms) != s) return std::nullopt;
    return ms;
}

struct TokenLine {
    uint64_t tree_size = 0;
    std::string checkpoint_sha256;  // raw 32 bytes
    std::string token_der;
    std::string gen_time;
    int64_t gen_time_millis = 0;
};

// Strict parse; on failure the message says what is wrong, and tree_size is
// filled in when it could be read.
Result<TokenLine> parse_token_line(std::string_view line, std::optional<uint64_t>& tree_size) {
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object())
        return fail(ErrorCode::invalid_argument, "not a JSON object");
    if (auto it = j.find("tree_size"); it != j.end() && it->is_number_unsigned())
        tree_size = it->get<uint64_t>();
    auto canonical = audit::canonical_dump(j);
    if (!canonical || *canonical != line)
        return fail(ErrorCode::invalid_argument, "not canonical JSON");
    static const char* const kFields[] = {"checkpoint_sha256", "gen_time", "token", "tree_size",
                                          "tsa"};
    for (auto it = j.begin(); it != j.end(); ++it) {
        if (std::find_if(std::begin(kFields), std::end(kFields),
                         [&](const char* f) { return it.key() == f; }) == std::end(kFields))
            return fail(ErrorCode::invalid_argument, "unexpected field " + it.key());
    }
    if (!tree_size) return fail(ErrorCode::invalid_argument, "tree_size missing or not an integer");
    TokenLine out;
    out.tree_size = *tree_size;
    auto text = [&](const char* key) -> Result<std::string> {
        auto it = j.find(key);
        if (it == j.end() || !it->is_string() || it->get_ref<const std::string&>().empty())
            return fail(ErrorCode::invalid_argument,
                        std::string(key) + " missing or not a non-empty string");
        return it->get<std::string>();
    };
    auto bytes = [&](const char* key) -> Result<std::string> {
        auto t = text(key);
        if (!t) return t;
        auto raw = crypto::base64_decode(*t);
        if (!raw || crypto::base64_encode(*raw) != *t)
            return fail(ErrorCode::invalid_argument, std::string(key) + " is not base64");
        return *raw;
    };
    auto sha = bytes("checkpoint_sha256");
    if (!sha) return std::unexpected(sha.error());
    if (sha->size() != 32)
        return fail(ErrorCode::invalid_argument, "checkpoint_sha256 is not 32 bytes");
    out.checkpoint_sha256 = std::move(*sha);
    auto der = bytes("token");
    if (!der) return std::unexpected(der.error());
    out.token_der = std::move(*der);
    auto gen = text("gen_time");
    if (!gen) return std::unexpected(gen.error());
    auto gen_ms = parse_rfc3339_millis(*gen);
    if (!gen_ms) return fail(ErrorCode::invalid_argument, "gen_time is not RFC 3339 UTC");
    out.gen_time = std::move(*gen);
    out.gen_time_millis = *gen_ms;
    if (auto tsa = text("tsa"); !tsa) return std::unexpected(tsa.error());
    return out;
}

Result<std::unordered_map<uint64_t, std::vector<IndexedCheckpoint>>> index_checkpoints(
    const std::string& dir) {
    std::unordered_map<uint64_t, std::vector<IndexedCheckpoint>> index;
    auto reader = audit::LineViewReader::open((fs::path(dir) / audit::kCheckpointsFile).string());
    if (!reader) {
        if (reader.error().code == ErrorCode::not_found) return index;
        return std::unexpected(reader.error());
    }
    std::string_view line;
    bool complete = true;
    uint64_t n = 0;
    while (reader->next(line, complete)) {
        ++n;
        // A line that does not parse is audit verify's to report; it cannot
        // be what a token refers to.
        auto cp = audit::parse_checkpoint_line(line);
        if (!complete || !cp) continue;
        index[cp->tree_size].push_back(
            IndexedCheckpoint{crypto::sha256(line), parse_rfc3339_millis(cp->ts), n});
    }
    if (reader->error()) return std::unexpected(*reader->error());
    return index;
}

}  // namespace

const char* to_string(TimestampDamageKind kind) {
    switch (kind) {
        case TimestampDamageKind::malformed:
            return "malformed";
        case TimestampDamageKind::bad_timestamp:
            return "bad_timestamp";
    }
    return "unknown";
}

std::string TimestampDamage::describe() const {
    std::string out = std::string(to_string(kind)) + " at " + file + ":" + std::to_string(line);
    if (tree_size) out += " (tree size " + std::to_string(*tree_size) + ")";
    return out + ": " + detail;
}

Result<TimestampReport> verify_timestamps(const std::string& audit_dir,
                                          const std::optional<std::string>& tsa_ca_file) {
    TimestampReport report;
    report.signatures_checked = tsa_ca_file.has_value();
    auto reader = audit::LineViewReader::open((fs::path(audit_dir) / kTimestampsFile).string());
    if (!reader) {
        if (reader.error().code == ErrorCode::not_found) return report;
        return std::unexpected(reader.error());
    }
    auto index = index_checkpoints(audit_dir);
    if (!index) return std::unexpected(index.error());

    std::string_view line;
    bool complete = true;
    uint64_t n = 0;
    while (reader->next(line, complete)) {
        ++n;
        std::optional<uint64_t> tree_size;
        auto damage = [&](TimestampDamageKind kind, std::string detail) {
            report.damage = TimestampDamage{kind, kTimestampsFile, n, tree_size, std::move(detail)};
            return report;
        };
        if (!complete) {
            return damage(TimestampDamageKind::malformed,
                          "incomplete line (a torn write the agent cuts off on its next start)");
        }
        auto parsed = parse_token_line(line, tree_size);
        if (!parsed) return damage(TimestampDamageKind::malformed, parsed.error().message);
        const TokenLine& t = *parsed;

        const IndexedCheckpoint* cp = nullptr;
        bool size_known = false;
        if (auto it = index->find(t.tree_size); it != index->end()) {
            size_known = true;
            for (const auto& c : it->second)
                if (crypto::equal_constant_time(c.sha256, t.checkpoint_sha256)) cp = &c;
        }
        if (cp == nullptr) {
            return damage(TimestampDamageKind::bad_timestamp,
                          size_known ? "token for a checkpoint that is not in the log (the "
                                       "checkpoint with this tree size has another SHA-256)"
                                     : "token for a checkpoint that is not in the log (no "
                                       "checkpoint with this tree size)");
        }

        auto claims = read_token_claims(t.token_der);
        if (!claims) return damage(TimestampDamageKind::bad_timestamp, claims.error().message);
        if (!crypto::equal_constant_time(claims->imprint, t.checkpoint_sha256)) {
            return damage(TimestampDamageKind::bad_timestamp,
                          "the token time-stamps another hash than checkpoints.jsonl:" +
                              std::to_string(cp->line));
        }
        if (tsa_ca_file) {
            auto verified = verify_token(t.token_der, t.checkpoint_sha256, *tsa_ca_file);
            if (!verified) {
                if (verified.error().code == ErrorCode::io)
                    return std::unexpected(verified.error());
                return damage(TimestampDamageKind::bad_timestamp,
                              "token signature: " + verified.error().message);
            }
        }
        int64_t token_ms = claims->gen_time_unix * 1000;
        if (t.gen_time_millis != token_ms) {
            return damage(TimestampDamageKind::bad_timestamp,
                          "gen_time " + t.gen_time + " differs from the token's genTime " +
                              util::rfc3339_millis(token_ms));
        }
        if (!cp->ts_millis) {
            return damage(
                TimestampDamageKind::bad_timestamp,
                "checkpoints.jsonl:" + std::to_string(cp->line) + " has an unreadable ts");
        }
        if (token_ms < *cp->ts_millis - kClockSkewMillis) {
            return damage(TimestampDamageKind::bad_timestamp,
                          "genTime " + t.gen_time + " is more than 5 minutes before the ts of " +
                              "checkpoints.jsonl:" + std::to_string(cp->line) + " (" +
                              util::rfc3339_millis(*cp->ts_millis) + ")");
        }
        ++report.tokens;
        if (t.tree_size >= report.last_stamped_tree_size) {
            report.last_stamped_tree_size = t.tree_size;
            report.last_gen_time = t.gen_time;
        }
    }
    if (reader->error()) return std::unexpected(*reader->error());
    return report;
}

}  // namespace sa::agent::timestamp
