#include "agent/audit/verify.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <vector>

#include "agent/audit/canonical.h"
#include "agent/audit/format.h"
#include "agent/audit/retention.h"
#include "agent/audit/tree_hasher.h"
#include "common/crypto/encoding.h"
#include "common/merkle/merkle.h"

namespace sa::agent::audit {
namespace {

namespace fs = std::filesystem;

struct LoadedCheckpoint {
    Checkpoint cp;
    uint64_t line;
};

Damage make_damage(DamageKind kind, const Position& pos, std::optional<uint64_t> seq,
                   std::string detail) {
    return Damage{kind, pos.file, pos.line, seq, std::move(detail)};
}

std::optional<uint64_t> seq_of(std::string_view line) {
    auto head = scan_record_line(line);
    if (!head) return std::nullopt;
    return head->seq;
}

// Calls visit for every line after `after` (and stops when it returns false).
Status scan_after(const std::string& dir, const Position& after,
                  const std::function<bool(std::string_view)>& visit) {
    bool reached = false;
    return for_each_line(dir, [&](const Position& pos, std::string_view line, bool) {
        if (!reached) {
            reached = pos.file == after.file && pos.line == after.line;
            return true;
        }
        return visit(line);
    });
}

// A record at `pos` has seq `got` although `expected` was due (got > expected).
// Looks at the rest of the log to tell an extra copy, a move and a removal apart.
Result<Damage> classify_jump(const std::string& dir, const Position& pos, uint64_t expected,
                             uint64_t got) {
    bool again = false;
    bool missing_later = false;
    auto st = scan_after(dir, pos, [&](std::string_view line) {
        auto s = seq_of(line);
        if (!s) return true;
        if (*s == got) again = true;
        if (*s >= expected && *s < got) missing_later = true;
        return !again;
    });
    if (!st) return std::unexpected(st.error());
    std::string range = got - expected == 1
                            ? "seq " + std::to_string(expected)
                            : "seq " + std::to_string(expected) + ".." + std::to_string(got - 1);
    if (again)
        return make_damage(DamageKind::inserted, pos, got,
                           "extra record: seq " + std::to_string(got) +
                               " appears again later where it belongs; " +
                               std::to_string(expected) + " was due here");
    if (missing_later)
        return make_damage(DamageKind::reordered, pos, got,
                           "seq " + std::to_string(got) + " where " + std::to_string(expected) +
                               " was due; " + range + " appear later in the log");
    return make_damage(DamageKind::removed, pos, got,
                       range + " missing before this record (seq " + std::to_string(got) + ")");
}

// A record at `pos` has seq `got` < `expected`: a seq seen already.
Result<Damage> classify_backwards(const std::string& dir, const Position& pos, uint64_t expected,
                                  uint64_t got) {
    std::optional<uint64_t> next;
    bool any = false;
    auto st = scan_after(dir, pos, [&](std::string_view line) {
        any = true;
        next = seq_of(line);
        return false;
    });
    if (!st) return std::unexpected(st.error());
    if (!any || (next && *next == expected))
        return make_damage(DamageKind::inserted, pos, got,
                           "extra record: seq " + std::to_string(got) +
                               " already appeared; the log continues with seq " +
                               std::to_string(expected) + " after it");
    return make_damage(
        DamageKind::reordered, pos, got,
        "seq goes backwards: " + std::to_string(got) + " after " + std::to_string(expected - 1));
}

// Reads and checks checkpoints.jsonl: format, signatures, order.
Result<std::vector<LoadedCheckpoint>> load_checkpoints(const std::string& dir,
                                                       const crypto::Ed25519PublicKey& key,
                                                       std::optional<Damage>& damage) {
    std::vector<LoadedCheckpoint> out;
    auto reader = LineReader::open((fs::path(dir) / kCheckpointsFile).string());
    if (!reader) {
        if (reader.error().code == ErrorCode::not_found) return out;
        return std::unexpected(reader.error());
    }
    std::string line;
    bool complete = true;
    Position pos{kCheckpointsFile, 0};
    while (reader->next(line, complete)) {
        ++pos.line;
        auto cp = parse_checkpoint_line(line);
        if (!complete || !cp) {
            damage = make_damage(DamageKind::malformed, pos, std::nullopt,
                                 complete ? cp.error().message : "incomplete line");
            return out;
        }
        std::optional<uint64_t> last_seq;
        if (cp->tree_size > 0) last_seq = cp->tree_size - 1;
        if (auto st = verify_checkpoint(*cp, key); !st) {
            damage = make_damage(DamageKind::bad_signature, pos, last_seq, st.error().message);
            return out;
        }
        if (!out.empty() && cp->tree_size < out.back().cp.tree_size) {
            damage = make_damage(DamageKind::reordered, pos, last_seq,
                                 "checkpoint tree size " + std::to_string(cp->tree_size) +
                                     " after " + std::to_string(out.back().cp.tree_size));
            return out;
        }
        if (cp->tree_size == 0 && cp->root != crypto::base64_encode(merkle::empty_root())) {
            damage = make_damage(DamageKind::modified, pos, std::nullopt,
                                 "checkpoint of the empty tree has a wrong root");
            return out;
        }
        out.push_back(LoadedCheckpoint{std::move(*cp), pos.line});
    }
    return out;
}

// A retention anchor with its hashes decoded.
struct Anchor {
    RetentionAnchor a;
    uint64_t line = 0;
    std::vector<Digest> frontier;
    Digest prev{};
};

Digest decode_digest(const std::string& b64) {
    Digest d{};
    auto raw = crypto::base64_decode(b64);
    if (raw && raw->size() == d.size()) std::memcpy(d.data(), raw->data(), d.size());
    return d;
}

// Reads retention.jsonl; a line that is not a well-formed anchor is damage.
Result<std::vector<Anchor>> load_anchors(const std::string& dir, std::optional<Damage>& damage) {
    std::vector<Anchor> out;
    auto reader = LineReader::open((fs::path(dir) / kRetentionFile).string());
    if (!reader) {
        if (reader.error().code == ErrorCode::not_found) return out;
        return std::unexpected(reader.error());
    }
    std::string line;
    bool complete = true;
    Position pos{kRetentionFile, 0};
    while (reader->next(line, complete)) {
        ++pos.line;
        auto a = parse_anchor_line(line);
        if (!complete || !a) {
            damage = make_damage(DamageKind::malformed, pos, std::nullopt,
                                 complete ? a.error().message : "incomplete line");
            return out;
        }
        Anchor an;
        an.line = pos.line;
        for (const auto& f : a->frontier) an.frontier.push_back(decode_digest(f));
        an.prev = decode_digest(a->prev);
        an.a = std::move(*a);
        out.push_back(std::move(an));
    }
    return out;
}

}  // namespace

const char* to_string(DamageKind kind) {
    switch (kind) {
        case DamageKind::modified:
            return "modified";
        case DamageKind::removed:
            return "removed";
        case DamageKind::reordered:
            return "reordered";
        case DamageKind::inserted:
            return "inserted";
        case DamageKind::truncated:
            return "truncated";
        case DamageKind::bad_signature:
            return "bad_signature";
        case DamageKind::malformed:
            return "malformed";
    }
    return "unknown";
}

std::string Damage::describe() const {
    std::string out = std::string(to_string(kind)) + " at " + file + ":" + std::to_string(line);
    if (seq) out += " (seq " + std::to_string(*seq) + ")";
    return out + ": " + detail;
}

namespace {

// Seen::file of a retention anchor standing in for the record before the
// first kept record of a run.
constexpr size_t kAnchorFile = std::numeric_limits<size_t>::max();

// The tail every audit.pruned record line ends with (type is the last key).
constexpr std::string_view kPrunedTail = ",\"type\":\"audit.pruned\"}";

// A record already checked, kept until the next one decides about it.
struct Seen {
    size_t file = 0;  // index into the segment list, or kAnchorFile
    uint64_t line = 0;
    uint64_t seq = 0;
    Digest leaf{};
};

std::string_view view(const std::array<char, 44>& text) {
    return std::string_view(text.data(), text.size());
}

Result<VerifyReport> verify(const std::string& dir, const crypto::Ed25519PublicKey& public_key) {
    VerifyReport report;
    auto segments = list_segments(dir);
    if (!segments) return std::unexpected(segments.error());
    auto cps = load_checkpoints(dir, public_key, report.damage);
    if (!cps) return std::unexpected(cps.error());
    report.checkpoints = cps->size();
    if (!cps->empty()) report.checkpointed_size = cps->back().cp.tree_size;
    if (report.damage) return report;
    auto anchors = load_anchors(dir, report.damage);
    if (!anchors) return std::unexpected(anchors.error());
    if (report.damage) return report;
    // Anchors in seq order, to notice the ones reached without a gap.
    std::vector<const Anchor*> by_seq;
    for (const auto& an : *anchors) by_seq.push_back(&an);
    std::stable_sort(by_seq.begin(), by_seq.end(), [](const Anchor* x, const Anchor* y) {
        return x->a.first_seq < y->a.first_seq;
    });
    size_t next_anchor = 0;
    auto next_anchor_seq = [&] {
        return next_anchor < by_seq.size() ? by_seq[next_anchor]->a.first_seq
                                           : std::numeric_limits<uint64_t>::max();
    };
    // Anchors bridging a gap, with where the gap ends: each needs its
    // audit.pruned record somewhere in the log.
    struct UsedAnchor {
        const Anchor* anchor;
        Position at;
        uint64_t gap_first;
    };
    std::vector<UsedAnchor> used;
    std::map<std::pair<uint64_t, uint64_t>, uint64_t> pruned;  // range -> seq of its record
    const bool want_pruned = !anchors->empty();

    // The hot loop: one canonical scan and one leaf hash per line, nothing
    // allocated per line (positions are materialised only for damage).
    CanonicalScanner scanner;
    TreeHasher hasher;
    DigestTree tree;
    uint64_t expected = 0;
    std::optional<Seen> last;
    // Record `at` whose prev does not match the record `before` it: either
    // `before` changed, or `at` itself changed (then the next record's prev
    // will not match `at` either). Decided by the next record.
    struct Mismatch {
        Seen before;
        Seen at;
    };
    std::optional<Mismatch> mismatch;
    size_t next_cp = 0;
    while (next_cp < cps->size() && (*cps)[next_cp].cp.tree_size == 0) ++next_cp;
    auto position = [&](const Seen& s) {
        if (s.file == kAnchorFile) return Position{kRetentionFile, s.line};
        return Position{(*segments)[s.file], s.line};
    };
    auto changed_detail = [&](const Seen& culprit, uint64_t next_seq) {
        if (culprit.file == kAnchorFile)
            return "the retention anchor's prev does not match the prev of seq " +
                   std::to_string(next_seq) + ", the first record after the removed ones";
        return "record changed after it was written: its hash no longer matches the prev of seq " +
               std::to_string(next_seq);
    };
    auto culprit_seq = [](const Seen& culprit) {
        return culprit.file == kAnchorFile ? culprit.seq + 1 : culprit.seq;
    };

    for (size_t file = 0; file < segments->size() && !report.damage; ++file) {
        auto reader = LineViewReader::open((fs::path(dir) / (*segments)[file]).string());
        if (!reader) return std::unexpected(reader.error());
        uint64_t line_no = 0;
        std::string_view line;
        bool complete = true;
        while (!report.damage && reader->next(line, complete)) {
            ++line_no;
            auto at_here = [&] { return Position{(*segments)[file], line_no}; };
            if (!complete) {
                report.damage = make_damage(DamageKind::malformed, at_here(), expected,
                                            "incomplete line (a torn write the agent has not "
                                            "recovered yet, or a cut file)");
                break;
            }
            auto head = scanner.scan_record(line);
            if (!head) {
                report.damage =
                    make_damage(DamageKind::malformed, at_here(), expected, head.error().message);
                break;
            }
            const Digest leaf = hasher.leaf(line);
            if (mismatch) {
                const bool at_changed = head->seq == mismatch->at.seq + 1 &&
                                        head->prev_raw != view(base64_digest(mismatch->at.leaf));
                const Seen& culprit = at_changed ? mismatch->at : mismatch->before;
                report.damage =
                    make_damage(DamageKind::modified, position(culprit), culprit_seq(culprit),
                                changed_detail(culprit, culprit.seq + 1));
                break;
            }
            if (want_pruned && line.ends_with(kPrunedTail)) [[unlikely]] {
                if (auto rec = parse_record_line(line); rec && rec->type == kPrunedEventType) {
                    const auto& f = rec->fields;
                    if (f.contains("first_seq") && f["first_seq"].is_number_unsigned() &&
                        f.contains("last_seq") && f["last_seq"].is_number_unsigned())
                        pruned[{f["first_seq"].get<uint64_t>(), f["last_seq"].get<uint64_t>()}] =
                            head->seq;
                }
            }
            const Anchor* bridge = nullptr;
            if (head->seq > expected) {
                // A gap is fine only where retention left an anchor for it.
                for (const auto& an : *anchors)
                    if (an.a.first_seq == head->seq && an.a.removed_first_seq <= expected) {
                        bridge = &an;
                        break;
                    }
            }
            if (bridge) {
                const uint64_t s = head->seq;
                // Checkpoints inside the gap: signatures were checked, roots
                // cannot be (their records are gone).
                while (next_cp < cps->size() && (*cps)[next_cp].cp.tree_size < s) {
                    ++report.checkpoints_before_retention;
                    ++next_cp;
                }
                tree = *DigestTree::from_peaks(s, bridge->frontier);  // shape checked at load
                if (!last) report.first_seq = s;
                ++report.anchors;
                report.removed_by_retention += s - expected;
                used.push_back(UsedAnchor{bridge, at_here(), expected});
                last = Seen{kAnchorFile, bridge->line, s - 1, bridge->prev};
                expected = s;
                while (next_anchor < by_seq.size() && by_seq[next_anchor]->a.first_seq <= s)
                    ++next_anchor;
                while (next_cp < cps->size() && (*cps)[next_cp].cp.tree_size == s) {
                    const auto& lc = (*cps)[next_cp];
                    if (lc.cp.root != view(base64_digest(tree.root(hasher)))) {
                        report.damage = make_damage(
                            DamageKind::modified, Position{kRetentionFile, bridge->line}, s,
                            "the retention anchor's frontier does not give the root signed by "
                            "the checkpoint at " +
                                std::string(kCheckpointsFile) + ":" + std::to_string(lc.line) +
                                " (tree size " + std::to_string(s) + "): a forged frontier");
                        break;
                    }
                    ++next_cp;
                }
                if (report.damage) break;
            } else if (head->seq == expected && expected == next_anchor_seq()) [[unlikely]] {
                // An anchor whose records are all still here (a pruning cut
                // short by a crash): it must describe them exactly.
                while (next_anchor < by_seq.size() &&
                       by_seq[next_anchor]->a.first_seq == expected) {
                    const Anchor& an = *by_seq[next_anchor++];
                    const auto peaks = tree.peaks();
                    const bool same = last && last->leaf == an.prev &&
                                      peaks.size() == an.frontier.size() &&
                                      std::equal(peaks.begin(), peaks.end(), an.frontier.begin());
                    if (!same && !mismatch) {
                        report.damage = make_damage(
                            DamageKind::modified, Position{kRetentionFile, an.line}, expected,
                            "the retention anchor does not match the records before seq " +
                                std::to_string(expected) + " (its frontier or prev differ)");
                        break;
                    }
                }
                if (report.damage) break;
            }
            while (next_anchor < by_seq.size() && by_seq[next_anchor]->a.first_seq < expected)
                ++next_anchor;
            if (head->seq != expected) {
                auto d = head->seq > expected
                             ? classify_jump(dir, at_here(), expected, head->seq)
                             : classify_backwards(dir, at_here(), expected, head->seq);
                if (!d) return std::unexpected(d.error());
                report.damage = std::move(*d);
                break;
            }
            const Seen here{file, line_no, head->seq, leaf};
            // A canonical prev holding a backslash decodes to text with a
            // quote, backslash or control character: never base64, so the
            // raw comparison is the comparison of the decoded values.
            if (!last) {
                if (!head->prev_raw.empty()) {
                    report.damage = make_damage(DamageKind::modified, at_here(), head->seq,
                                                "first record has a non-empty prev");
                    break;
                }
            } else if (head->prev_raw != view(base64_digest(last->leaf))) {
                mismatch = Mismatch{*last, here};
            }
            tree.append(leaf, hasher);
            ++expected;
            last = here;
            while (next_cp < cps->size() && (*cps)[next_cp].cp.tree_size == tree.size()) {
                const auto& lc = (*cps)[next_cp];
                if (!mismatch && lc.cp.root != view(base64_digest(tree.root(hasher)))) {
                    report.damage = make_damage(
                        DamageKind::modified, position(*last), last->seq,
                        "record differs from the one signed by the checkpoint at " +
                            std::string(kCheckpointsFile) + ":" + std::to_string(lc.line) +
                            " (tree size " + std::to_string(lc.cp.tree_size) +
                            "; the chain before it is intact" +
                            (used.empty()
                                 ? std::string()
                                 : std::string("; or the frontier of the retention "
                                               "anchor at ") +
                                       kRetentionFile + ":" +
                                       std::to_string(used.back().anchor->line) + " was forged") +
                            ")");
                    break;
                }
                ++next_cp;
            }
        }
        if (!report.damage && reader->error()) return std::unexpected(*reader->error());
    }
    report.records = tree.size();
    report.root = std::string(view(base64_digest(tree.root(hasher))));
    if (report.damage) return report;
    if (mismatch) {
        report.damage = make_damage(DamageKind::modified, position(mismatch->before),
                                    culprit_seq(mismatch->before),
                                    changed_detail(mismatch->before, mismatch->at.seq));
        return report;
    }
    for (const auto& u : used) {
        const auto& a = u.anchor->a;
        // The record follows the anchor it confirms (step (b) after (a)).
        if (auto it = pruned.find({a.removed_first_seq, a.removed_last_seq});
            it != pruned.end() && it->second >= a.first_seq)
            continue;
        const uint64_t s = a.first_seq;
        report.damage = make_damage(
            DamageKind::removed, u.at, s,
            "seq " + std::to_string(u.gap_first) + ".." + std::to_string(s - 1) +
                " missing before this record: segments removed without an audit.pruned record "
                "(the retention anchor at " +
                kRetentionFile + ":" + std::to_string(u.anchor->line) + " claims seq " +
                std::to_string(a.removed_first_seq) + ".." + std::to_string(a.removed_last_seq) +
                ")");
        return report;
    }
    if (!cps->empty() && cps->back().cp.tree_size > tree.size()) {
        const auto& lc = cps->back();
        Position pos = last ? position(*last)
                            : Position{segments->empty() ? segment_name(1) : segments->front(), 0};
        report.damage = make_damage(
            DamageKind::truncated, pos, last ? std::optional<uint64_t>(last->seq) : std::nullopt,
            "the checkpoint at " + std::string(kCheckpointsFile) + ":" + std::to_string(lc.line) +
                " covers " + std::to_string(lc.cp.tree_size) + " records; the log holds " +
                std::to_string(tree.size()) + " (records after seq " +
                (last ? std::to_string(last->seq) : std::string("-")) + " are missing)");
    }
    return report;
}

}  // namespace

Result<VerifyReport> verify_log(const std::string& dir,
                                const crypto::Ed25519PublicKey& public_key) {
    try {
        return verify(dir, public_key);
    } catch (const std::exception& e) {
        // Only a broken OpenSSL or memory exhaustion get here, never bad input.
        return fail(ErrorCode::internal, std::string("audit verify failed: ") + e.what());
    }
}

}  // namespace sa::agent::audit
