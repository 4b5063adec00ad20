#include "hub/ingest/ingest.h"

#include <algorithm>
#include <map>
#include <set>
#include <variant>

#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"
#include "common/metadata/model.h"
#include "common/protocol/content_digest.h"
#include "common/protocol/protocol.h"
#include "hub/ingest/catalog.h"

namespace sa::hub::ingest {
namespace {

using sqlite::Statement;
using wire::wire_fail;
namespace code = wire::code;

struct StoredChunk {
    int64_t seq = 0;
    std::string sha256;
    int64_t size = 0;
};

// The uploaded chunks of a job, without their bytes.
Result<std::vector<StoredChunk>> list_chunks(sqlite::Database& db, const std::string& job_id) {
    auto st = store::prepare(
        db, "SELECT seq, sha256, size FROM chunks WHERE job_id = ? ORDER BY seq", job_id);
    if (!st) return std::unexpected(st.error());
    std::vector<StoredChunk> out;
    for (;;) {
        auto step = st->step();
        if (!step) return std::unexpected(step.error());
        if (*step == Statement::Step::done) break;
        out.push_back(StoredChunk{st->integer(0), st->text(1), st->integer(2)});
    }
    return out;
}

// The bytes of one uploaded chunk; nullopt when it is gone.
Result<std::optional<std::string>> chunk_bytes(sqlite::Database& db, const std::string& job_id,
                                               int64_t seq) {
    auto st =
        store::prepare(db, "SELECT data FROM chunks WHERE job_id = ? AND seq = ?", job_id, seq);
    if (!st) return std::unexpected(st.error());
    auto step = st->step();
    if (!step) return std::unexpected(step.error());
    if (*step == Statement::Step::done) return std::optional<std::string>();
    return std::optional<std::string>(st->blob(0));
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) {
        return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    });
    return s;
}

// Checks the completion's list against what was uploaded (seq, digest and
// size; bytes read back from the store are re-hashed in prepare_delivery).
// The list is sorted by seq and has no duplicates.
std::optional<wire::WireError> check_manifest(const std::vector<ChunkRef>& listed,
                                              const std::vector<StoredChunk>& stored) {
    std::map<int64_t, const StoredChunk*> by_seq;
    for (const auto& c : stored) by_seq[c.seq] = &c;
    for (const auto& ref : listed) {
        auto it = by_seq.find(ref.seq);
        std::string name = "chunk " + std::to_string(ref.seq);
        if (it == by_seq.end()) {
            return wire::WireError{code::kMissingChunk, name + " was never uploaded"};
        }
        const StoredChunk& c = *it->second;
        if (!crypto::equal_constant_time(lower(ref.sha256), c.sha256)) {
            return wire::WireError{code::kDigestMismatch,
                                   name + ": listed sha256 " + ref.sha256.substr(0, 64) +
                                       " but the uploaded chunk has " + c.sha256};
        }
        if (ref.size != c.size) {
            return wire::WireError{code::kDigestMismatch,
                                   name + ": listed size " + std::to_string(ref.size) +
                                       " but the uploaded chunk has " + std::to_string(c.size)};
        }
        by_seq.erase(it);
    }
    if (!by_seq.empty()) {
        return wire::WireError{code::kMissingChunk,
                               "chunk " + std::to_string(by_seq.begin()->first) +
                                   " was uploaded but is missing from the completion list"};
    }
    return std::nullopt;
}

struct Parsed {
    std::vector<PreparedRecord> records;
    jobs::Summary summary;
    int64_t routines = 0;
    int64_t removals = 0;
};

