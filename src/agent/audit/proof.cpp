#include "agent/audit/proof.h"

#include <algorithm>
#include <vector>

#include "agent/audit/format.h"
#include "common/crypto/encoding.h"
#include "common/merkle/merkle.h"

namespace sa::agent::audit {
namespace {

using nlohmann::json;

// Leaf hashes of the first `count` records (and the text of record `keep`).
Result<std::vector<merkle::Hash>> load_leaves(const std::string& dir, uint64_t count,
                                              std::optional<uint64_t> keep,
                                              std::string* kept_line) {
    std::vector<merkle::Hash> leaves;
    // count comes from a file: reserve only a bounded amount up front.
    leaves.reserve(static_cast<size_t>(std::min<uint64_t>(count, uint64_t{1} << 20)));
    auto st = for_each_line(dir, [&](const Position&, std::string_view line, bool complete) {
        if (leaves.size() >= count || !complete) return false;
        if (keep && *keep == leaves.size() && kept_line) *kept_line = std::string(line);
        leaves.push_back(merkle::leaf_hash(line));
        return true;
    });
    if (!st) return std::unexpected(st.error());
    if (leaves.size() < count)
        return fail(ErrorCode::integrity, "the log holds " + std::to_string(leaves.size()) +
                                              " records, fewer than the checkpoint's " +
                                              std::to_string(count) +
                                              "; run `secure-agent audit verify`");
    return leaves;
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
    const Checkpoint& cp = cps->back();
    if (index >= cp.tree_size)
        return fail(ErrorCode::invalid_argument, "index " + std::to_string(index) +
                                                     " is not covered by the latest checkpoint (" +
                                                     std::to_string(cp.tree_size) + " records)");
    std::string record;
    auto leaves = load_leaves(dir, cp.tree_size, index, &record);
    if (!leaves) return std::unexpected(leaves.error());
    if (auto st = check_root(merkle::root_from_leaf_hashes(*leaves), cp); !st)
        return std::unexpected(st.error());
    auto path = merkle::inclusion_proof(*leaves, index, cp.tree_size);
    if (!path) return std::unexpected(path.error());
    return json{{"kind", "inclusion"},
                {"index", index},
                {"tree_size", cp.tree_size},
                {"leaf_hash", crypto::base64_encode((*leaves)[static_cast<size_t>(index)])},
                {"root", cp.root},
                {"proof", encode_proof(*path)},
                {"record", record},
                {"checkpoint", to_json(cp)}};
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
    auto leaves = load_leaves(dir, size2, std::nullopt, nullptr);
    if (!leaves) return std::unexpected(leaves.error());
    std::span<const merkle::Hash> all(*leaves);
    if (auto st = check_root(merkle::root_from_leaf_hashes(all.first(size1)), *cp1); !st)
        return std::unexpected(st.error());
    if (auto st = check_root(merkle::root_from_leaf_hashes(all), *cp2); !st)
        return std::unexpected(st.error());
    auto path = merkle::consistency_proof(*leaves, size1, size2);
    if (!path) return std::unexpected(path.error());
    return json{{"kind", "consistency"},         {"tree_size_1", size1},
                {"tree_size_2", size2},          {"root_1", cp1->root},
                {"root_2", cp2->root},           {"proof", encode_proof(*path)},
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
