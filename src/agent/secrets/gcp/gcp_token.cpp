#include "agent/secrets/gcp/gcp_token.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "agent/secrets/json_wipe.h"

namespace sa::agent::secrets::gcp {
namespace {

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

}  // namespace

Result<AccessToken> parse_token_answer(std::string& body, std::string_view where) {
    nlohmann::json doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    wipe(body);
    const auto invalid = [&](const char* what) -> Result<AccessToken> {
        wipe_json(doc);
        return fail(ErrorCode::invalid_argument, std::string(where) + ": token answer " + what);
    };
    if (!doc.is_object()) return invalid("is not a JSON object");
    const auto token = doc.find("access_token");
    if (token == doc.end() || !token->is_string() || token->get_ref<const std::string&>().empty()) {
        return invalid("has no access_token");
    }
    const auto type = doc.find("token_type");
    if (type == doc.end() || !type->is_string() ||
        !iequals(type->get_ref<const std::string&>(), "Bearer")) {
        return invalid("has a token_type other than Bearer");
    }
    const auto expires = doc.find("expires_in");
    if (expires == doc.end() || !expires->is_number_integer() || expires->get<int64_t>() <= 0) {
        return invalid("has no positive integer expires_in");
    }
    AccessToken out{SecretValue::copy_of(token->get_ref<const std::string&>()),
                    expires->get<int64_t>()};
    wipe_json(doc);
    return out;
}

Result<SecretValue> RefreshingTokenSource::access_token() {
    std::lock_guard lock(mutex_);
    const int64_t now = clock_.now_seconds();
    if (token_ && now < refresh_at_) return SecretValue::copy_of(token_->reveal());
    // The lifetime counts from before the request, to stay on the safe side.
    auto fetched = fetch();
    if (!fetched) {
        // An early refresh that failed is not fatal while the token still
        // works; the next call tries again.
        if (token_ && clock_.now_seconds() < expires_at_) {
            return SecretValue::copy_of(token_->reveal());
        }
        drop();
        return std::unexpected(fetched.error());
    }
    const int64_t lifetime = fetched->expires_in;
    const int64_t margin = std::min(kRefreshMarginSeconds, lifetime / 2);
    token_ = std::move(fetched->value);
    refresh_at_ = now + lifetime - margin;
    expires_at_ = now + lifetime;
    return SecretValue::copy_of(token_->reveal());
}

void RefreshingTokenSource::invalidate() {
    std::lock_guard lock(mutex_);
    drop();
}

int64_t RefreshingTokenSource::refresh_at() const {
    std::lock_guard lock(mutex_);
    return refresh_at_;
}

void RefreshingTokenSource::drop() {
    token_.reset();
    refresh_at_ = 0;
    expires_at_ = 0;
}

const auth::Clock& system_clock() {
    static const auth::SystemClock clock;
    return clock;
}

}  // namespace sa::agent::secrets::gcp
