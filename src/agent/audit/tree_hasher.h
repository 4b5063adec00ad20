#pragma once
// RFC 9162 leaf and node hashes and a compact (O(log n)) Merkle tree over
// fixed-size digests, for the verifier's hot loop: the same values as
// common/merkle's leaf_hash / node_hash / CompactTree, but with one reused
// OpenSSL digest context and no allocation per hash.
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

namespace sa::agent::audit {

using Digest = std::array<unsigned char, 32>;

class TreeHasher final {
  public:
    // Throws std::runtime_error when OpenSSL has no SHA-256 (a broken
    // installation, not bad input).
    TreeHasher();
    ~TreeHasher();
    TreeHasher(const TreeHasher&) = delete;
    TreeHasher& operator=(const TreeHasher&) = delete;

    // SHA-256(0x00 || leaf)
    Digest leaf(std::string_view leaf);
    // SHA-256(0x01 || left || right)
    Digest node(const Digest& left, const Digest& right);
    // SHA-256("")
    Digest empty();

  private:
    struct State;
    std::unique_ptr<State> state_;
};

class DigestTree final {
  public:
    void append(const Digest& leaf_hash, TreeHasher& hasher);
    uint64_t size() const { return size_; }
    Digest root(TreeHasher& hasher) const;
    // The compact state: roots of the maximal perfect subtrees covering
    // [0, size()), largest (leftmost) first; one per set bit of size().
    std::span<const Digest> peaks() const { return {peaks_.data(), count_}; }
    // A tree of `size` leaves known only by its peaks (what a retention anchor
    // stores); nullopt when the number of peaks does not fit size.
    static std::optional<DigestTree> from_peaks(uint64_t size, std::span<const Digest> peaks);

  private:
    uint64_t size_ = 0;
    // peaks_[0..count_) cover perfect subtrees, largest first; one per set
    // bit of size_, so 64 always suffice.
    std::array<Digest, 64> peaks_{};
    unsigned count_ = 0;
};

// 44 characters of padded standard base64 (what crypto::base64_encode makes
// of a digest), without allocating.
std::array<char, 44> base64_digest(const Digest& d);

}  // namespace sa::agent::audit
