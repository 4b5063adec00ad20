#include "agent/delivery/chunk_writer.h"

#include <utility>
#include <vector>

#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"
#include "common/merkle/merkle.h"
#include "common/protocol/protocol.h"

namespace sa::agent::delivery {

ChunkWriter::ChunkWriter(size_t target_bytes, Emit emit)
    : target_bytes_(target_bytes), emit_(std::move(emit)) {}

Status ChunkWriter::write(const metadata::Table& table) {
    return write_line(metadata::serialize(table), "table " + table.schema + "." + table.name);
}

Status ChunkWriter::write(const metadata::Routine& routine) {
    return write_line(
        metadata::serialize(routine),
        "routine " + routine.schema + "." + routine.name + "(" + routine.signature + ")");
}

Status ChunkWriter::write(const metadata::Removal& removal) {
    return write_line(metadata::serialize(removal),
                      "removal of " + removal.schema + "." + removal.name);
}

Status ChunkWriter::write_line(std::string line, std::string_view what) {
    if (failed_) return std::unexpected(*failed_);
    // serialize() replaces invalid UTF-8 (names come from the source and
    // SQLite does not enforce it) by U+FFFD instead of failing the job.
    line += '\n';
    if (line.size() > protocol::kMaxChunkBytes) {
        // The hub refuses such a body; failing here names the record instead.
        Error e{ErrorCode::invalid_argument,
                std::string(what) + " serializes to " + std::to_string(line.size()) +
                    " bytes, more than the protocol's chunk limit of " +
                    std::to_string(protocol::kMaxChunkBytes)};
        failed_ = e;
        return std::unexpected(std::move(e));
    }
    if (!buffer_.empty() && buffer_.size() + line.size() > target_bytes_) {
        if (auto st = flush(); !st) return st;
    }
    buffer_ += line;
    // A full (or oversize) chunk goes out now rather than on the next write,
    // so upload can start while extraction continues.
    if (buffer_.size() >= target_bytes_) return flush();
    return {};
}

Status ChunkWriter::finish() {
    if (failed_) return std::unexpected(*failed_);
    if (buffer_.empty()) return {};
    return flush();
}

Status ChunkWriter::flush() {
    Chunk chunk;
    chunk.seq = static_cast<int64_t>(chunks_.size());
    chunk.body = std::exchange(buffer_, {});
    chunk.sha256 = crypto::sha256(chunk.body);
    ChunkInfo info{.seq = chunk.seq,
                   .sha256_hex = crypto::hex_encode(chunk.sha256),
                   .size = static_cast<int64_t>(chunk.body.size())};
    if (auto st = emit_(std::move(chunk)); !st) {
        // The chunk's bytes are gone with it, so the stream cannot continue
        // consistently: every later call reports this error.
        failed_ = st.error();
        return st;
    }
    chunks_.push_back(std::move(info));
    return {};
}

}  // namespace sa::agent::delivery

namespace sa::agent::delivery {
namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

Result<std::string> chunks_root(const std::vector<ChunkInfo>& chunks) {
    std::vector<merkle::Hash> leaves;
    leaves.reserve(chunks.size());
    for (const auto& chunk : chunks) {
        if (chunk.sha256_hex.size() != 64) {
            return fail(ErrorCode::invalid_argument,
                        "chunk " + std::to_string(chunk.seq) + ": digest is not 64 hex characters");
        }
        std::string raw(32, '\0');
        for (size_t i = 0; i < 32; ++i) {
            const int hi = hex_value(chunk.sha256_hex[2 * i]);
            const int lo = hex_value(chunk.sha256_hex[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                return fail(ErrorCode::invalid_argument,
                            "chunk " + std::to_string(chunk.seq) + ": digest is not hex");
            }
            raw[i] = static_cast<char>(hi * 16 + lo);
        }
        leaves.push_back(merkle::leaf_hash(raw));
    }
    return crypto::base64_encode(merkle::root_from_leaf_hashes(leaves));
}

}  // namespace sa::agent::delivery
