#include "agent/audit/tree_hasher.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/crypto/encoding.h"
#include "common/merkle/merkle.h"

namespace sa::agent::audit {
namespace {

std::string raw(const Digest& d) {
    return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

TEST(TreeHasherTest, MatchesCommonMerkleHashes) {
    TreeHasher h;
    for (std::string leaf :
         {std::string(), std::string("x"), std::string(1000, 'q'), std::string("a\0b", 3)}) {
        EXPECT_EQ(raw(h.leaf(leaf)), merkle::leaf_hash(leaf));
    }
    const Digest a = h.leaf("a");
    const Digest b = h.leaf("b");
    EXPECT_EQ(raw(h.node(a, b)), merkle::node_hash(raw(a), raw(b)));
    EXPECT_EQ(raw(h.empty()), merkle::empty_root());
}

TEST(TreeHasherTest, DigestTreeMatchesCompactTreeAtEverySize) {
    TreeHasher h;
    DigestTree tree;
    merkle::CompactTree reference;
    std::vector<merkle::Hash> leaves;
    EXPECT_EQ(raw(tree.root(h)), merkle::empty_root());
    for (int i = 0; i < 300; ++i) {
        const std::string leaf = "record " + std::to_string(i);
        tree.append(h.leaf(leaf), h);
        reference.append(merkle::leaf_hash(leaf));
        leaves.push_back(merkle::leaf_hash(leaf));
        ASSERT_EQ(tree.size(), reference.size());
        ASSERT_EQ(raw(tree.root(h)), reference.root()) << "size " << tree.size();
    }
    EXPECT_EQ(raw(tree.root(h)), merkle::root_from_leaf_hashes(leaves));
}

TEST(TreeHasherTest, Base64MatchesTheEncoder) {
    TreeHasher h;
    for (int i = 0; i < 50; ++i) {
        const Digest d = h.leaf(std::to_string(i));
        const auto text = base64_digest(d);
        EXPECT_EQ(std::string(text.data(), text.size()), crypto::base64_encode(raw(d)));
    }
}

}  // namespace
}  // namespace sa::agent::audit
