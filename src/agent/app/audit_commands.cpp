#include "agent/app/audit_commands.h"

#include <ctime>
#include <optional>
#include <ostream>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/app/audit_services.h"
#include "agent/app/commands.h"
#include "agent/app/egress_wiring.h"
#include "agent/app/secret_store_wiring.h"
#include "agent/audit/field_hasher.h"
#include "agent/audit/format.h"
#include "agent/audit/proof.h"
#include "agent/audit/retention.h"
#include "agent/audit/verify.h"
#include "agent/timestamp/stamp_verify.h"
#include "build_info.h"
#include "common/crypto/ed25519.h"
#include "common/util/files.h"

namespace sa::agent::app {
namespace {

using nlohmann::json;

int print_proof(const Result<json>& proof, std::ostream& out, std::ostream& err) {
    if (!proof) {
        err << "audit prove: " << proof.error().describe() << "\n";
        return proof.error().code == ErrorCode::integrity ? kExitFailure : kExitConfig;
    }
    out << proof->dump(2) << "\n";
    return kExitOk;
}

// Unix milliseconds of "YYYY-MM-DDTHH:MM:SS[.fff][Z|+hh:mm|-hh:mm]".
std::optional<int64_t> parse_rfc3339_millis(const std::string& text) {
    int y, mo, d, h, mi, s;
    int consumed = 0;
    if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s,
                    &consumed) != 6 ||
        consumed != 19)
        return std::nullopt;
    size_t i = 19;
    int64_t millis = 0;
    if (i < text.size() && text[i] == '.') {
        ++i;
        int digits = 0;
        while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
            if (digits < 3) millis = millis * 10 + (text[i] - '0');
            ++digits;
            ++i;
        }
        if (digits == 0) return std::nullopt;
        for (; digits < 3; ++digits) millis *= 10;
    }
    int64_t offset_s = 0;
    if (i < text.size() && (text[i] == 'Z' || text[i] == 'z')) {
        ++i;
    } else if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
        int oh, om;
        if (i + 6 != text.size() || std::sscanf(text.c_str() + i + 1, "%2d:%2d", &oh, &om) != 2)
            return std::nullopt;
        offset_s = (oh * 3600 + om * 60) * (text[i] == '+' ? 1 : -1);
        i += 6;
    } else {
        return std::nullopt;
    }
    if (i != text.size() || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
        return std::nullopt;
    std::tm tm{};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    int64_t secs = static_cast<int64_t>(::timegm(&tm)) - offset_s;
    return secs * 1000 + millis;
}

bool type_matches(const std::string& pattern, const std::string& type) {
    if (pattern.empty()) return true;
    if (pattern.back() == '*') return type.starts_with(pattern.substr(0, pattern.size() - 1));
    return type == pattern;
}

}  // namespace

std::string printable(const std::string& s) {
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return json(s).dump();
    return s;
}

int audit_verify(const std::string& dir, const std::string& public_key_file, std::ostream& out,
                 std::ostream& err, const std::string& tsa_ca_file) {
    auto key = crypto::Ed25519PublicKey::from_pem_file(public_key_file);
    if (!key) {
        err << "audit verify: cannot load public key " << public_key_file << ": "
            << key.error().describe() << "\n";
        return kExitConfig;
    }
    auto report = audit::verify_log(dir, *key);
    if (!report) {
        err << "audit verify: " << report.error().describe() << "\n";
        return kExitConfig;
    }
    if (report->damage) {
        err << "audit verify: " << report->damage->describe() << "\n";
        return kExitFailure;
    }
    auto stamps = timestamp::verify_timestamps(
        dir, tsa_ca_file.empty() ? std::nullopt : std::optional<std::string>(tsa_ca_file));
    if (!stamps) {
        err << "audit verify: timestamps: " << stamps.error().describe() << "\n";
        return kExitConfig;
    }
    if (stamps->damage) {
        err << "audit verify: " << stamps->damage->describe() << "\n";
        return kExitFailure;
    }
    out << "audit verify: intact: " << report->records << " records";
    if (report->removed_by_retention > 0) {
        out << " (" << report->removed_by_retention << " of them removed by retention, "
            << report->anchors << " anchor" << (report->anchors == 1 ? "" : "s")
            << "; oldest kept seq " << report->first_seq << ")";
    }
    out << ", " << report->checkpoints << " checkpoints (last covers " << report->checkpointed_size
        << "), root " << report->root;
    if (report->records > report->checkpointed_size)
        out << "; " << report->records - report->checkpointed_size
            << " newest records not yet covered by a checkpoint";
    if (stamps->tokens > 0) {
        out << "; " << stamps->tokens << " RFC 3161 timestamps"
            << (stamps->signatures_checked ? " verified (latest covers tree size " +
                                                 std::to_string(stamps->last_stamped_tree_size) +
                                                 " at " + stamps->last_gen_time + ")"
                                           : ", signatures NOT checked (pass --tsa-ca)");
    }
    out << "\n";
    return kExitOk;
}