// The records of a delivery, chunk by chunk in seq order: the stager's
// parse when it has one for exactly that chunk, else the stored bytes,
// re-hashed (the stored digest alone would not notice storage corruption)
// and parsed here. Every object is delivered once (a second copy would make
// the catalog depend on chunk order). A full extraction holds relations and
// routines only; a delta may also remove objects.
std::variant<Parsed, wire::WireError> prepare_delivery(store::Store& store, ChunkStager& stager,
                                                       const std::string& job_id,
                                                       const std::vector<StoredChunk>& chunks,
                                                       const std::string& source, bool delta) {
    Parsed out;
    std::set<std::string> seen;
    for (const auto& c : chunks) {
        std::string name = "chunk " + std::to_string(c.seq);
        auto staged = stager.take(job_id, c.seq, c.sha256);
        if (!staged) {
            auto bytes =
                store.with([&](sqlite::Database& db) { return chunk_bytes(db, job_id, c.seq); });
            if (!bytes) return wire::WireError{code::kServerError, bytes.error().describe()};
            if (!*bytes) {
                return wire::WireError{code::kMissingChunk, name + " is no longer stored"};
            }
            const std::string& data = **bytes;
            if (static_cast<int64_t>(data.size()) != c.size ||
                !crypto::equal_constant_time(crypto::sha256_hex(data), c.sha256)) {
                return wire::WireError{code::kDigestMismatch,
                                       name + ": stored bytes no longer match their digest"};
            }
            staged = prepare_chunk(data);
        }
        if (!*staged) {
            return wire::WireError{code::kBadChunk, name + ": " + staged->error().message};
        }
        for (auto& r : **staged) {
            std::string key = object_key(source, r.record);
            if (std::holds_alternative<metadata::Removal>(r.record) && !delta) {
                return wire::WireError{code::kBadChunk,
                                       name + ": removal of " + key +
                                           ": a full extraction delivers what exists; removals "
                                           "belong to incremental runs"};
            }
            if (!seen.insert(key).second) {
                return wire::WireError{code::kBadChunk,
                                       name + ": " + key + " is delivered more than once"};
            }
            if (std::holds_alternative<metadata::Removal>(r.record)) {
                ++out.removals;
            } else if (const auto* t = std::get_if<metadata::Table>(&r.record)) {
                if (metadata::is_view_kind(t->kind)) {
                    ++out.summary.views;
                } else {
                    ++out.summary.tables;
                }
                out.summary.columns += static_cast<int64_t>(t->columns.size());
            } else {
                ++out.routines;
            }
            out.records.push_back(std::move(r));
        }
    }
    return out;
}

std::string shown(const std::string& untrusted) {
    return jobs::truncate_utf8(untrusted, 128);
}

// Why a delta against delta_baseline cannot be applied to the catalog of the
// job's (app, source), whose version is now `version`; nullopt when it can.
std::optional<wire::WireError> baseline_problem(const jobs::Job& job,
                                                const std::string& delta_baseline,
                                                const std::optional<std::string>& version) {
    if (jobs::signed_mode(job) != jobs::mode::kIncremental) {
        return wire::WireError{code::kBaselineMismatch,
                               "job " + job.id +
                                   " was signed as a full extraction (no baseline), but the "
                                   "completion is a delta against job " +
                                   shown(delta_baseline) + ": deliver a full extraction"};
    }
    const std::string& signed_baseline = *job.baseline_job_id;
    if (delta_baseline != signed_baseline) {
        return wire::WireError{code::kBaselineMismatch,
                               "the delta is against job " + shown(delta_baseline) + ", but job " +
                                   job.id + " was signed with baseline job " + signed_baseline +
                                   ": expected baseline " + signed_baseline};
    }
    if (version != signed_baseline) {
        return wire::WireError{
            code::kBaselineMismatch,
            "the catalog of source " + job.source + " moved on: baseline job " + signed_baseline +
                " is out of date, the expected baseline is now " +
                (version ? "job " + *version : std::string("none (no catalog)")) +
                "; the next incremental job runs against it"};
    }
    return std::nullopt;
}

}  // namespace

Ingest::Ingest(store::Store& store, const clock::Clock& clock) : store_(store), clock_(clock) {}

