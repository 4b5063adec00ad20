#include "agent/audit/verify.h"

#include <filesystem>
#include <vector>

#include "agent/audit/format.h"
#include "common/crypto/encoding.h"
#include "common/merkle/merkle.h"

namespace sa::agent::audit {
namespace {

namespace fs = std::filesystem;

struct LoadedCheckpoint {
    Checkpoint cp;
    uint64_t line;
};

struct Seen {
    Position pos;
    uint64_t seq;
    merkle::Hash leaf;
};

Damage make_damage(DamageKind kind, const Position& pos, std::optional<uint64_t> seq,
                   std::string detail) {
    return Damage{kind, pos.file, pos.line, seq, std::move(detail)};
}

std::optional<uint64_t> seq_of(std::string_view line) {
    auto rec = parse_record_line(line);
    if (!rec) return std::nullopt;
    return rec->seq;
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

Result<VerifyReport> verify_log(const std::string& dir,
                                const crypto::Ed25519PublicKey& public_key) {
    VerifyReport report;
    auto segments = list_segments(dir);
    if (!segments) return std::unexpected(segments.error());
    auto cps = load_checkpoints(dir, public_key, report.damage);
    if (!cps) return std::unexpected(cps.error());
    report.checkpoints = cps->size();
    if (!cps->empty()) report.checkpointed_size = cps->back().cp.tree_size;
    if (report.damage) return report;

    merkle::CompactTree tree;
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
    Status scan_error;

    auto st = for_each_line(dir, [&](const Position& pos, std::string_view line, bool complete) {
        if (!complete) {
            report.damage = make_damage(DamageKind::malformed, pos, expected,
                                        "incomplete line (a torn write the agent has not "
                                        "recovered yet, or a cut file)");
            return false;
        }
        auto rec = parse_record_line(line);
        if (!rec) {
            report.damage = make_damage(DamageKind::malformed, pos, expected, rec.error().message);
            return false;
        }
        merkle::Hash leaf = merkle::leaf_hash(line);
        if (mismatch) {
            const bool at_changed = rec->seq == mismatch->at.seq + 1 &&
                                    rec->prev != crypto::base64_encode(mismatch->at.leaf);
            const Seen& culprit = at_changed ? mismatch->at : mismatch->before;
            report.damage = make_damage(
                DamageKind::modified, culprit.pos, culprit.seq,
                "record changed after it was written: its hash no longer matches the prev of "
                "seq " +
                    std::to_string(culprit.seq + 1));
            return false;
        }
        if (rec->seq != expected) {
            auto d = rec->seq > expected ? classify_jump(dir, pos, expected, rec->seq)
                                         : classify_backwards(dir, pos, expected, rec->seq);
            if (!d) {
                scan_error = std::unexpected(d.error());
                return false;
            }
            report.damage = std::move(*d);
            return false;
        }
        const std::string want_prev = last ? crypto::base64_encode(last->leaf) : std::string();
        Seen here{pos, rec->seq, leaf};
        if (rec->prev != want_prev) {
            if (!last) {
                report.damage = make_damage(DamageKind::modified, pos, rec->seq,
                                            "first record has a non-empty prev");
                return false;
            }
            mismatch = Mismatch{*last, here};
        }
        tree.append(leaf);
        ++expected;
        last = std::move(here);
        while (next_cp < cps->size() && (*cps)[next_cp].cp.tree_size == tree.size()) {
            const auto& lc = (*cps)[next_cp];
            if (!mismatch && lc.cp.root != crypto::base64_encode(tree.root())) {
                report.damage =
                    make_damage(DamageKind::modified, last->pos, last->seq,
                                "record differs from the one signed by the checkpoint at " +
                                    std::string(kCheckpointsFile) + ":" + std::to_string(lc.line) +
                                    " (tree size " + std::to_string(lc.cp.tree_size) +
                                    "; the chain before it is intact)");
                return false;
            }
            ++next_cp;
        }
        return true;
    });
    if (!st) return std::unexpected(st.error());
    if (!scan_error) return std::unexpected(scan_error.error());
    report.records = tree.size();
    report.root = crypto::base64_encode(tree.root());
    if (report.damage) return report;
    if (mismatch) {
        report.damage = make_damage(
            DamageKind::modified, mismatch->before.pos, mismatch->before.seq,
            "record changed after it was written: its hash no longer matches the prev of seq " +
                std::to_string(mismatch->at.seq));
        return report;
    }
    if (!cps->empty() && cps->back().cp.tree_size > tree.size()) {
        const auto& lc = cps->back();
        Position pos =
            last ? last->pos : Position{segments->empty() ? segment_name(1) : segments->front(), 0};
        report.damage = make_damage(
            DamageKind::truncated, pos, last ? std::optional<uint64_t>(last->seq) : std::nullopt,
            "the checkpoint at " + std::string(kCheckpointsFile) + ":" + std::to_string(lc.line) +
                " covers " + std::to_string(lc.cp.tree_size) + " records; the log holds " +
                std::to_string(tree.size()) + " (records after seq " +
                (last ? std::to_string(last->seq) : std::string("-")) + " are missing)");
    }
    return report;
}

}  // namespace sa::agent::audit
