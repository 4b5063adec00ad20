// Fuzz target: the audit verifier, `audit show`/`custody` and the SIEM
// exporter parse record, checkpoint and retention-anchor lines from an audit
// directory that may have been copied, cut or tampered with.
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "agent/audit/canonical.h"
#include "agent/audit/format.h"
#include "agent/audit/retention.h"

namespace {

namespace audit = sa::agent::audit;

// "Canonical" is defined as the bytes nlohmann's dump writes (canonical.h),
// so whatever the fast scanner accepts must parse and dump back unchanged.
void check_canonical_round_trip(std::string_view input) {
    auto j = nlohmann::json::parse(input, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) __builtin_trap();
    auto again = audit::canonical_dump(j);
    if (!again || *again != input) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);

    const bool canonical = audit::check_canonical_json(input).has_value();
    if (canonical) check_canonical_round_trip(input);

    // The scanner and the full parser must agree on every record line: the
    // verifier uses the first, show/custody/export the second.
    auto head = audit::scan_record_line(input);
    auto record = audit::parse_record_line(input);
    if (head.has_value() != record.has_value()) __builtin_trap();
    if (record) {
        if (!canonical || head->seq != record->seq) __builtin_trap();
        // prev_raw is the text between the quotes; equal to the decoded value
        // whenever it holds no escape.
        if (head->prev_raw.find('\\') == std::string_view::npos && head->prev_raw != record->prev)
            __builtin_trap();
        if (!record->fields.is_object()) __builtin_trap();
    }

    if (auto cp = audit::parse_checkpoint_line(input)) {
        // A parsed checkpoint re-serialises and parses back to the same values.
        auto again = audit::checkpoint_from_json(audit::to_json(*cp));
        if (!again || again->tree_size != cp->tree_size || again->root != cp->root ||
            again->signature != cp->signature || again->agent_id != cp->agent_id ||
            again->ts != cp->ts || again->key_id != cp->key_id)
            __builtin_trap();
        (void)audit::checkpoint_note(cp->agent_id, cp->tree_size, cp->root, cp->ts);
    }

    if (auto anchor = audit::parse_anchor_line(input)) {
        if (!canonical) __builtin_trap();
        if (anchor->removed_first_seq > anchor->removed_last_seq ||
            anchor->removed_last_seq + 1 != anchor->first_seq)
            __builtin_trap();
        // What the writer would store for the parsed anchor parses back to it
        // (unknown fields in the input are ignored, so compare values).
        auto text = audit::canonical_dump(audit::to_json(*anchor));
        if (!text) __builtin_trap();
        auto again = audit::parse_anchor_line(*text);
        if (!again || again->first_seq != anchor->first_seq || again->prev != anchor->prev ||
            again->frontier != anchor->frontier || again->removed != anchor->removed ||
            again->removed_first_seq != anchor->removed_first_seq || again->ts != anchor->ts)
            __builtin_trap();
    }
    return 0;
}
