#pragma once
// Merkle tree hashing and proofs exactly as RFC 9162 (Certificate
// Transparency 2.0, section 2.1) defines them, which keeps RFC 6962's hashes:
//   leaf hash  = SHA-256(0x00 || leaf)
//   node hash  = SHA-256(0x01 || left || right)
//   MTH({})    = SHA-256("")
// Hashes are 32 raw bytes (std::string). Proofs are lists of hashes.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace sa::merkle {

using Hash = std::string;  // 32 raw bytes

Hash leaf_hash(std::string_view leaf);
Hash node_hash(std::string_view left, std::string_view right);
Hash empty_root();

// Root of the tree over leaf hashes [0, n).
Hash root_from_leaf_hashes(std::span<const Hash> leaf_hashes);

// RFC 9162 §2.1.3.1: inclusion proof for leaf `index` in the tree of the
// first `tree_size` leaves. Errors: invalid_argument when index >= tree_size
// or tree_size > leaf_hashes.size().
Result<std::vector<Hash>> inclusion_proof(std::span<const Hash> leaf_hashes, uint64_t index,
                                          uint64_t tree_size);

// RFC 9162 §2.1.3.2: verifies an inclusion proof. integrity error on mismatch.
Status verify_inclusion(uint64_t index, uint64_t tree_size, std::string_view leaf_hash,
                        std::span<const Hash> proof, std::string_view root);

// RFC 9162 §2.1.4.1: consistency proof between the trees of the first
// `old_size` and `new_size` leaves (0 < old_size <= new_size).
Result<std::vector<Hash>> consistency_proof(std::span<const Hash> leaf_hashes, uint64_t old_size,
                                            uint64_t new_size);

// RFC 9162 §2.1.4.2: verifies a consistency proof. integrity error on mismatch.
Status verify_consistency(uint64_t old_size, uint64_t new_size, std::string_view old_root,
                          std::string_view new_root, std::span<const Hash> proof);

// Incremental root over a stream of leaves with O(log n) memory: the audit
// log appends leaves one at a time and needs the root at any size.
class CompactTree final {
  public:
    void append(const Hash& leaf_hash);
    uint64_t size() const { return size_; }
    Hash root() const;

  private:
    uint64_t size_ = 0;
    std::vector<Hash> peaks_;  // peaks_[i] covers a perfect subtree; bits of size_
};

}  // namespace sa::merkle
