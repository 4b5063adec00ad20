#include "common/merkle/merkle.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"

namespace sa::merkle {
namespace {

std::string unhex(std::string_view hex) {
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        ADD_FAILURE() << "bad hex digit in test vector";
        return 0;
    };
    std::string out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2)
        out.push_back(static_cast<char>(nibble(hex[i]) * 16 + nibble(hex[i + 1])));
    return out;
}

std::vector<Hash> unhex_all(std::initializer_list<std::string_view> hexes) {
    std::vector<Hash> out;
    for (auto h : hexes) out.push_back(unhex(h));
    return out;
}

// The classic RFC 6962 test tree: eight leaves, published roots for every
// size and published inclusion and consistency proofs. Origin: the
// certificate-transparency reference implementation's Merkle tree tests,
// as carried on in github.com/transparency-dev/merkle, proof/verify_test.go
// (variables `leaves`, `roots`, `inclusionProofs`, `consistencyProofs`;
// that file numbers leaves from 1, the indexes below are 0-based).
std::vector<Hash> reference_leaf_hashes() {
    std::vector<Hash> out;
    for (auto leaf : {"", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                      "606162636465666768696a6b6c6d6e6f"})
        out.push_back(leaf_hash(unhex(leaf)));
    return out;
}

const std::vector<Hash>& reference_roots() {
    static const std::vector<Hash> roots = unhex_all({
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    });
    return roots;
}

std::vector<Hash> numbered_leaf_hashes(size_t n) {
    std::vector<Hash> out;
    for (size_t i = 0; i < n; ++i) out.push_back(leaf_hash("leaf " + std::to_string(i)));
    return out;
}

Hash flipped(Hash h, size_t pos) {
    h[pos % h.size()] ^= 0x10;
    return h;
}

std::vector<Hash> with_element(const std::vector<Hash>& proof, size_t pos, size_t flip_byte) {
    std::vector<Hash> out = proof;
    out[pos] = flipped(out[pos], flip_byte);
    return out;
}

// Independent description of an inclusion path's shape, straight from the
// recursive PATH definition: for each level bottom-up, whether the sibling
// is on the left. Verification with a different tree size can only succeed
// when the shape is the same (the size is bound by the signed tree head,
// not by the proof).
void path_shape(uint64_t m, uint64_t n, std::vector<bool>& out) {
    if (n <= 1) return;
    uint64_t k = 1;
    while (k * 2 < n) k *= 2;
    if (m < k) {
        path_shape(m, k, out);
        out.push_back(false);
    } else {
        path_shape(m - k, n - k, out);
        out.push_back(true);
    }
}

std::vector<bool> path_shape(uint64_t m, uint64_t n) {
    std::vector<bool> out;
    path_shape(m, n, out);
    return out;
}

// The same for a consistency proof, from the recursive SUBPROOF definition:
// per element, whether it is the old subtree's own hash ('S'), a right
// sibling only in the new tree ('R') or a left sibling in both ('L').
void consistency_shape(uint64_t m, uint64_t n, bool complete, std::string& out) {
    if (m == n) {
        if (!complete) out.push_back('S');
        return;
    }
    uint64_t k = 1;
    while (k * 2 < n) k *= 2;
    if (m <= k) {
        consistency_shape(m, k, complete, out);
        out.push_back('R');
    } else {
        consistency_shape(m - k, n - k, false, out);
        out.push_back('L');
    }
}

std::string consistency_shape(uint64_t m, uint64_t n) {
    std::string out;
    consistency_shape(m, n, true, out);
    return out;
}

