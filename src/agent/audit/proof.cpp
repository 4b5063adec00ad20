#include "agent/audit/proof.h"

#include <algorithm>
#include <bit>
#include <optional>
#include <span>
#include <vector>

#include "agent/audit/canonical.h"
#include "agent/audit/format.h"
#include "agent/audit/retention.h"
#include "common/crypto/encoding.h"
#include "common/merkle/merkle.h"

namespace sa::agent::audit {
namespace {

using nlohmann::json;

// A run of consecutive records [first, first + leaves.size()); for a run
// after records removed by retention, the frontier of its anchor stands in
// for the tree over [0, first): the roots of the perfect subtrees covering
// it, largest first. Every node a proof for a record of the run (or a
// consistency proof from a size >= first) needs left of `first` is one of
// them: a node of the RFC 9162 tree that ends at or before `first` and is not
// inside a bigger one that does is exactly one of those subtrees.
struct Run {
    uint64_t first = 0;
    std::vector<merkle::Hash> leaves;
    std::vector<merkle::Hash> frontier;
    uint64_t end() const { return first + leaves.size(); }

    // MTH of leaves [a, b) (a < b <= end()).  Nodes that end at or before
    // `first` are split until they are frontier subtrees.
    Result<merkle::Hash> node(uint64_t a, uint64_t b) const {
        if (a >= first)
            return merkle::root_from_leaf_hashes(std::span<const merkle::Hash>(leaves).subspan(
                static_cast<size_t>(a - first), static_cast<size_t>(b - a)));
        if (b <= first) {
            // One of the frontier's subtrees, or several of them (the tree at
            // size `first` itself, say): split below. Inside one, the hashes
            // are gone with the records.
            uint64_t start = 0;
            for (size_t i = 0; i < frontier.size(); ++i) {
                const uint64_t size = std::bit_floor(first - start);
                if (start == a && start + size == b) return frontier[i];
                if (start <= a && b <= start + size)
                    return fail(ErrorCode::not_found,
                                "the proof needs records " + std::to_string(a) + ".." +
                                    std::to_string(b - 1) + ", which were removed by retention");
                start += size;
            }
        }
        const uint64_t k = std::bit_floor(b - a - 1);
        auto left = node(a, a + k);
        if (!left) return left;
        auto right = node(a + k, b);
        if (!right) return right;
        return merkle::node_hash(*left, *right);
    }

    // PATH(m, D[a:b]) of RFC 9162 §2.1.3.1, bottom-up.
    Status path(uint64_t m, uint64_t a, uint64_t b, std::vector<merkle::Hash>& out) const {
        if (b - a <= 1) return {};
        const uint64_t k = std::bit_floor(b - a - 1);
        const bool left = m < k;
        if (auto st = left ? path(m, a, a + k, out) : path(m - k, a + k, b, out); !st) return st;
        auto sibling = left ? node(a + k, b) : node(a, a + k);
        if (!sibling) return std::unexpected(sibling.error());
        out.push_back(std::move(*sibling));
        return {};
    }

    // SUBPROOF(m, D[a:b], complete) of RFC 9162 §2.1.4.1, bottom-up.
    Status subproof(uint64_t m, uint64_t a, uint64_t b, bool complete,
                    std::vector<merkle::Hash>& out) const {
        if (m == b - a) {
            if (complete) return {};
            auto h = node(a, b);
            if (!h) return std::unexpected(h.error());
            out.push_back(std::move(*h));
            return {};
        }
        const uint64_t k = std::bit_floor(b - a - 1);
        const bool left = m <= k;
        if (auto st =
                left ? subproof(m, a, a + k, complete, out) : subproof(m - k, a + k, b, false, out);
            !st)
            return st;
        auto sibling = left ? node(a + k, b) : node(a, a + k);
        if (!sibling) return std::unexpected(sibling.error());
        out.push_back(std::move(*sibling));
        return {};
    }
};

struct LoadedLog {
    std::vector<Run> runs;
    std::vector<LoadedAnchor> anchors;

