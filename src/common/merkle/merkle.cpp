#include "common/merkle/merkle.h"

#include <bit>
#include <string>
#include <utility>

#include "common/crypto/digest.h"

namespace sa::merkle {
namespace {

constexpr size_t kHashSize = 32;

// RFC 9162 §2.1.1: k is the largest power of two smaller than n (n > 1).
uint64_t split_point(uint64_t n) {
    return std::bit_floor(n - 1);
}

// MTH(D[n]) over leaf hashes, recursively as §2.1.1 defines it.
Hash subtree_root(std::span<const Hash> leaves) {
    if (leaves.empty()) return empty_root();
    if (leaves.size() == 1) return leaves[0];
    const uint64_t k = split_point(leaves.size());
    return node_hash(subtree_root(leaves.first(k)), subtree_root(leaves.subspan(k)));
}

// PATH(m, D[n]) of §2.1.3.1, appended to `out` bottom-up.
void path(uint64_t m, std::span<const Hash> leaves, std::vector<Hash>& out) {
    if (leaves.size() <= 1) return;
    const uint64_t k = split_point(leaves.size());
    if (m < k) {
        path(m, leaves.first(k), out);
        out.push_back(subtree_root(leaves.subspan(k)));
    } else {
        path(m - k, leaves.subspan(k), out);
        out.push_back(subtree_root(leaves.first(k)));
    }
}

// SUBPROOF(m, D[n], b) of §2.1.4.1, appended to `out` bottom-up.
void subproof(uint64_t m, std::span<const Hash> leaves, bool complete_subtree,
              std::vector<Hash>& out) {
    if (m == leaves.size()) {
        // The old tree is this whole subtree: its hash is only needed when the
        // verifier cannot know it already (it is not the old root itself).
        if (!complete_subtree) out.push_back(subtree_root(leaves));
        return;
    }
    const uint64_t k = split_point(leaves.size());
    if (m <= k) {
        subproof(m, leaves.first(k), complete_subtree, out);
        out.push_back(subtree_root(leaves.subspan(k)));
    } else {
        subproof(m - k, leaves.subspan(k), false, out);
        out.push_back(subtree_root(leaves.first(k)));
    }
}

bool all_hash_sized(std::span<const Hash> proof) {
    for (const Hash& h : proof)
        if (h.size() != kHashSize) return false;
    return true;
}

// Right-shifts fn and sn together until fn's lowest bit is set or fn is 0
// (the "move up past the levels where we are a left child" step of §2.1.3.2
// and §2.1.4.2).
void shift_while_left_child(uint64_t& fn, uint64_t& sn) {
    while ((fn & 1) == 0 && fn != 0) {
        fn >>= 1;
        sn >>= 1;
    }
}

}  // namespace

Hash leaf_hash(std::string_view leaf) {
    crypto::Sha256 h;
    h.update(std::string_view("\x00", 1));
    h.update(leaf);
    return h.finish();
}

Hash node_hash(std::string_view left, std::string_view right) {
    crypto::Sha256 h;
    h.update(std::string_view("\x01", 1));
    h.update(left);
    h.update(right);
    return h.finish();
}

Hash empty_root() {
    return crypto::sha256("");
}

Hash root_from_leaf_hashes(std::span<const Hash> leaf_hashes) {
    return subtree_root(leaf_hashes);
}

Result<std::vector<Hash>> inclusion_proof(std::span<const Hash> leaf_hashes, uint64_t index,
                                          uint64_t tree_size) {
    if (tree_size > leaf_hashes.size())
        return fail(ErrorCode::invalid_argument, "merkle: tree size exceeds the number of leaves");
    if (index >= tree_size)
        return fail(ErrorCode::invalid_argument, "merkle: leaf index outside the tree");
    std::vector<Hash> out;
    path(index, leaf_hashes.first(tree_size), out);
    return out;
}

Status verify_inclusion(uint64_t index, uint64_t tree_size, std::string_view leaf_hash,
                        std::span<const Hash> proof, std::string_view root) {
    // Step numbers follow RFC 9162 §2.1.3.2.
    // 1. An index outside the tree can never be proven.
    if (index >= tree_size)
        return fail(ErrorCode::integrity, "merkle: inclusion proof for an index outside the tree");
    if (leaf_hash.size() != kHashSize || !all_hash_sized(proof))
        return fail(ErrorCode::integrity, "merkle: inclusion proof has a malformed hash");
    // 2.-3.
    uint64_t fn = index;
    uint64_t sn = tree_size - 1;
    Hash r(leaf_hash);
    // 4.
    for (const Hash& p : proof) {
        // a. More proof than levels: the proof is too long.
        if (sn == 0) return fail(ErrorCode::integrity, "merkle: inclusion proof is too long");
        // b.
        if ((fn & 1) == 1 || fn == sn) {
            r = node_hash(p, r);
            shift_while_left_child(fn, sn);
        } else {
            r = node_hash(r, p);
        }
        // c.
        fn >>= 1;
        sn >>= 1;
    }
    // 5. sn != 0 means levels were left over: the proof is too short.
    if (sn != 0) return fail(ErrorCode::integrity, "merkle: inclusion proof is too short");
    if (!crypto::equal_constant_time(r, root))
        return fail(ErrorCode::integrity, "merkle: inclusion proof does not match the root");
    return {};
}

Result<std::vector<Hash>> consistency_proof(std::span<const Hash> leaf_hashes, uint64_t old_size,
                                            uint64_t new_size) {
    if (new_size > leaf_hashes.size())
        return fail(ErrorCode::invalid_argument, "merkle: tree size exceeds the number of leaves");
    if (old_size == 0 || old_size > new_size)
        return fail(ErrorCode::invalid_argument,
                    "merkle: consistency proof needs 0 < old size <= new size");
    // PROOF(m, D[n]) = SUBPROOF(m, D[n], true); for m == n that is empty.
    std::vector<Hash> out;
    subproof(old_size, leaf_hashes.first(new_size), true, out);
    return out;
}

Status verify_consistency(uint64_t old_size, uint64_t new_size, std::string_view old_root,
                          std::string_view new_root, std::span<const Hash> proof) {
    if (old_size == 0 || old_size > new_size)
        return fail(ErrorCode::integrity,
                    "merkle: consistency proof needs 0 < old size <= new size");
    if (!all_hash_sized(proof))
        return fail(ErrorCode::integrity, "merkle: consistency proof has a malformed hash");
    // §2.1.4.2 covers old < new; the same tree is consistent with itself only
    // through an empty proof and identical roots.
    if (old_size == new_size) {
        if (!proof.empty())
            return fail(ErrorCode::integrity,
                        "merkle: consistency proof for equal sizes not empty");
        if (old_root.size() != kHashSize || !crypto::equal_constant_time(old_root, new_root))
            return fail(ErrorCode::integrity, "merkle: roots differ for equal tree sizes");
        return {};
    }
    // Step numbers follow RFC 9162 §2.1.4.2.
    // 1.
    if (proof.empty()) return fail(ErrorCode::integrity, "merkle: consistency proof is empty");
    // 2. When the old tree is a perfect subtree the proof omits its root; the
    // verifier supplies it instead of copying the proof into a new array.
    const bool old_is_perfect = std::has_single_bit(old_size);
    std::span<const Hash> rest = old_is_perfect ? proof : proof.subspan(1);
    // 3.-4.
    uint64_t fn = old_size - 1;
    uint64_t sn = new_size - 1;
    while ((fn & 1) == 1) {
        fn >>= 1;
        sn >>= 1;
    }
    // 5.
    Hash fr = old_is_perfect ? Hash(old_root) : proof.front();
    Hash sr = fr;
    // 6.
    for (const Hash& c : rest) {
        if (sn == 0) return fail(ErrorCode::integrity, "merkle: consistency proof is too long");
        if ((fn & 1) == 1 || fn == sn) {
            fr = node_hash(c, fr);
            sr = node_hash(c, sr);
            shift_while_left_child(fn, sn);
        } else {
            sr = node_hash(sr, c);
        }
        fn >>= 1;
        sn >>= 1;
    }
    // 7.
    if (sn != 0) return fail(ErrorCode::integrity, "merkle: consistency proof is too short");
    const bool old_ok = crypto::equal_constant_time(fr, old_root);
    const bool new_ok = crypto::equal_constant_time(sr, new_root);
    if (!old_ok || !new_ok)
        return fail(ErrorCode::integrity, "merkle: consistency proof does not match the roots");
    return {};
}

void CompactTree::append(const Hash& leaf_hash) {
    // Each set bit of size_ owns one peak, smallest last. Adding a leaf is a
    // binary increment: every trailing one bit is a peak of the same height as
    // the carry, so it merges (older peak on the left) and moves up.
    Hash carry = leaf_hash;
    for (uint64_t s = size_; (s & 1) == 1; s >>= 1) {
        carry = node_hash(peaks_.back(), carry);
        peaks_.pop_back();
    }
    peaks_.push_back(std::move(carry));
    ++size_;
}

Hash CompactTree::root() const {
    if (peaks_.empty()) return empty_root();
    // MTH splits at the largest power of two, so the tree is the leftmost
    // peak joined with the tree of the remaining peaks: fold right-to-left.
    Hash r = peaks_.back();
    for (size_t i = peaks_.size() - 1; i-- > 0;) r = node_hash(peaks_[i], r);
    return r;
}

}  // namespace sa::merkle
