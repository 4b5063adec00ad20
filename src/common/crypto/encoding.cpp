#include "common/crypto/encoding.h"

#include <openssl/crypto.h>

#include <array>

namespace sa::crypto {
namespace {

constexpr std::string_view kStd =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kUrl =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string encode(std::string_view in, std::string_view alphabet, bool pad) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    size_t i = 0;
    auto byte = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(in[k])); };
    for (; i + 3 <= in.size(); i += 3) {
        uint32_t v = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
        out += alphabet[v & 63];
    }
    size_t rest = in.size() - i;
    if (rest == 1) {
        uint32_t v = byte(i) << 16;
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        if (pad) out += "==";
    } else if (rest == 2) {
        uint32_t v = (byte(i) << 16) | (byte(i + 1) << 8);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
        if (pad) out += '=';
    }
    return out;
}

std::optional<Bytes> decode(std::string_view in, std::string_view alphabet, bool padded) {
    std::array<int, 256> table{};
    table.fill(-1);
    for (size_t k = 0; k < alphabet.size(); ++k)
        table[static_cast<unsigned char>(alphabet[k])] = static_cast<int>(k);
    if (padded) {
        if (in.size() % 4 != 0) return std::nullopt;
        size_t pads = 0;
        while (!in.empty() && in.back() == '=' && pads < 2) {
            in.remove_suffix(1);
            ++pads;
        }
    }
    if (in.size() % 4 == 1) return std::nullopt;
    Bytes out;
    out.reserve(in.size() * 3 / 4);
    uint32_t acc = 0;
    int bits = 0;
    // Decoded text may be a secret (a salt, a key): what was decoded before
    // a bad character is wiped, not left in freed memory.
    const auto reject = [&]() -> std::optional<Bytes> {
        OPENSSL_cleanse(out.data(), out.size());
        OPENSSL_cleanse(&acc, sizeof acc);
        return std::nullopt;
    };
    for (char c : in) {
        int v = table[static_cast<unsigned char>(c)];
        if (v < 0) return reject();
        acc = (acc << 6) | static_cast<uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xFF);
        }
    }
    // Leftover bits must be zero, otherwise two texts would decode alike.
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return reject();
    return out;
}

}  // namespace

std::string base64url_encode(std::string_view bytes) {
    return encode(bytes, kUrl, false);
}
std::optional<Bytes> base64url_decode(std::string_view text) {
    return decode(text, kUrl, false);
}
std::string base64_encode(std::string_view bytes) {
    return encode(bytes, kStd, true);
}
std::optional<Bytes> base64_decode(std::string_view text) {
    return decode(text, kStd, true);
}

std::string hex_encode(std::string_view bytes) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char c : bytes) {
        out += kHex[c >> 4];
        out += kHex[c & 15];
    }
    return out;
}

std::string percent_encode(std::string_view bytes) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(bytes.size());
    for (unsigned char c : bytes) {
        const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                                (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
                                c == '~';
        if (unreserved) {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 0xF];
        }
    }
    return out;
}

}  // namespace sa::crypto
