#pragma once
// The on-disk format of the audit log, shared by the writer, the verifier,
// the proofs and the CLI. Layout of an audit directory:
//   segment-000001.jsonl, segment-000002.jsonl, ...  records, one per line
//   checkpoints.jsonl                                 signed checkpoints
//   hmac.salt                                         salt for hmac() values (file source)
//   salt-source.json                                  which salt the hmac() values use
//   retention.jsonl                                   retention anchors (retention.h)
//   segment-NNNNNN.jsonl.preserved                    "never remove" marks (retention.h)
//
// Record line: canonical JSON (nlohmann's default dump: keys sorted, no
// spaces, UTF-8, no floating-point numbers) followed by "\n". Fields:
// seq, ts, type, actor, agent_id, [job_id], [trace_id], fields, prev.
// The Merkle leaf of a record is its line without the newline; `prev` is the
// base64 leaf hash of the previous record ("" for seq 0).
//
// Checkpoint line: {agent_id, key_id, root, signature, tree_size, ts}, where
// signature = Ed25519 over checkpoint_note(...) (a signed note, so the signed
// text is exactly what a person can read and re-create).
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/crypto/ed25519.h"
#include "common/result.h"

namespace sa::agent::audit {

inline constexpr const char* kCheckpointsFile = "checkpoints.jsonl";
inline constexpr const char* kSaltFile = "hmac.salt";
inline constexpr const char* kSaltSourceFile = "salt-source.json";  // field_hasher.h
inline constexpr const char* kCheckpointNoteHeader = "secure-agent audit checkpoint v1";

// "segment-000001.jsonl" for number 1.
std::string segment_name(uint64_t number);
// The number of a segment file name, nullopt for any other name.
std::optional<uint64_t> parse_segment_name(std::string_view name);
// Segment file names in dir, in order (exact names only: not .preserved
// marks). not_found when dir does not exist. After retention the first one
// need not be segment-000001.jsonl, nor its first record seq 0.
Result<std::vector<std::string>> list_segments(const std::string& dir);

// invalid_argument (naming the JSON path) when value holds a floating-point
// number anywhere: doubles may not round-trip byte for byte.
Status check_no_floats(const nlohmann::json& value, const std::string& path = "");
// Canonical text of value; invalid_argument for floats or invalid UTF-8.
Result<std::string> canonical_dump(const nlohmann::json& value);

// A parsed, structurally valid record (the raw line stays the source of truth).
struct Record {
    uint64_t seq = 0;
    std::string ts;
    std::string type;
    std::string actor;
    std::string agent_id;
    std::string job_id;    // "" when absent
    std::string trace_id;  // "" when absent
    std::string prev;      // base64 text as stored
    nlohmann::json fields;
};
// Parses a record line (without newline) and checks that it is canonical and
// well-typed (see canonical.h; scan_record_line there does the same check
// without building the Record). invalid_argument with a reason otherwise.
Result<Record> parse_record_line(std::string_view line);

struct Checkpoint {
    std::string agent_id;
    uint64_t tree_size = 0;
    std::string root;       // base64 of the 32-byte root
    std::string ts;         // RFC 3339 UTC, milliseconds
    std::string key_id;     // Ed25519PublicKey::key_id() of the signer
    std::string signature;  // base64 of the 64-byte signature
};
std::string checkpoint_note(const std::string& agent_id, uint64_t tree_size,
                            const std::string& root_base64, const std::string& ts);
nlohmann::json to_json(const Checkpoint& cp);
Result<Checkpoint> checkpoint_from_json(const nlohmann::json& j);
Result<Checkpoint> parse_checkpoint_line(std::string_view line);
// Signature and key id check against public_key; integrity error saying why.
Status verify_checkpoint(const Checkpoint& cp, const crypto::Ed25519PublicKey& public_key);

// Reads a file in large blocks (read(2), no mmap: a file truncated under us
// must not raise SIGBUS) and hands out its lines as views into its buffer,
// without a copy or an allocation per line.
class LineViewReader final {
  public:
    static Result<LineViewReader> open(const std::string& path);
    LineViewReader(LineViewReader&& other) noexcept;
    LineViewReader& operator=(LineViewReader&& other) noexcept;
    LineViewReader(const LineViewReader&) = delete;
    LineViewReader& operator=(const LineViewReader&) = delete;
    ~LineViewReader();

    // Next line without its "\n", valid until the next call; complete=false
    // when the file ends without one (a torn write). false at end of file or
    // on a read error (then error() says which).
    bool next(std::string_view& line, bool& complete);
    // Byte offset just past the last line returned.
    uint64_t offset() const { return offset_; }
    // The read error that ended next(), if any.
    const std::optional<Error>& error() const { return error_; }

  private:
    LineViewReader(int fd, std::string path);
    bool fill();  // reads more; false at end of file or on error

    int fd_ = -1;
    std::string path_;
    std::unique_ptr<char[]> buf_;
    size_t cap_ = 0;
    size_t begin_ = 0;  // unread lines are [begin_, end_)
    size_t end_ = 0;
    size_t scanned_ = 0;  // bytes from begin_ known to hold no '\n'
    bool eof_ = false;
    uint64_t offset_ = 0;
    std::optional<Error> error_;
};

// Reads a file line by line without loading it whole (a copying form of
// LineViewReader).
class LineReader final {
  public:
    static Result<LineReader> open(const std::string& path);
    // Next line without its "\n"; complete=false when the file ends without
    // one (a torn write). false at end of file or on a read error.
    bool next(std::string& line, bool& complete);
    // Byte offset just past the last line returned.
    uint64_t offset() const { return reader_.offset(); }

  private:
    explicit LineReader(LineViewReader reader) : reader_(std::move(reader)) {}
    LineViewReader reader_;
};

// Where a record line sits, for messages: "segment-000002.jsonl:17".
struct Position {
    std::string file;
    uint64_t line = 0;  // 1-based
};

// Calls visit for every line of every segment in order; visit returns false
// to stop early. Errors only for I/O (including a read error mid-file).
Status for_each_line(
    const std::string& dir,
    const std::function<bool(const Position&, std::string_view line, bool complete)>& visit);

// All checkpoints in dir (an absent file means none). invalid_argument naming
// the line for a line that does not parse.
Result<std::vector<Checkpoint>> read_checkpoints(const std::string& dir);

// Parses every line of dir/file (an absent file has none) with parse and
// hands each value and its 1-based line number to keep. invalid_argument
// naming file:line for a line that does not parse or ends without a newline.
template <typename Parse, typename Keep>
Status for_each_parsed_line(const std::string& dir, const char* file, Parse parse, Keep keep) {
    auto reader = LineReader::open(dir + "/" + file);
    if (!reader) {
        if (reader.error().code == ErrorCode::not_found) return {};
        return std::unexpected(reader.error());
    }
    std::string line;
    bool complete = true;
    uint64_t n = 0;
    while (reader->next(line, complete)) {
        ++n;
        auto value = parse(line);
        if (!value || !complete)
            return fail(ErrorCode::invalid_argument,
                        std::string(file) + ":" + std::to_string(n) + ": " +
                            (value ? std::string("incomplete line") : value.error().message));
        keep(std::move(*value), n);
    }
    return {};
}

}  // namespace sa::agent::audit
