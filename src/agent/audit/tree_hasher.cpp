#include "agent/audit/tree_hasher.h"

#include <openssl/evp.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <stdexcept>

namespace sa::agent::audit {

struct TreeHasher::State {
    EVP_MD* md = nullptr;
    EVP_MD_CTX* leaf_base = nullptr;  // 0x00 already absorbed
    EVP_MD_CTX* node_base = nullptr;  // 0x01 already absorbed
    EVP_MD_CTX* work = nullptr;
    ~State() {
        EVP_MD_CTX_free(work);
        EVP_MD_CTX_free(node_base);
        EVP_MD_CTX_free(leaf_base);
        EVP_MD_free(md);
    }
    // Copying a context that has absorbed the prefix is measurably cheaper
    // than a fresh init per hash (OpenSSL 3 re-initialises the provider).
    void start_from(const EVP_MD_CTX* base) {
        if (EVP_MD_CTX_copy_ex(work, base) != 1)
            throw std::runtime_error("EVP_MD_CTX_copy_ex(SHA-256) failed");
    }
    void update(const void* data, size_t n) {
        if (EVP_DigestUpdate(work, data, n) != 1)
            throw std::runtime_error("EVP_DigestUpdate failed");
    }
    Digest finish() {
        Digest out;
        unsigned int n = 0;
        if (EVP_DigestFinal_ex(work, out.data(), &n) != 1 || n != out.size())
            throw std::runtime_error("EVP_DigestFinal_ex failed");
        return out;
    }
};

TreeHasher::TreeHasher() : state_(std::make_unique<State>()) {
    // Fetched once: an implicit fetch per init is what makes EVP slow.
    state_->md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    state_->leaf_base = EVP_MD_CTX_new();
    state_->node_base = EVP_MD_CTX_new();
    state_->work = EVP_MD_CTX_new();
    const unsigned char leaf_prefix = 0x00;
    const unsigned char node_prefix = 0x01;
    if (state_->md == nullptr || state_->leaf_base == nullptr || state_->node_base == nullptr ||
        state_->work == nullptr ||
        EVP_DigestInit_ex2(state_->leaf_base, state_->md, nullptr) != 1 ||
        EVP_DigestUpdate(state_->leaf_base, &leaf_prefix, 1) != 1 ||
        EVP_DigestInit_ex2(state_->node_base, state_->md, nullptr) != 1 ||
        EVP_DigestUpdate(state_->node_base, &node_prefix, 1) != 1)
        throw std::runtime_error("OpenSSL SHA-256 is not available");
}

TreeHasher::~TreeHasher() = default;

Digest TreeHasher::leaf(std::string_view leaf) {
    state_->start_from(state_->leaf_base);
    state_->update(leaf.data(), leaf.size());
    return state_->finish();
}

Digest TreeHasher::node(const Digest& left, const Digest& right) {
    unsigned char buf[2 * 32];
    std::copy(left.begin(), left.end(), buf);
    std::copy(right.begin(), right.end(), buf + 32);
    state_->start_from(state_->node_base);
    state_->update(buf, sizeof buf);
    return state_->finish();
}

Digest TreeHasher::empty() {
    if (EVP_DigestInit_ex2(state_->work, state_->md, nullptr) != 1)
        throw std::runtime_error("EVP_DigestInit_ex2(SHA-256) failed");
    return state_->finish();
}

void DigestTree::append(const Digest& leaf_hash, TreeHasher& hasher) {
    // As merkle::CompactTree: adding a leaf is a binary increment of size_;
    // each trailing one bit is a peak of the carry's height that merges
    // (older peak on the left) and moves up.
    Digest carry = leaf_hash;
    for (uint64_t s = size_; (s & 1) == 1; s >>= 1) carry = hasher.node(peaks_[--count_], carry);
    peaks_[count_++] = carry;
    ++size_;
}

std::optional<DigestTree> DigestTree::from_peaks(uint64_t size, std::span<const Digest> peaks) {
    if (peaks.size() != static_cast<size_t>(std::popcount(size))) return std::nullopt;
    DigestTree t;
    t.size_ = size;
    t.count_ = static_cast<unsigned>(peaks.size());
    std::copy(peaks.begin(), peaks.end(), t.peaks_.begin());
    return t;
}

Digest DigestTree::root(TreeHasher& hasher) const {
    if (count_ == 0) return hasher.empty();
    Digest r = peaks_[count_ - 1];
    for (unsigned i = count_ - 1; i-- > 0;) r = hasher.node(peaks_[i], r);
    return r;
}

std::array<char, 44> base64_digest(const Digest& d) {
    static constexpr char kAlphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::array<char, 44> out{};
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= d.size(); i += 3) {
        const uint32_t v = (uint32_t{d[i]} << 16) | (uint32_t{d[i + 1]} << 8) | d[i + 2];
        out[o++] = kAlphabet[(v >> 18) & 63];
        out[o++] = kAlphabet[(v >> 12) & 63];
        out[o++] = kAlphabet[(v >> 6) & 63];
        out[o++] = kAlphabet[v & 63];
    }
    // 32 = 10 * 3 + 2: two bytes left, one '=' of padding.
    const uint32_t v = (uint32_t{d[i]} << 16) | (uint32_t{d[i + 1]} << 8);
    out[o++] = kAlphabet[(v >> 18) & 63];
    out[o++] = kAlphabet[(v >> 12) & 63];
    out[o++] = kAlphabet[(v >> 6) & 63];
    out[o++] = '=';
    return out;
}

}  // namespace sa::agent::audit
