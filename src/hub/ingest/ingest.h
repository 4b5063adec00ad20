#pragma once
// Receives a job's metadata: chunk uploads (PUT .../chunks/{seq}) and the
// completion (POST .../complete) that turns the chunks into catalog rows.
// docs/protocol.md sections 3 and 4 define the rules; in short:
//   - only the holder of the job's live lease may upload or complete;
//   - a chunk is stored only if its body matches its Content-Digest;
//     re-sending the same (seq, digest) is a no-op, a different digest for a
//     stored seq is a conflict;
//   - the interactive operations (test_connection, preflight, list_schemas)
//     take no chunks: their completion carries a JSON object "result" (at most
//     protocol::kMaxResultBytes serialized), stored with the job; the catalog
//     is never touched. extract_metadata completions must not carry one;
//   - completion requires exactly the listed chunks (same digests and sizes,
//     re-hashed), every chunk must parse, and then the catalog of
//     (app, source) is replaced and the job marked succeeded in ONE
//     transaction. Any problem fails the job and leaves the catalog as it was.
//     A completion without "delta" is a full extraction: its chunks carry
//     relations and routines (model version 2), each object once, and no
//     Removal (both refused as bad_chunk), and replace the catalog;
//   - a completion with "delta": {"baseline_job_id": B} is an incremental
//     run: changed or new relations and routines plus Removal records, each
//     object once, applied with apply_catalog_delta (catalog.h). It is
//     accepted only when the job was signed as incremental with baseline B
//     and B is still the catalog version of (app, source); otherwise the job
//     fails with baseline_mismatch (HTTP 409) and the catalog is untouched;
//   - every successful extraction makes its job the catalog version of
//     (app, source) (table catalog_sources) and records jobs.applied_mode,
//     in the same transaction.
//
// Chunks are parsed as they arrive (ChunkStager, in the background) so that
// a completion mostly commits; the outcome is the same as parsing at
// completion, which is what happens to a chunk the stager does not hold.
//
// Chunks are untrusted input: parsing errors become bad_chunk, never crashes.
// Thread safety: safe to share between threads.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hub/clock/clock.h"
#include "hub/ingest/chunk_stager.h"
#include "hub/jobs/job_queue.h"
#include "hub/store/store.h"
#include "hub/wire/wire_error.h"

namespace sa::hub::ingest {

struct ChunkReceipt {
    int64_t seq = 0;
    std::string sha256;  // lowercase hex
    int64_t size = 0;
    bool created = false;  // false: an identical chunk was already stored
};

struct ChunkRef {
    int64_t seq = 0;
    std::string sha256;  // lowercase hex, as the agent lists it
    int64_t size = 0;
};

struct Completion {
    std::string lease_id;
    std::string agent_id;
    std::vector<ChunkRef> chunks;
    std::optional<int64_t> started_at_ms;
    std::optional<int64_t> finished_at_ms;
    // Required for the interactive operations, forbidden for extract_metadata.
    std::optional<nlohmann::json> result;
    // extract_metadata only: the chunks are a delta against this baseline
    // (the body member "delta": {"baseline_job_id": ...}); nullopt: full.
    std::optional<std::string> delta_baseline_job_id;
};

struct CompletionResult {
    std::string job_id;
    std::string operation;
    // Counted by the hub from the delivered records: tables = relations that
    // are not views, views = view + materialized_view, columns of both.
    jobs::Summary summary;
    int64_t routines = 0;  // also stored in jobs.summary_routines
    int64_t removals = 0;  // Removal records of a delta
    bool delta = false;    // applied as a delta
};

inline constexpr int64_t kMaxChunkSeq = 1'000'000;

class Ingest final {
  public:
    Ingest(store::Store& store, const clock::Clock& clock);

    // digest_header is the Content-Digest field value, nullopt when absent.
    // Errors: invalid_digest, digest_mismatch, chunk_conflict, lease_lost,
    // request_too_large, invalid_request (seq out of range; a job of an
    // interactive operation, which takes no chunks).
    wire::WireResult<ChunkReceipt> put_chunk(const std::string& app, const std::string& job_id,
                                             const std::string& lease_id, int64_t seq,
                                             std::optional<std::string_view> digest_header,
                                             std::string_view body);

    // Errors: lease_lost (job untouched), invalid_request (malformed list; a
    // result missing, not an object or not allowed for the operation; chunks
    // listed for an interactive operation, or a delta: job untouched),
    // request_too_large (result over protocol::kMaxResultBytes, job
    // untouched), missing_chunk, digest_mismatch, bad_chunk,
    // baseline_mismatch (job failed).
    wire::WireResult<CompletionResult> complete(const std::string& app, const std::string& job_id,
                                                const Completion& completion);

  private:
    wire::WireResult<CompletionResult> complete_interactive(const std::string& app,
                                                            const std::string& job_id,
                                                            const Completion& completion,
                                                            const std::string& operation);
    // Marks the job failed with the delivery problem, if the lease still holds.
    void fail_job(const std::string& app, const std::string& job_id, const Completion& completion,
                  const wire::WireError& why);

    store::Store& store_;
    const clock::Clock& clock_;
    ChunkStager stager_;  // parses chunks as they arrive
};

}  // namespace sa::hub::ingest