int audit_prove_inclusion(const std::string& dir, uint64_t index, std::ostream& out,
                          std::ostream& err) {
    return print_proof(audit::inclusion_proof(dir, index), out, err);
}

int audit_prove_consistency(const std::string& dir, uint64_t from, uint64_t to, std::ostream& out,
                            std::ostream& err) {
    return print_proof(audit::consistency_proof(dir, from, to), out, err);
}

int audit_verify_proof(const std::string& proof_file, const std::string& public_key_file,
                       std::ostream& out, std::ostream& err) {
    auto text = util::read_file(proof_file);
    if (!text) {
        err << "audit verify-proof: " << text.error().describe() << "\n";
        return kExitConfig;
    }
    json doc = json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) {
        err << "audit verify-proof: " << proof_file << " is not JSON\n";
        return kExitConfig;
    }
    std::optional<crypto::Ed25519PublicKey> key;
    if (!public_key_file.empty()) {
        auto loaded = crypto::Ed25519PublicKey::from_pem_file(public_key_file);
        if (!loaded) {
            err << "audit verify-proof: cannot load public key " << public_key_file << ": "
                << loaded.error().describe() << "\n";
            return kExitConfig;
        }
        key = std::move(*loaded);
    }
    auto st = audit::verify_proof(doc, key ? &*key : nullptr);
    if (!st) {
        err << "audit verify-proof: " << st.error().describe() << "\n";
        return st.error().code == ErrorCode::invalid_argument ? kExitConfig : kExitFailure;
    }
    out << "audit verify-proof: " << doc["kind"].get<std::string>() << " proof OK"
        << (key ? " (checkpoint signature verified)"
                : " (Merkle proof only; pass --public-key to check the signed checkpoint)")
        << "\n";
    return kExitOk;
}

int audit_show(const std::string& dir, const AuditShowFilter& filter, std::ostream& out,
               std::ostream& err) {
    std::optional<int64_t> since;
    if (!filter.since.empty()) {
        since = parse_rfc3339_millis(filter.since);
        if (!since) {
            err << "audit show: --since: not an RFC 3339 time: " << filter.since << "\n";
            return kExitConfig;
        }
    }
    bool unreadable = false;
    auto st = audit::for_each_line(
        dir, [&](const audit::Position& pos, std::string_view line, bool complete) {
            auto rec = audit::parse_record_line(line);
            if (!complete || !rec) {
                err << "audit show: " << pos.file << ":" << pos.line << ": unreadable record\n";
                unreadable = true;
                return true;
            }
            if (!filter.job_id.empty() && rec->job_id != filter.job_id) return true;
            if (!type_matches(filter.type, rec->type)) return true;
            if (since) {
                auto ts = parse_rfc3339_millis(rec->ts);
                if (!ts || *ts < *since) return true;
            }
            out << printable(rec->ts) << " #" << rec->seq << " " << printable(rec->type) << " "
                << printable(rec->actor);
            if (!rec->job_id.empty()) out << " job=" << printable(rec->job_id);
            if (!rec->trace_id.empty()) out << " trace=" << printable(rec->trace_id);
            for (auto it = rec->fields.begin(); it != rec->fields.end(); ++it)
                out << " " << printable(it.key()) << "="
                    << (it->is_string() ? printable(it->get<std::string>()) : it->dump());
            out << "\n";
            return true;
        });
    if (!st) {
        err << "audit show: " << st.error().describe() << "\n";
        return kExitConfig;
    }
    return unreadable ? kExitFailure : kExitOk;
}

