#pragma once
// Turns the stream of records from a connector into NDJSON chunks of bounded
// size (docs/protocol.md §3), each with its SHA-256, handed to emit() as soon
// as it is full so extraction and upload overlap and memory stays bounded.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "agent/connectors/connector.h"

namespace sa::agent::delivery {

struct Chunk {
    int64_t seq = 0;
    std::string body;    // NDJSON, whole lines only
    std::string sha256;  // 32 raw bytes of SHA-256(body)
};

struct ChunkInfo {
    int64_t seq = 0;
    std::string sha256_hex;
    int64_t size = 0;
};

// The chunk list's fingerprint for the chain of custody: base64 of the RFC 9162
// Merkle root whose leaves are the chunks' raw SHA-256 digests, in seq order.
// The job's audit records carry it at extraction and at hub acceptance so
// `audit custody` can check both name the same chunks. invalid_argument for a
// digest that is not 64 hex characters.
Result<std::string> chunks_root(const std::vector<ChunkInfo>& chunks);

class ChunkWriter final : public connectors::MetadataSink {
  public:
    using Emit = std::function<Status(Chunk&& chunk)>;

    // A chunk is emitted before it would exceed target_bytes; a single table
    // larger than target_bytes becomes a chunk of its own.
    ChunkWriter(size_t target_bytes, Emit emit);

    // Takes every record: filtering is the job of the sink in front of it.
    bool wants(std::string_view, std::string_view) const override { return true; }
    bool wants_schema(std::string_view) const override { return true; }
    // Errors: emit()'s error, unchanged; invalid_argument for a record whose
    // line exceeds protocol::kMaxChunkBytes (the hub would refuse it). The
    // first error sticks: every later write()/finish() returns it. A chunk is
    // recorded in chunks() only once emit() has accepted it.
    Status write(const metadata::Table& table) override;
    Status write(const metadata::Routine& routine) override;
    Status write(const metadata::Removal& removal);
    // Emits the last, partial chunk (if any). Call once at the end.
    Status finish();
    const std::vector<ChunkInfo>& chunks() const { return chunks_; }

  private:
    Status write_line(std::string line, std::string_view what);
    Status flush();
    size_t target_bytes_;
    Emit emit_;
    std::string buffer_;
    std::vector<ChunkInfo> chunks_;
    std::optional<Error> failed_;  // set by the first error; later calls return it
};

}  // namespace sa::agent::delivery
