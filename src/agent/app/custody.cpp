#include "agent/app/custody.h"

#include <ostream>
#include <utility>

#include <nlohmann/json.hpp>

#include "agent/app/audit_commands.h"  // printable
#include "agent/app/commands.h"
#include "agent/audit/format.h"
#include "agent/audit/verify.h"
#include "agent/delivery/chunk_writer.h"
#include "common/crypto/digest.h"
#include "common/jose/jws.h"

namespace sa::agent::app {
namespace {

using nlohmann::json;

std::string text_field(const json& fields, const char* name) {
    auto it = fields.find(name);
    return it != fields.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::optional<int64_t> int_field(const json& fields, const char* name) {
    auto it = fields.find(name);
    if (it == fields.end() || !it->is_number_integer()) return std::nullopt;
    return it->get<int64_t>();
}

CustodyLink link_for(const std::string& name, const audit::Record& rec) {
    CustodyLink link;
    link.name = name;
    link.first_seq = rec.seq;
    link.last_seq = rec.seq;
    link.ts = rec.ts;
    return link;
}

// Checks one attempt: the records from one job.received up to (excluding)
// the next. `last` says whether a later attempt follows.
class AttemptChecker final {
  public:
    AttemptChecker(const std::vector<audit::Record>& records, const crypto::Ed25519PublicKey* key,
                   const std::string& job_id)
        : records_(records), job_key_(key), job_id_(job_id) {}

    CustodyAttempt check(bool superseded) {
        superseded_ = superseded;
        size_t i = 0;
        if (!received(i)) return finish("broken");
        if (i == records_.size()) return stopped_early();
        const auto& next = records_[i];
        if (next.type == "job.refused") {
            auto link = link_for("refused", next);
            link.detail = "refused: " + printable(text_field(next.fields, "reason_code")) + ": " +
                          printable(text_field(next.fields, "message"));
            attempt_.links.push_back(std::move(link));
            ++i;
            return i == records_.size() ? finish("refused")
                                        : unexpected(records_[i], "after the refusal");
        }
        if (next.type == "job.finished") return finished(i, /*started=*/false);
        if (!verified(i)) return finish("broken");
        if (i == records_.size()) return stopped_early();
        if (records_[i].type == "job.finished") return finished(i, false);
        if (!started(i)) return finish("broken");
        sandboxed(i);
        if (!chunks(i)) return finish("broken");
        if (i == records_.size()) return stopped_early();
        return finished(i, true);
    }

    bool signature_checked() const { return signature_checked_; }

  private:
    // The attempt ends before its outcome: a later attempt of the same job
    // (leased again) makes it "interrupted"; the last one is "incomplete".
    CustodyAttempt stopped_early() { return finish(superseded_ ? "interrupted" : "incomplete"); }

    CustodyAttempt finish(std::string status) {
        attempt_.status = std::move(status);
        return std::move(attempt_);
    }

    CustodyAttempt unexpected(const audit::Record& rec, const std::string& where) {
        auto link = link_for("unexpected", rec);
        link.ok = false;
        link.detail = "unexpected " + printable(rec.type) + " record " + where;
        attempt_.links.push_back(std::move(link));
        return finish("broken");
    }

    bool broken(CustodyLink link, const std::string& detail) {
        link.ok = false;
        link.detail = detail;
        attempt_.links.push_back(std::move(link));
        return false;
    }

    bool received(size_t& i) {
        const auto& rec = records_[i];
        auto link = link_for("received", rec);
        const std::string digest = text_field(rec.fields, "jws_sha256");
        const std::string jws = text_field(rec.fields, "jws");
        if (digest.size() != 64) return broken(link, "job.received has no jws_sha256 digest");
        link.detail = "signed job sha256 " + digest.substr(0, 16) + "…";
        if (const auto kid = text_field(rec.fields, "kid"); !kid.empty())
            link.detail += " (kid " + printable(kid) + ")";
        if (jws.empty()) {
            link.detail += "; the signed job itself was not recorded, digest only";
        } else {
            if (crypto::sha256_hex(jws) != digest)
                return broken(link, "the recorded signed job does not match its recorded digest");
            auto decoded = jose::decode_unverified(jws);
            if (decoded && decoded->payload.is_object()) payload_ = decoded->payload;
            if (job_key_ != nullptr) {
                auto verified = jose::verify(jws, *job_key_);
                if (!verified) {
                    return broken(link,
                                  "the signed job's signature does not verify with the "
                                  "hub key: " +
                                      verified.error().message);
                }
                payload_ = verified->payload;
                if (text_field(payload_, "job_id") != job_id_) {
                    return broken(link, "the signed job names job \"" +
                                            printable(text_field(payload_, "job_id")) +
                                            "\", not this one");
                }
                signature_checked_ = true;
                link.detail += "; signature verified with the hub key";
            } else {
                link.detail += "; signature not re-checked (pass --job-key)";
            }
        }
        attempt_.links.push_back(std::move(link));
        ++i;
        return true;
    }

    bool verified(size_t& i) {
        const auto& rec = records_[i];
        if (rec.type != "job.verified") {
            unexpected(rec, "where job.verified or job.refused belongs");
            return false;
        }
        auto link = link_for("verified", rec);
        source_ = text_field(rec.fields, "source");
        const std::string jti = text_field(rec.fields, "jti");
        if (payload_.is_object()) {
            if (text_field(payload_, "jti") != jti)
                return broken(link, "jti differs from the signed job's");
            if (text_field(payload_, "source") != source_)
                return broken(link, "source differs from the signed job's");
        }
        link.detail = "jti " + printable(jti) + ", source \"" + printable(source_) +
                      "\", operation " + printable(text_field(rec.fields, "operation"));
        attempt_.links.push_back(std::move(link));
        ++i;
        return true;
    }

    bool started(size_t& i) {
        const auto& rec = records_[i];
        if (rec.type != "job.started") {
            unexpected(rec, "where job.started belongs");
            return false;
        }
        auto link = link_for("started", rec);
        if (text_field(rec.fields, "source") != source_)
            return broken(link, "started on another source than the verified one");
        link.detail = "source \"" + printable(source_) + "\"";
        attempt_.links.push_back(std::move(link));
        ++i;
        return true;
    }

    // The worker's sandbox report (absent when the worker never got that far).
    void sandboxed(size_t& i) {
        if (i == records_.size() || records_[i].type != "job.sandboxed") return;
        const auto& rec = records_[i];
        auto link = link_for("sandboxed", rec);
        const auto names = [&](const char* key) {
            std::string out;
            const auto it = rec.fields.find(key);
            if (it == rec.fields.end() || !it->is_array()) return out;
            for (const auto& layer : *it) {
                if (!layer.is_object() || !layer.contains("layer") || !layer["layer"].is_string())
                    continue;
                out += (out.empty() ? "" : ", ") + printable(layer["layer"].get<std::string>());
            }
            return out;
        };
        const std::string missing = names("missing");
        link.detail = "worker sandboxed: " + names("applied") +
                      (missing.empty() ? "" : "; missing: " + missing);
        attempt_.links.push_back(std::move(link));
        ++i;
    }

    bool chunks(size_t& i) {
        if (i == records_.size() || records_[i].type != "delivery.chunk") return true;
        auto link = link_for("chunks", records_[i]);
        int64_t bytes = 0;
        for (; i < records_.size() && records_[i].type == "delivery.chunk"; ++i) {
            const auto& rec = records_[i];
            link.last_seq = rec.seq;
            const auto seq = int_field(rec.fields, "seq");
            const auto size = int_field(rec.fields, "size");
            const std::string digest = text_field(rec.fields, "sha256");
            if (!seq || *seq != static_cast<int64_t>(chunks_.size())) {
                return broken(link, "chunk record #" + std::to_string(rec.seq) + " has seq " +
                                        (seq ? std::to_string(*seq) : "none") + ", expected " +
                                        std::to_string(chunks_.size()));
            }
            if (!size || digest.size() != 64)
                return broken(link, "chunk " + std::to_string(*seq) + " lacks a digest or size");
            chunks_.push_back({*seq, digest, *size});
            bytes += *size;
        }
        auto root = delivery::chunks_root(chunks_);
        if (!root) return broken(link, root.error().message);
        root_ = *root;
        link.detail = std::to_string(chunks_.size()) + " chunks, " + std::to_string(bytes) +
                      " bytes, chunk-list root " + root_;
        attempt_.links.push_back(std::move(link));
        return true;
    }

    bool same_chunks(CustodyLink& link, const audit::Record& rec) {
        const auto count = int_field(rec.fields, "chunks");
        if (!count || *count != static_cast<int64_t>(chunks_.size())) {
            return broken(link, "names " + (count ? std::to_string(*count) : std::string("no")) +
                                    " chunks, the log holds " + std::to_string(chunks_.size()));
        }
        if (text_field(rec.fields, "chunks_root") != root_) {
            return broken(link,
                          "its chunk-list root differs from the one recomputed from the "
                          "chunk records");
        }
        return true;
    }

    CustodyAttempt finished(size_t i, bool after_start) {
        const auto& rec = records_[i];
        if (rec.type != "job.finished") return unexpected(rec, "where job.finished belongs");
        auto link = link_for("finished", rec);
        const std::string outcome = text_field(rec.fields, "outcome");
        if (outcome == "succeeded") {
            if (!after_start) {
                broken(link, "succeeded without a job.started record");
                return finish("broken");
            }
            if (!same_chunks(link, rec)) return finish("broken");
            link.detail =
                "succeeded: " + std::to_string(int_field(rec.fields, "tables").value_or(0)) +
                " tables, " + std::to_string(int_field(rec.fields, "views").value_or(0)) +
                " views, " + std::to_string(int_field(rec.fields, "columns").value_or(0)) +
                " columns; chunk list matches";
            attempt_.links.push_back(std::move(link));
            ++i;
            if (i == records_.size()) return stopped_early();
            return accepted(i);
        }
        link.detail = "failed: " + printable(text_field(rec.fields, "reason_code"));
        attempt_.links.push_back(std::move(link));
        ++i;
        return i == records_.size() ? finish("failed")
                                    : unexpected(records_[i], "after the job failed");
    }

    CustodyAttempt accepted(size_t i) {
        const auto& rec = records_[i];
        if (rec.type == "delivery.refused") {
            auto link = link_for("hub refused", rec);
            link.detail = "the hub did not accept the delivery: " +
                          printable(text_field(rec.fields, "error"));
            attempt_.links.push_back(std::move(link));
            return i + 1 == records_.size() ? finish("failed")
                                            : unexpected(records_[i + 1], "after the refusal");
        }
        if (rec.type != "delivery.accepted")
            return unexpected(rec, "where delivery.accepted belongs");
        auto link = link_for("accepted", rec);
        if (!same_chunks(link, rec)) return finish("broken");
        link.detail = "the hub accepted " + std::to_string(chunks_.size()) + " chunks";
        if (auto status = text_field(rec.fields, "hub_status"); !status.empty())
            link.detail += " (status " + printable(status) + ")";
        link.detail += "; chunk list matches";
        attempt_.links.push_back(std::move(link));
        return i + 1 == records_.size() ? finish("complete")
                                        : unexpected(records_[i + 1], "after the acceptance");
    }

    const std::vector<audit::Record>& records_;
    const crypto::Ed25519PublicKey* job_key_;
    const std::string& job_id_;
    CustodyAttempt attempt_;
    json payload_;  // the signed job's claims, when recorded
    std::string source_;
    std::vector<delivery::ChunkInfo> chunks_;
    std::string root_;
    bool superseded_ = false;
    bool signature_checked_ = false;
};

}  // namespace

bool CustodyReport::consistent() const {
    return status == "complete" || status == "refused" || status == "failed";
}

Result<CustodyReport> check_custody(const std::string& dir,
                                    const crypto::Ed25519PublicKey& agent_key,
                                    const std::string& job_id,
                                    const crypto::Ed25519PublicKey* job_key) {
    CustodyReport report;
    report.job_id = job_id;
    auto verified = audit::verify_log(dir, agent_key);
    if (!verified) return std::unexpected(verified.error());
    report.checkpointed_size = verified->checkpointed_size;
    if (verified->damage) report.log_damage = verified->damage->describe();

    // One group of records per attempt: each job.received starts one.
    std::vector<std::vector<audit::Record>> attempts;
    std::vector<audit::Record> before_receipt;
    auto read = audit::for_each_line(
        dir, [&](const audit::Position&, std::string_view line, bool complete) {
            if (!complete) return true;
            auto rec = audit::parse_record_line(line);
            if (!rec || rec->job_id != job_id) return true;
            ++report.records;
            report.last_seq = rec->seq;
            if (rec->type == "job.received") attempts.emplace_back();
            if (attempts.empty()) {
                before_receipt.push_back(std::move(*rec));
            } else {
                attempts.back().push_back(std::move(*rec));
            }
            return true;
        });
    if (!read) return std::unexpected(read.error());

    if (report.records == 0) {
        report.status = report.log_damage ? "broken" : "not_found";
        return report;
    }
    if (!before_receipt.empty()) {
        CustodyAttempt orphan;
        auto link = link_for("unexpected", before_receipt.front());
        link.ok = false;
        link.detail = printable(before_receipt.front().type) + " record before any job.received";
        orphan.links.push_back(std::move(link));
        orphan.status = "broken";
        report.attempts.push_back(std::move(orphan));
    }
    for (size_t a = 0; a < attempts.size(); ++a) {
        AttemptChecker checker(attempts[a], job_key, job_id);
        report.attempts.push_back(checker.check(/*superseded=*/a + 1 < attempts.size()));
        report.signature_checked = report.signature_checked || checker.signature_checked();
    }
    bool any_broken = report.log_damage.has_value();
    for (const auto& attempt : report.attempts)
        any_broken = any_broken || attempt.status == "broken";
    report.status = any_broken ? "broken" : report.attempts.back().status;
    return report;
}

int audit_custody(const CustodyOptions& options, std::ostream& out, std::ostream& err) {
    auto agent_key = crypto::Ed25519PublicKey::from_pem_file(options.public_key_file);
    if (!agent_key) {
        err << "audit custody: cannot load public key " << options.public_key_file << ": "
            << agent_key.error().describe() << "\n";
        return kExitConfig;
    }
    std::optional<crypto::Ed25519PublicKey> job_key;
    if (!options.job_key_file.empty()) {
        auto loaded = crypto::Ed25519PublicKey::from_pem_file(options.job_key_file);
        if (!loaded) {
            err << "audit custody: cannot load job-signing key " << options.job_key_file << ": "
                << loaded.error().describe() << "\n";
            return kExitConfig;
        }
        job_key = std::move(*loaded);
    }
    auto report =
        check_custody(options.dir, *agent_key, options.job_id, job_key ? &*job_key : nullptr);
    if (!report) {
        err << "audit custody: " << report.error().describe() << "\n";
        return kExitConfig;
    }
    const bool covered = report->records > 0 && report->last_seq < report->checkpointed_size;
    const int code = report->consistent() ? kExitOk : kExitFailure;

    if (options.json) {
        json doc{{"job_id", report->job_id},
                 {"status", report->status},
                 {"records", report->records},
                 {"signature_checked", report->signature_checked},
                 {"checkpointed_size", report->checkpointed_size},
                 {"covered_by_checkpoint", covered},
                 {"attempts", json::array()}};
        if (report->log_damage) doc["log_damage"] = *report->log_damage;
        for (const auto& attempt : report->attempts) {
            json links = json::array();
            for (const auto& link : attempt.links) {
                links.push_back({{"link", link.name},
                                 {"first_seq", link.first_seq},
                                 {"last_seq", link.last_seq},
                                 {"ts", link.ts},
                                 {"ok", link.ok},
                                 {"detail", link.detail}});
            }
            doc["attempts"].push_back({{"status", attempt.status}, {"links", std::move(links)}});
        }
        out << doc.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
        return code;
    }

    out << "custody of job " << printable(report->job_id) << "\n";
    if (report->log_damage) out << "  the audit log is damaged: " << *report->log_damage << "\n";
    for (size_t a = 0; a < report->attempts.size(); ++a) {
        const auto& attempt = report->attempts[a];
        if (report->attempts.size() > 1)
            out << "  attempt " << a + 1 << " (" << attempt.status << ")\n";
        for (const auto& link : attempt.links) {
            std::string name = link.name;
            if (name.size() < 11) name.resize(11, ' ');
            out << "  [" << (link.ok ? "ok" : "BROKEN") << "] " << name << " #" << link.first_seq;
            if (link.last_seq != link.first_seq) out << "-#" << link.last_seq;
            out << "  " << printable(link.ts) << "  " << link.detail << "\n";
        }
    }
    std::ostream& summary = report->consistent() ? out : err;
    summary << "audit custody: " << report->status;
    if (report->status == "not_found") {
        summary << ": no audit record names job " << printable(report->job_id);
    } else if (report->status == "incomplete") {
        summary << ": the chain stops after \""
                << (report->attempts.back().links.empty()
                        ? std::string("nothing")
                        : report->attempts.back().links.back().name)
                << "\" (the agent may have stopped in the middle of the job)";
    } else if (report->consistent()) {
        summary << "; every link checked; "
                << (covered ? "all " + std::to_string(report->records) +
                                  " records are covered by the signed checkpoint at tree size " +
                                  std::to_string(report->checkpointed_size)
                            : std::string("the newest records are not yet covered by a "
                                          "signed checkpoint"));
    }
    summary << "\n";
    return code;
}

}  // namespace sa::agent::app