wire::WireResult<ChunkReceipt> Ingest::put_chunk(const std::string& app, const std::string& job_id,
                                                 const std::string& lease_id, int64_t seq,
                                                 std::optional<std::string_view> digest_header,
                                                 std::string_view body) {
    if (seq < 0 || seq > kMaxChunkSeq) {
        return wire_fail(code::kInvalidRequest,
                         "chunk seq must be 0.." + std::to_string(kMaxChunkSeq));
    }
    if (body.size() > protocol::kMaxChunkBytes) {
        return wire_fail(code::kTooLarge, "a chunk may hold at most " +
                                              std::to_string(protocol::kMaxChunkBytes) + " bytes");
    }
    if (!digest_header) {
        return wire_fail(code::kInvalidDigest, "Content-Digest header with sha-256 is required");
    }
    auto claimed = protocol::parse_content_digest_sha256(*digest_header);
    if (!claimed) {
        return wire_fail(code::kInvalidDigest, "Content-Digest has no well-formed sha-256 member");
    }
    // Hash before taking the store lock: 8 MiB takes a while.
    std::string actual = crypto::sha256(body);
    if (!crypto::equal_constant_time(actual, *claimed)) {
        return wire_fail(code::kDigestMismatch,
                         "chunk " + std::to_string(seq) + ": body does not match Content-Digest");
    }
    ChunkReceipt receipt{seq, crypto::hex_encode(actual), static_cast<int64_t>(body.size()), true};
    int64_t now = clock_.now_ms();
    auto stored = store_.with([&](sqlite::Database& db) -> wire::WireResult<ChunkReceipt> {
        auto tx = sqlite::Transaction::begin(db);
        if (!tx) return wire::internal_failure(tx.error());
        auto lease = jobs::check_lease(db, app, job_id, lease_id, now);
        if (!lease) return std::unexpected(lease.error());
        if (jobs::is_interactive(lease->operation)) {
            return wire_fail(code::kInvalidRequest, "job " + job_id + " is a " + lease->operation +
                                                        " job: it takes no chunks");
        }
        auto existing = store::prepare(db, "SELECT sha256 FROM chunks WHERE job_id = ? AND seq = ?",
                                       job_id, seq);
        if (!existing) return wire::internal_failure(existing.error());
        auto step = existing->step();
        if (!step) return wire::internal_failure(step.error());
        if (*step == Statement::Step::row) {
            if (existing->text(0) != receipt.sha256) {
                return wire_fail(code::kChunkConflict,
                                 "chunk " + std::to_string(seq) +
                                     " was already uploaded with a different digest");
            }
            receipt.created = false;
            return receipt;  // a retry: nothing to change
        }
        existing->reset();
        if (auto s =
                store::execute(db,
                               "INSERT INTO chunks(job_id, seq, sha256, size, data, "
                               "received_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                               job_id, seq, receipt.sha256, receipt.size, store::Blob{body}, now);
            !s) {
            return wire::internal_failure(s.error());
        }
        if (auto s = tx->commit(); !s) return wire::internal_failure(s.error());
        return receipt;
    });
    // Parse it while the agent goes on extracting (a retry of a chunk the
    // stager already holds is a no-op; one it dropped is staged again).
    if (stored) {
        (void)stager_.submit(job_id, seq, receipt.sha256, std::string(body));
    }
    return stored;
}

void Ingest::fail_job(const std::string& app, const std::string& job_id,
                      const Completion& completion, const wire::WireError& why) {
    stager_.drop(job_id);
    int64_t now = clock_.now_ms();
    // Best effort: if this fails the lease simply expires and the job is
    // re-queued, which is also a safe outcome.
    (void)store_.with([&](sqlite::Database& db) -> Status {
        auto tx = sqlite::Transaction::begin(db);
        if (!tx) return std::unexpected(tx.error());
        if (!jobs::check_lease(db, app, job_id, completion.lease_id, now)) return {};
        if (auto s = store::execute(
                db,
                "UPDATE jobs SET status = 'failed', reason_code = ?, message = ?, agent_id = ?, "
                "started_at_ms = ?, finished_at_ms = ?, completed_at_ms = ? WHERE id = ?",
                why.code, jobs::truncate_utf8(why.description, jobs::kMaxMessageBytes),
                completion.agent_id, completion.started_at_ms, completion.finished_at_ms, now,
                job_id);
            !s) {
            return s;
        }
        if (auto s = store::execute(db, "DELETE FROM chunks WHERE job_id = ?", job_id); !s)
            return s;
        return tx->commit();
    });
}

wire::WireResult<CompletionResult> Ingest::complete(const std::string& app,
                                                    const std::string& job_id,
                                                    const Completion& completion) {
    std::vector<ChunkRef> listed = completion.chunks;
    std::sort(listed.begin(), listed.end(),
              [](const ChunkRef& a, const ChunkRef& b) { return a.seq < b.seq; });
    for (size_t i = 1; i < listed.size(); ++i) {
        if (listed[i].seq == listed[i - 1].seq) {
            return wire_fail(code::kInvalidRequest,
                             "chunk " + std::to_string(listed[i].seq) + " is listed twice");
        }
    }

    // Phase 1, under the store lock: the lease and the uploaded chunks.
    int64_t now = clock_.now_ms();
    std::string source;
    std::string operation;
    std::optional<wire::WireError> early_problem;
    const bool delta = completion.delta_baseline_job_id.has_value();
    auto loaded =
        store_.with([&](sqlite::Database& db) -> wire::WireResult<std::vector<StoredChunk>> {
            auto lease = jobs::check_lease(db, app, job_id, completion.lease_id, now);
            if (!lease) return std::unexpected(lease.error());
            source = lease->source;
            operation = lease->operation;
            if (jobs::is_interactive(operation)) return std::vector<StoredChunk>();
            if (delta) {
                // Checked before parsing (cheap) and again when committing.
                auto version = jobs::catalog_version(db, app, source);
                if (!version) return wire::internal_failure(version.error());
                early_problem =
                    baseline_problem(*lease, *completion.delta_baseline_job_id, *version);
                if (early_problem) return std::unexpected(*early_problem);
            }
            auto chunks = list_chunks(db, job_id);
            if (!chunks) return wire::internal_failure(chunks.error());
            return std::move(*chunks);
        });
    if (!loaded) {
        if (early_problem) fail_job(app, job_id, completion, *early_problem);
        return std::unexpected(loaded.error());
    }
    if (jobs::is_interactive(operation)) {
        return complete_interactive(app, job_id, completion, operation);
    }
    if (completion.result) {
        return wire_fail(code::kInvalidRequest,
                         "result is only for test_connection, preflight and list_schemas; an "
                         "extract_metadata job delivers chunks");
    }

    // Phase 2, without the lock: checks and parsing of untrusted bytes
    // (mostly done already: the stager parsed the chunks as they arrived).
    if (auto problem = check_manifest(listed, *loaded)) {
        fail_job(app, job_id, completion, *problem);
        return std::unexpected(*problem);
    }
    auto parsed = prepare_delivery(store_, stager_, job_id, *loaded, source, delta);
    if (auto* problem = std::get_if<wire::WireError>(&parsed)) {
        // A storage failure is the hub's, not the delivery's: the job stays.
        if (problem->code != code::kServerError) fail_job(app, job_id, completion, *problem);
        return std::unexpected(*problem);
    }
    Parsed& data = std::get<Parsed>(parsed);
    std::vector<std::pair<int64_t, std::string>> expected;
    for (const auto& c : *loaded) expected.emplace_back(c.seq, c.sha256);
    loaded->clear();

    // Phase 3: one transaction that re-checks the lease and the chunk set
    // (both may have changed while the lock was free) and commits it all.
    now = clock_.now_ms();
    std::optional<wire::WireError> late_problem;
    auto done = store_.with([&](sqlite::Database& db) -> wire::WireResult<CompletionResult> {
        auto tx = sqlite::Transaction::begin(db);
        if (!tx) return wire::internal_failure(tx.error());
        auto lease = jobs::check_lease(db, app, job_id, completion.lease_id, now);
        if (!lease) return std::unexpected(lease.error());
        auto current = list_chunks(db, job_id);
        if (!current) return wire::internal_failure(current.error());
        std::vector<std::pair<int64_t, std::string>> now_stored;
        for (const auto& c : *current) now_stored.emplace_back(c.seq, c.sha256);
        if (now_stored != expected) {
            late_problem = wire::WireError{code::kMissingChunk,
                                           "chunks changed while the completion was checked"};
            return std::unexpected(*late_problem);
        }
        if (delta) {
            // The authoritative check: another job may have changed the
            // catalog while the chunks were parsed.
            auto version = jobs::catalog_version(db, app, source);
            if (!version) return wire::internal_failure(version.error());
            late_problem = baseline_problem(*lease, *completion.delta_baseline_job_id, *version);
            if (late_problem) return std::unexpected(*late_problem);
        }
        Status applied = delta ? apply_catalog_delta(db, app, source, data.records, job_id, now)
                               : replace_catalog(db, app, source, data.records, job_id, now);
        if (!applied) {
            // parse_chunks refuses what these refuse; should one slip
            // through it is still the delivery's fault.
            if (applied.error().code == ErrorCode::invalid_argument) {
                late_problem = wire::WireError{code::kBadChunk, applied.error().message};
                return std::unexpected(*late_problem);
            }
            return wire::internal_failure(applied.error());
        }
        const char* applied_mode = delta ? jobs::mode::kIncremental : jobs::mode::kFull;
        if (auto s = store::execute(
                db,
                "INSERT INTO catalog_sources(app, source, job_id, mode, committed_at_ms) VALUES "
                "(?, ?, ?, ?, ?) ON CONFLICT(app, source) DO UPDATE SET job_id = "
                "excluded.job_id, mode = excluded.mode, committed_at_ms = "
                "excluded.committed_at_ms",
                app, source, job_id, applied_mode, now);
            !s) {
            return wire::internal_failure(s.error());
        }
        if (auto s = store::execute(
                db,
                "UPDATE jobs SET status = 'succeeded', reason_code = NULL, message = NULL, "
                "agent_id = ?, started_at_ms = ?, finished_at_ms = ?, completed_at_ms = ?, "
                "summary_tables = ?, summary_views = ?, summary_columns = ?, summary_routines = ?, "
                "applied_mode = ? WHERE id = ?",
                completion.agent_id, completion.started_at_ms, completion.finished_at_ms, now,
                data.summary.tables, data.summary.views, data.summary.columns, data.routines,
                applied_mode, job_id);
            !s) {
            return wire::internal_failure(s.error());
        }
        if (auto s = store::execute(db, "DELETE FROM chunks WHERE job_id = ?", job_id); !s) {
            return wire::internal_failure(s.error());
        }
        if (auto s = tx->commit(); !s) return wire::internal_failure(s.error());
        stager_.drop(job_id);
        return CompletionResult{job_id,        operation,     data.summary,
                                data.routines, data.removals, delta};
    });
    if (late_problem) fail_job(app, job_id, completion, *late_problem);
    return done;
}

wire::WireResult<CompletionResult> Ingest::complete_interactive(const std::string& app,
                                                                const std::string& job_id,
                                                                const Completion& completion,
                                                                const std::string& operation) {
    // Request problems leave the job as it is: the agent may still report
    // /fail (e.g. limit_exceeded), or the lease runs out.
    if (!completion.chunks.empty()) {
        return wire_fail(code::kInvalidRequest,
                         "a " + operation + " job delivers no chunks: chunks must be empty");
    }
    if (completion.delta_baseline_job_id) {
        return wire_fail(code::kInvalidRequest, "delta is only for extract_metadata; a " +
                                                    operation + " job completes with a result");
    }
    if (!completion.result) {
        return wire_fail(code::kInvalidRequest, "result is required for a " + operation + " job");
    }
    if (!completion.result->is_object()) {
        return wire_fail(code::kInvalidRequest, "result must be a JSON object");
    }
    std::string result =
        completion.result->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (result.size() > protocol::kMaxResultBytes) {
        return wire_fail(code::kTooLarge, "result is " + std::to_string(result.size()) +
                                              " bytes serialized; at most " +
                                              std::to_string(protocol::kMaxResultBytes));
    }
    int64_t now = clock_.now_ms();
    return store_.with([&](sqlite::Database& db) -> wire::WireResult<CompletionResult> {
        auto tx = sqlite::Transaction::begin(db);
        if (!tx) return wire::internal_failure(tx.error());
        auto lease = jobs::check_lease(db, app, job_id, completion.lease_id, now);
        if (!lease) return std::unexpected(lease.error());
        if (auto s = store::execute(
                db,
                "UPDATE jobs SET status = 'succeeded', reason_code = NULL, message = NULL, "
                "agent_id = ?, started_at_ms = ?, finished_at_ms = ?, completed_at_ms = ?, "
                "result = ? WHERE id = ?",
                completion.agent_id, completion.started_at_ms, completion.finished_at_ms, now,
                result, job_id);
            !s) {
            return wire::internal_failure(s.error());
        }
        if (auto s = tx->commit(); !s) return wire::internal_failure(s.error());
        return CompletionResult{job_id, operation, jobs::Summary{}};
    });
}

}  // namespace sa::hub::ingest