TEST(Merkle, EmptyRootIsSha256OfNothing) {
    EXPECT_EQ(crypto::hex_encode(empty_root()),
              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(root_from_leaf_hashes({}), empty_root());
    EXPECT_EQ(CompactTree().root(), empty_root());
}

TEST(Merkle, DomainSeparatedHashes) {
    EXPECT_EQ(leaf_hash("abc"), crypto::sha256(std::string("\0abc", 4)));
    EXPECT_EQ(node_hash("ab", "cd"), crypto::sha256("\x01"
                                                    "abcd"));
    EXPECT_NE(leaf_hash(""), empty_root());
}

TEST(Merkle, PublishedRootsForSizes1To8) {
    const auto leaves = reference_leaf_hashes();
    const auto& roots = reference_roots();
    for (size_t n = 1; n <= 8; ++n) {
        EXPECT_EQ(crypto::hex_encode(root_from_leaf_hashes(std::span(leaves).first(n))),
                  crypto::hex_encode(roots[n - 1]))
            << "size " << n;
    }
}

TEST(Merkle, PublishedInclusionProofs) {
    struct Vector {
        uint64_t index, size;
        std::vector<Hash> proof;
    };
    const std::vector<Vector> vectors = {
        {0, 1, {}},
        {0, 8,
         unhex_all({"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"})},
        {5, 8,
         unhex_all({"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"})},
        {2, 3, unhex_all({"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"})},
        {1, 5,
         unhex_all({"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"})},
    };
    const auto leaves = reference_leaf_hashes();
    const auto& roots = reference_roots();
    for (const auto& v : vectors) {
        SCOPED_TRACE("index " + std::to_string(v.index) + " size " + std::to_string(v.size));
        auto proof = inclusion_proof(leaves, v.index, v.size);
        ASSERT_TRUE(proof) << proof.error().describe();
        EXPECT_EQ(*proof, v.proof);
        auto ok = verify_inclusion(v.index, v.size, leaves[v.index], v.proof, roots[v.size - 1]);
        EXPECT_TRUE(ok) << ok.error().describe();
    }
}

TEST(Merkle, PublishedConsistencyProofs) {
    struct Vector {
        uint64_t old_size, new_size;
        std::vector<Hash> proof;
    };
    const std::vector<Vector> vectors = {
        {1, 1, {}},
        {1, 8,
         unhex_all({"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"})},
        {6, 8,
         unhex_all({"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"})},
        {2, 5,
         unhex_all({"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"})},
        {6, 7,
         unhex_all({"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"})},
    };
    const auto leaves = reference_leaf_hashes();
    const auto& roots = reference_roots();
    for (const auto& v : vectors) {
        SCOPED_TRACE("old " + std::to_string(v.old_size) + " new " + std::to_string(v.new_size));
        auto proof = consistency_proof(leaves, v.old_size, v.new_size);
        ASSERT_TRUE(proof) << proof.error().describe();
        EXPECT_EQ(*proof, v.proof);
        auto ok = verify_consistency(v.old_size, v.new_size, roots[v.old_size - 1],
                                     roots[v.new_size - 1], v.proof);
        EXPECT_TRUE(ok) << ok.error().describe();
    }
}

TEST(Merkle, InclusionRoundTripAndTamperingForEverySizeUpTo70) {
    constexpr uint64_t kMax = 70;
    const auto leaves = numbered_leaf_hashes(kMax);
    std::vector<Hash> roots;  // roots[n] = MTH of the first n leaves
    for (uint64_t n = 0; n <= kMax; ++n)
        roots.push_back(root_from_leaf_hashes(std::span(leaves).first(n)));
    const Hash zero(32, '\0');
    int neighbour_sizes_passing = 0;
    int neighbour_sizes_failing = 0;

    for (uint64_t n = 1; n <= kMax; ++n) {
        for (uint64_t i = 0; i < n; ++i) {
            SCOPED_TRACE("index " + std::to_string(i) + " size " + std::to_string(n));
            auto proof_or = inclusion_proof(leaves, i, n);
            ASSERT_TRUE(proof_or);
            const std::vector<Hash>& proof = *proof_or;
            const Hash& leaf = leaves[i];
            const Hash& root = roots[n];
            ASSERT_TRUE(verify_inclusion(i, n, leaf, proof, root));

            // Tampered leaf, root or any proof element.
            EXPECT_FALSE(verify_inclusion(i, n, flipped(leaf, i), proof, root));
            EXPECT_FALSE(verify_inclusion(i, n, leaf, proof, flipped(root, n)));
            for (size_t j = 0; j < proof.size(); ++j)
                EXPECT_FALSE(verify_inclusion(i, n, leaf, with_element(proof, j, i + j), root))
                    << "element " << j;

            // Wrong index (a path's shape pins the index for a given size).
            for (uint64_t wrong : {i - 1, i + 1, i ^ 1, i ^ 2, n}) {
                if (wrong == i) continue;
                EXPECT_FALSE(verify_inclusion(wrong, n, leaf, proof, root)) << "index " << wrong;
            }

            // Wrong size: doubling or halving always changes the path length.
            // n +- 1 keeps it exactly when the shape is unchanged, which the
            // verifier cannot detect (the size comes from the signed head).
            EXPECT_FALSE(verify_inclusion(i, 2 * n, leaf, proof, root));
            EXPECT_FALSE(verify_inclusion(i, n / 2, leaf, proof, root));
            for (uint64_t other : {n - 1, n + 1}) {
                if (i >= other) {
                    EXPECT_FALSE(verify_inclusion(i, other, leaf, proof, root));
                    continue;
                }
                const bool same_shape = path_shape(i, other) == path_shape(i, n);
                const bool ok = verify_inclusion(i, other, leaf, proof, root).has_value();
                EXPECT_EQ(ok, same_shape) << "size " << other;
                ++(ok ? neighbour_sizes_passing : neighbour_sizes_failing);
            }

            // One element more or less.
            auto longer = proof;
            longer.push_back(zero);
            EXPECT_FALSE(verify_inclusion(i, n, leaf, longer, root));
            longer.back() = root;
            EXPECT_FALSE(verify_inclusion(i, n, leaf, longer, root));
            auto prefixed = proof;
            prefixed.insert(prefixed.begin(), leaf);
            EXPECT_FALSE(verify_inclusion(i, n, leaf, prefixed, root));
            if (!proof.empty()) {
                EXPECT_FALSE(
                    verify_inclusion(i, n, leaf, std::span(proof).first(proof.size() - 1), root));
                EXPECT_FALSE(verify_inclusion(i, n, leaf, std::span(proof).subspan(1), root));
            }
        }
    }
    // The shape rule above is exercised both ways.
    EXPECT_GT(neighbour_sizes_passing, 0);
    EXPECT_GT(neighbour_sizes_failing, 0);
}

TEST(Merkle, ConsistencyRoundTripAndTamperingForEverySizeUpTo40) {
    constexpr uint64_t kMax = 40;
    const auto leaves = numbered_leaf_hashes(kMax);
    std::vector<Hash> roots;
    for (uint64_t n = 0; n <= kMax; ++n)
        roots.push_back(root_from_leaf_hashes(std::span(leaves).first(n)));
    const Hash zero(32, '\0');
    int neighbour_sizes_passing = 0;
    int neighbour_sizes_failing = 0;

    for (uint64_t n = 1; n <= kMax; ++n) {
        for (uint64_t m = 1; m <= n; ++m) {
            SCOPED_TRACE("old " + std::to_string(m) + " new " + std::to_string(n));
            auto proof_or = consistency_proof(leaves, m, n);
            ASSERT_TRUE(proof_or);
            const std::vector<Hash>& proof = *proof_or;
            const Hash& old_root = roots[m];
            const Hash& new_root = roots[n];
            ASSERT_TRUE(verify_consistency(m, n, old_root, new_root, proof));
            EXPECT_EQ(proof.empty(), m == n);

            // Tampered roots or proof elements.
            EXPECT_FALSE(verify_consistency(m, n, flipped(old_root, m), new_root, proof));
            EXPECT_FALSE(verify_consistency(m, n, old_root, flipped(new_root, n), proof));
            for (size_t j = 0; j < proof.size(); ++j)
                EXPECT_FALSE(
                    verify_consistency(m, n, old_root, new_root, with_element(proof, j, m + j)))
                    << "element " << j;

            // One element more or less.
            auto longer = proof;
            longer.push_back(zero);
            EXPECT_FALSE(verify_consistency(m, n, old_root, new_root, longer));
            longer.back() = new_root;
            EXPECT_FALSE(verify_consistency(m, n, old_root, new_root, longer));
            auto prefixed = proof;
            prefixed.insert(prefixed.begin(), old_root);
            EXPECT_FALSE(verify_consistency(m, n, old_root, new_root, prefixed));
            if (!proof.empty()) {
                EXPECT_FALSE(verify_consistency(m, n, old_root, new_root,
                                                std::span(proof).first(proof.size() - 1)));
                EXPECT_FALSE(
                    verify_consistency(m, n, old_root, new_root, std::span(proof).subspan(1)));
            }
            if (m == n) continue;

            EXPECT_FALSE(verify_consistency(m, n, new_root, old_root, proof));
            EXPECT_FALSE(verify_consistency(m, n, old_root, new_root, {}));
            // Wrong sizes with the genuine roots and proof.
            for (uint64_t wrong_old : {m - 1, m + 1, m ^ 2}) {
                if (wrong_old == m || wrong_old > n) continue;
                EXPECT_FALSE(verify_consistency(wrong_old, n, old_root, new_root, proof))
                    << "old size " << wrong_old;
            }
            EXPECT_FALSE(verify_consistency(m, 2 * n, old_root, new_root, proof));
            EXPECT_FALSE(verify_consistency(m, n / 2, old_root, new_root, proof));
            // As for inclusion, n +- 1 passes exactly when the proof's shape is
            // unchanged: the new size is bound by the signed head, not the proof.
            for (uint64_t other : {n - 1, n + 1}) {
                const bool same_shape =
                    other > m && consistency_shape(m, other) == consistency_shape(m, n);
                const bool ok = verify_consistency(m, other, old_root, new_root, proof).has_value();
                EXPECT_EQ(ok, same_shape) << "new size " << other;
                ++(ok ? neighbour_sizes_passing : neighbour_sizes_failing);
            }
        }
    }
    // The shape rule above is exercised both ways.
    EXPECT_GT(neighbour_sizes_passing, 0);
    EXPECT_GT(neighbour_sizes_failing, 0);
}

TEST(Merkle, EqualSizesNeedEmptyProofAndEqualRoots) {
    const auto leaves = numbered_leaf_hashes(5);
    const Hash root = root_from_leaf_hashes(leaves);
    EXPECT_TRUE(verify_consistency(5, 5, root, root, {}));
    EXPECT_FALSE(verify_consistency(5, 5, root, flipped(root, 0), {}));
    const std::vector<Hash> one = {root};
    EXPECT_FALSE(verify_consistency(5, 5, root, root, one));
    EXPECT_FALSE(verify_consistency(5, 5, "", "", {}));
}

TEST(Merkle, RejectsInvalidArguments) {
    const auto leaves = numbered_leaf_hashes(4);
    const Hash root = root_from_leaf_hashes(leaves);

    auto bad_index = inclusion_proof(leaves, 4, 4);
    ASSERT_FALSE(bad_index);
    EXPECT_EQ(bad_index.error().code, ErrorCode::invalid_argument);
    EXPECT_FALSE(inclusion_proof(leaves, 0, 0));
    EXPECT_FALSE(inclusion_proof(leaves, 0, 5));

    EXPECT_FALSE(consistency_proof(leaves, 0, 4));
    EXPECT_FALSE(consistency_proof(leaves, 3, 2));
    auto too_big = consistency_proof(leaves, 2, 5);
    ASSERT_FALSE(too_big);
    EXPECT_EQ(too_big.error().code, ErrorCode::invalid_argument);

    auto outside = verify_inclusion(4, 4, leaves[0], {}, root);
    ASSERT_FALSE(outside);
    EXPECT_EQ(outside.error().code, ErrorCode::integrity);
    EXPECT_FALSE(verify_inclusion(0, 0, leaves[0], {}, empty_root()));
    EXPECT_FALSE(verify_consistency(0, 4, empty_root(), root, {}));
    EXPECT_FALSE(verify_consistency(4, 2, root, root, {}));

    // Wrong-sized hashes are rejected rather than hashed.
    auto proof = inclusion_proof(leaves, 1, 4);
    ASSERT_TRUE(proof);
    auto short_element = *proof;
    short_element[0].pop_back();
    EXPECT_FALSE(verify_inclusion(1, 4, leaves[1], short_element, root));
    EXPECT_FALSE(verify_inclusion(0, 1, "", {}, ""));
    auto cproof = consistency_proof(leaves, 3, 4);
    ASSERT_TRUE(cproof);
    auto long_element = *cproof;
    long_element[0].push_back('x');
    EXPECT_FALSE(verify_consistency(3, 4, root_from_leaf_hashes(std::span(leaves).first(3)), root,
                                    long_element));
}

TEST(Merkle, CompactTreeMatchesFullTreeForSizesUpTo300) {
    const auto leaves = numbered_leaf_hashes(300);
    CompactTree tree;
    EXPECT_EQ(tree.size(), 0u);
    EXPECT_EQ(tree.root(), root_from_leaf_hashes({}));
    for (size_t n = 1; n <= leaves.size(); ++n) {
        tree.append(leaves[n - 1]);
        ASSERT_EQ(tree.size(), n);
        ASSERT_EQ(tree.root(), root_from_leaf_hashes(std::span(leaves).first(n))) << "size " << n;
    }
}

TEST(Merkle, CompactTreeReproducesPublishedRoots) {
    const auto leaves = reference_leaf_hashes();
    CompactTree tree;
    for (size_t n = 1; n <= leaves.size(); ++n) {
        tree.append(leaves[n - 1]);
        EXPECT_EQ(tree.root(), reference_roots()[n - 1]) << "size " << n;
    }
}

}  // namespace
}  // namespace sa::merkle