    const Run* run_containing(uint64_t seq) const {
        for (const auto& r : runs)
            if (seq >= r.first && seq < r.end()) return &r;
        return nullptr;
    }
    // "record N was removed by retention on TS" when an anchor says so.
    std::optional<Error> removed(uint64_t seq) const {
        for (const auto& la : anchors)
            if (seq >= la.anchor.removed_first_seq && seq <= la.anchor.removed_last_seq)
                return Error{ErrorCode::not_found, "record " + std::to_string(seq) +
                                                       " was removed by retention on " +
                                                       la.anchor.ts};
        return std::nullopt;
    }
};

// The records with seq < `count` as runs (and the text of record `keep`).
Result<LoadedLog> load_log(const std::string& dir, uint64_t count, std::optional<uint64_t> keep,
                           std::string* kept_line) {
    LoadedLog log;
    auto anchors = read_anchors(dir);
    if (!anchors) return std::unexpected(anchors.error());
    log.anchors = std::move(*anchors);
    std::optional<Error> problem;
    auto st = for_each_line(dir, [&](const Position& pos, std::string_view line, bool complete) {
        if (!complete) return false;
        auto head = scan_record_line(line);
        if (!head) {
            problem = Error{ErrorCode::integrity, pos.file + ":" + std::to_string(pos.line) + ": " +
                                                      head.error().message +
                                                      "; run `secure-agent audit verify`"};
            return false;
        }
        if (head->seq >= count) return false;
        if (log.runs.empty() || head->seq != log.runs.back().end()) {
            Run run;
            run.first = head->seq;
            if (run.first > 0) {
                const LoadedAnchor* found = nullptr;
                for (const auto& la : log.anchors)
                    if (la.anchor.first_seq == run.first) found = &la;
                if (!found || (!log.runs.empty() && head->seq < log.runs.back().end())) {
                    problem = Error{ErrorCode::integrity,
                                    "records before seq " + std::to_string(head->seq) + " at " +
                                        pos.file + ":" + std::to_string(pos.line) +
                                        " are missing or out of order; run `secure-agent audit "
                                        "verify`"};
                    return false;
                }
                for (const auto& f : found->anchor.frontier)
                    run.frontier.push_back(*crypto::base64_decode(f));
            }
            log.runs.push_back(std::move(run));
        }
        if (keep && *keep == head->seq && kept_line) *kept_line = std::string(line);
        log.runs.back().leaves.push_back(merkle::leaf_hash(line));
        return true;
    });
    if (!st) return std::unexpected(st.error());
    if (problem) return std::unexpected(*problem);
    const uint64_t held = log.runs.empty() ? 0 : log.runs.back().end();
    if (held < count)
        return fail(ErrorCode::integrity, "the log holds " + std::to_string(held) +
                                              " records, fewer than the checkpoint's " +
                                              std::to_string(count) +
                                              "; run `secure-agent audit verify`");
    return log;
}

Result<Checkpoint> checkpoint_with_size(const std::vector<Checkpoint>& cps, uint64_t size) {
    for (auto it = cps.rbegin(); it != cps.rend(); ++it)
        if (it->tree_size == size) return *it;
    return fail(ErrorCode::invalid_argument,
                "tree size " + std::to_string(size) + " is not the size of a checkpoint");
}

json encode_proof(const std::vector<merkle::Hash>& proof) {
    json out = json::array();
    for (const auto& h : proof) out.push_back(crypto::base64_encode(h));
    return out;
}

Status check_root(const merkle::Hash& computed, const Checkpoint& cp) {
    if (crypto::base64_encode(computed) != cp.root)
        return fail(ErrorCode::integrity,
                    "the records no longer match the checkpoint of tree size " +
                        std::to_string(cp.tree_size) + "; run `secure-agent audit verify`");
    return {};
}

Result<std::string> get_hash(const json& doc, const char* key) {
    auto it = doc.find(key);
    if (it == doc.end() || !it->is_string())
        return fail(ErrorCode::invalid_argument, std::string("proof field ") + key + " missing");
    auto raw = crypto::base64_decode(it->get<std::string>());
    if (!raw || raw->size() != 32)
        return fail(ErrorCode::invalid_argument,
                    std::string("proof field ") + key + " is not base64 of 32 bytes");
    return *raw;
}

Result<uint64_t> get_uint(const json& doc, const char* key) {
    auto it = doc.find(key);
    if (it == doc.end() || !it->is_number_unsigned())
        return fail(ErrorCode::invalid_argument,
                    std::string("proof field ") + key + " missing or not an integer");
    return it->get<uint64_t>();
}

Result<std::vector<merkle::Hash>> get_path(const json& doc) {
    auto it = doc.find("proof");
    if (it == doc.end() || !it->is_array())
        return fail(ErrorCode::invalid_argument, "proof field proof missing or not an array");
    std::vector<merkle::Hash> out;
    for (const auto& h : *it) {
        if (!h.is_string()) return fail(ErrorCode::invalid_argument, "proof hash is not a string");
        auto raw = crypto::base64_decode(h.get<std::string>());
        if (!raw || raw->size() != 32)
            return fail(ErrorCode::invalid_argument, "proof hash is not base64 of 32 bytes");
        out.push_back(std::move(*raw));
    }
    return out;
}

// The checkpoint under `key` is validly signed and signs (size, root).
Status check_signed(const json& doc, const char* key, uint64_t size, const std::string& root,
                    const crypto::Ed25519PublicKey& public_key) {
    auto it = doc.find(key);
    if (it == doc.end())
        return fail(ErrorCode::integrity, std::string("proof has no ") + key + " to check");
    auto cp = checkpoint_from_json(*it);
    if (!cp) return std::unexpected(cp.error());
    if (auto st = verify_checkpoint(*cp, public_key); !st) return st;
    if (cp->tree_size != size || cp->root != crypto::base64_encode(root))
        return fail(ErrorCode::integrity,
                    std::string(key) + " does not sign this tree size and root");
    return {};
}

}  // namespace

Result<json> inclusion_proof(const std::string& dir, uint64_t index) {
    auto cps = read_checkpoints(dir);
    if (!cps) return std::unexpected(cps.error());
    if (cps->empty()) return fail(ErrorCode::not_found, "no checkpoint in " + dir);
    if (index >= cps->back().tree_size)
        return fail(ErrorCode::invalid_argument, "index " + std::to_string(index) +
                                                     " is not covered by the latest checkpoint (" +
                                                     std::to_string(cps->back().tree_size) +
                                                     " records)");
    std::string record;
    auto log = load_log(dir, cps->back().tree_size, index, &record);
    if (!log) return std::unexpected(log.error());
    const Run* run = log->run_containing(index);
    if (!run) {
        if (auto removed = log->removed(index)) return std::unexpected(*removed);
        return fail(ErrorCode::integrity, "record " + std::to_string(index) +
                                              " is missing; run `secure-agent audit verify`");
    }
    // The latest checkpoint, unless records after `index` that it covers
    // were removed by retention (a preserved segment before a gap): then the
    // latest one that ends within the run.
    const Checkpoint* cp = nullptr;
    for (auto it = cps->rbegin(); it != cps->rend() && !cp; ++it)
        if (it->tree_size > index && it->tree_size <= run->end()) cp = &*it;
    if (!cp)
        return fail(ErrorCode::not_found,
                    "no checkpoint covers record " + std::to_string(index) +
                        " without records after it that were removed by retention");
    auto root = run->node(0, cp->tree_size);
    if (!root) return std::unexpected(root.error());
    if (auto st = check_root(*root, *cp); !st) return std::unexpected(st.error());
    std::vector<merkle::Hash> path;
    if (auto st = run->path(index, 0, cp->tree_size, path); !st) return std::unexpected(st.error());
    return json{
        {"kind", "inclusion"},
        {"index", index},
        {"tree_size", cp->tree_size},
        {"leaf_hash", crypto::base64_encode(run->leaves[static_cast<size_t>(index - run->first)])},
        {"root", cp->root},
        {"proof", encode_proof(path)},
        {"record", record},
        {"checkpoint", to_json(*cp)}};
}

Result<json> consistency_proof(const std::string& dir, uint64_t size1, uint64_t size2) {
    if (size1 == 0 || size1 > size2)
        return fail(ErrorCode::invalid_argument, "consistency proof needs 0 < from <= to");
    auto cps = read_checkpoints(dir);
    if (!cps) return std::unexpected(cps.error());
    auto cp1 = checkpoint_with_size(*cps, size1);
    if (!cp1) return std::unexpected(cp1.error());
    auto cp2 = checkpoint_with_size(*cps, size2);
    if (!cp2) return std::unexpected(cp2.error());
    auto log = load_log(dir, size2, std::nullopt, nullptr);
    if (!log) return std::unexpected(log.error());
    // One run must hold every record from size1 on (the tree at size1 may
    // end exactly where the run's anchor starts).
    const Run* run = nullptr;
    for (const auto& r : log->runs)
        if (r.first <= size1) run = &r;
    if (!run) {
        if (auto removed = log->removed(size1 - 1)) return std::unexpected(*removed);
        return fail(ErrorCode::integrity, "records before tree size " + std::to_string(size1) +
                                              " are missing; run `secure-agent audit verify`");
    }
    if (run->end() < size2) {
        if (auto removed = log->removed(run->end())) return std::unexpected(*removed);
        return fail(ErrorCode::integrity, "record " + std::to_string(run->end()) +
                                              " is missing; run `secure-agent audit verify`");
    }
    auto root1 = run->node(0, size1);
    if (!root1) return std::unexpected(root1.error());
    if (auto st = check_root(*root1, *cp1); !st) return std::unexpected(st.error());
    auto root2 = run->node(0, size2);
    if (!root2) return std::unexpected(root2.error());
    if (auto st = check_root(*root2, *cp2); !st) return std::unexpected(st.error());
    std::vector<merkle::Hash> path;
    if (auto st = run->subproof(size1, 0, size2, true, path); !st)
        return std::unexpected(st.error());
    return json{{"kind", "consistency"},         {"tree_size_1", size1},
                {"tree_size_2", size2},          {"root_1", cp1->root},
                {"root_2", cp2->root},           {"proof", encode_proof(path)},
                {"checkpoint_1", to_json(*cp1)}, {"checkpoint_2", to_json(*cp2)}};
}

Status verify_proof(const json& doc, const crypto::Ed25519PublicKey* public_key) {
    if (!doc.is_object() || !doc.contains("kind") || !doc["kind"].is_string())
        return fail(ErrorCode::invalid_argument, "not a proof document (no kind)");
    const std::string kind = doc["kind"].get<std::string>();
    auto path = get_path(doc);
    if (!path) return std::unexpected(path.error());
    if (kind == "inclusion") {
        auto index = get_uint(doc, "index");
        auto size = get_uint(doc, "tree_size");
        auto leaf = get_hash(doc, "leaf_hash");
        auto root = get_hash(doc, "root");
        for (const Status& st : {index ? Status{} : std::unexpected(index.error()),
                                 size ? Status{} : std::unexpected(size.error()),
                                 leaf ? Status{} : std::unexpected(leaf.error()),
                                 root ? Status{} : std::unexpected(root.error())})
            if (!st) return st;
        if (auto it = doc.find("record"); it != doc.end()) {
            if (!it->is_string() || merkle::leaf_hash(it->get<std::string>()) != *leaf)
                return fail(ErrorCode::integrity, "the record does not match leaf_hash");
        }
        if (auto st = merkle::verify_inclusion(*index, *size, *leaf, *path, *root); !st)
            return fail(ErrorCode::integrity,
                        "inclusion proof does not verify: " + st.error().message);
        if (public_key) return check_signed(doc, "checkpoint", *size, *root, *public_key);
        return {};
    }
    if (kind == "consistency") {
        auto size1 = get_uint(doc, "tree_size_1");
        auto size2 = get_uint(doc, "tree_size_2");
        auto root1 = get_hash(doc, "root_1");
        auto root2 = get_hash(doc, "root_2");
        for (const Status& st : {size1 ? Status{} : std::unexpected(size1.error()),
                                 size2 ? Status{} : std::unexpected(size2.error()),
                                 root1 ? Status{} : std::unexpected(root1.error()),
                                 root2 ? Status{} : std::unexpected(root2.error())})
            if (!st) return st;
        if (auto st = merkle::verify_consistency(*size1, *size2, *root1, *root2, *path); !st)
            return fail(ErrorCode::integrity,
                        "consistency proof does not verify: " + st.error().message);
        if (public_key) {
            if (auto st = check_signed(doc, "checkpoint_1", *size1, *root1, *public_key); !st)
                return st;
            return check_signed(doc, "checkpoint_2", *size2, *root2, *public_key);
        }
        return {};
    }
    return fail(ErrorCode::invalid_argument, "unknown proof kind " + kind);
}

}  // namespace sa::agent::audit