int audit_preserve(const std::string& dir, const AuditPreserveRequest& request, std::ostream& out,
                   std::ostream& err) {
    if (request.list) {
        auto marked = audit::list_preserved(dir);
        if (!marked) {
            err << "audit preserve: " << marked.error().describe() << "\n";
            return kExitConfig;
        }
        for (const auto& m : *marked)
            out << m.segment << "  preserved " << printable(m.ts) << ": " << printable(m.reason)
                << "\n";
        if (marked->empty()) out << "audit preserve: no segment is preserved\n";
        return kExitOk;
    }
    if (request.reason.empty()) {
        err << "audit preserve: --reason is required (say why these records are kept)\n";
        return kExitConfig;
    }
    std::vector<std::string> segments;
    if (!request.segment.empty()) {
        if (!request.job_id.empty() || !request.since.empty() || !request.until.empty()) {
            err << "audit preserve: --segment cannot be combined with --job/--since/--until\n";
            return kExitConfig;
        }
        segments.push_back(request.segment);
    } else {
        audit::SegmentQuery query;
        query.job_id = request.job_id;
        for (const auto& [text, slot, flag] :
             {std::tuple{request.since, &query.since_millis, "--since"},
              std::tuple{request.until, &query.until_millis, "--until"}}) {
            if (text.empty()) continue;
            auto millis = parse_rfc3339_millis(text);
            if (!millis) {
                err << "audit preserve: " << flag << ": not an RFC 3339 time: " << text << "\n";
                return kExitConfig;
            }
            *slot = *millis;
        }
        if (query.job_id.empty() && !query.since_millis && !query.until_millis) {
            err << "audit preserve: give --segment NAME, --job ID or --since/--until\n";
            return kExitConfig;
        }
        auto found = audit::segments_for(dir, query);
        if (!found) {
            err << "audit preserve: " << found.error().describe() << "\n";
            return kExitConfig;
        }
        if (found->empty()) {
            err << "audit preserve: no segment holds matching records\n";
            return kExitFailure;
        }
        segments = std::move(*found);
    }
    for (const auto& segment : segments) {
        if (auto st = audit::preserve_segment(dir, segment, request.reason); !st) {
            err << "audit preserve: " << segment << ": " << st.error().describe() << "\n";
            return st.error().code == ErrorCode::io ? kExitFailure : kExitConfig;
        }
        out << segment << "  preserved\n";
    }
    return kExitOk;
}

int audit_unpreserve(const std::string& dir, const std::string& segment, std::ostream& out,
                     std::ostream& err) {
    if (auto st = audit::unpreserve_segment(dir, segment); !st) {
        err << "audit unpreserve: " << segment << ": " << st.error().describe() << "\n";
        return kExitConfig;
    }
    out << segment << "  no longer preserved: retention applies again\n";
    return kExitOk;
}

namespace {

// The salt audit.hmac_salt of the config at config_path names, read through
// the secret stores the agent would build (null: the config has none).
Result<std::shared_ptr<const audit::FieldHasher>> salt_from_config(const std::string& config_path) {
    auto config = config::load_config(config_path);
    if (!config) return std::unexpected(config.error());
    if (!config->audit.hmac_salt) return std::shared_ptr<const audit::FieldHasher>();
    secrets::SecretStores stores;
    add_local_secret_stores(stores, *config);
    auto proxy = AgentProxy::load(*config, stores);
    if (!proxy) return std::unexpected(proxy.error());
    const egress::ProxyConfig* proxy_config = *proxy ? &(*proxy)->config() : nullptr;
    auto policy_options = egress_policy_options(*config, proxy_config);
    if (!policy_options) return std::unexpected(policy_options.error());
    const egress::EgressPolicy policy(std::move(*policy_options));
    egress::HttpClient::Options store_http;
    store_http.user_agent = std::string("secure-agent/") + build::kVersion + " audit hash";
    store_http.policy = &policy;
    store_http.proxy = proxy_config;
    if (auto added =
            add_remote_secret_stores(stores, *config, http_store_transports(std::move(store_http)));
        !added) {
        return std::unexpected(added.error());
    }
    return load_configured_salt(*config, stores);
}

}  // namespace

int audit_hash(const std::string& dir, const std::string& value, std::ostream& out,
               std::ostream& err, const std::string& config_path) {
    std::shared_ptr<const audit::FieldHasher> hasher;
    if (!config_path.empty()) {
        auto configured = salt_from_config(config_path);
        if (!configured) {
            err << "audit hash: " << configured.error().describe() << "\n";
            return kExitConfig;
        }
        hasher = std::move(*configured);
    }
    if (!hasher) {
        auto file = audit::FieldHasher::load(dir);
        if (!file) {
            err << "audit hash: " << file.error().describe() << "\n";
            if (file.error().code == ErrorCode::not_found) {
                err << "audit hash: " << dir
                    << " has no hmac.salt: when its salt comes from a secret store "
                       "(audit.hmac_salt), pass --config with the agent's config file\n";
            }
            return kExitConfig;
        }
        hasher = std::make_shared<const audit::FieldHasher>(std::move(*file));
    }
    if (auto bound = audit::bind_salt_source(dir, *hasher, /*record=*/false); !bound) {
        err << "audit hash: " << bound.error().describe() << "\n";
        return kExitConfig;
    }
    out << hasher->hash(value) << "\n";
    return kExitOk;
}

}  // namespace sa::agent::app
