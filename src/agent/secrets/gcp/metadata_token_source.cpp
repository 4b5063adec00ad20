#include "agent/secrets/gcp/metadata_token_source.h"

#include "agent/secrets/http_store.h"

namespace sa::agent::secrets::gcp {

Result<std::unique_ptr<MetadataTokenSource>> MetadataTokenSource::create(
    const GcpAuthSettings& settings, std::chrono::milliseconds timeout,
    std::unique_ptr<egress::Transport> transport, const auth::Clock& clock) {
    std::string base = settings.metadata_url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    const bool http = base.starts_with("http://") || base.starts_with("https://");
    const size_t host_start = base.find("://") + 3;
    if (!http || base.size() <= host_start ||
        base.find_first_of("?#", host_start) != std::string::npos) {
        return fail(ErrorCode::invalid_argument,
                    "auth.metadata_url must be an http(s)://HOST[:PORT] URL without query");
    }
    if (settings.service_account.empty() ||
        settings.service_account.find('/') != std::string::npos) {
        return fail(ErrorCode::invalid_argument,
                    "auth.service_account must be \"default\" or a service account e-mail");
    }
    if (!transport)
        return fail(ErrorCode::invalid_argument, "metadata token source needs a transport");
    std::string url = base + "/computeMetadata/v1/instance/service-accounts/" +
                      crypto::percent_encode(settings.service_account) + "/token";
    std::string where =
        "gcp metadata server token for service account \"" + settings.service_account + "\"";
    return std::unique_ptr<MetadataTokenSource>(new MetadataTokenSource(
        std::move(url), std::move(where), timeout, std::move(transport), clock));
}

MetadataTokenSource::MetadataTokenSource(std::string url, std::string where,
                                         std::chrono::milliseconds timeout,
                                         std::unique_ptr<egress::Transport> transport,
                                         const auth::Clock& clock)
    : RefreshingTokenSource(clock),
      url_(std::move(url)),
      where_(std::move(where)),
      timeout_(timeout),
      transport_(std::move(transport)) {}

Result<AccessToken> MetadataTokenSource::fetch() {
    egress::HttpRequest request;
    request.method = "GET";
    request.url = url_;
    request.headers = {{"Metadata-Flavor", "Google"}};
    request.timeout = timeout_;
    auto response = transport_->send(request);
    if (!response) return std::unexpected(transport_store_error(where_, response.error()));

    // Checked before the status: only the metadata server's word counts.
    const std::string* flavor = response->header("metadata-flavor");
    if (flavor == nullptr || *flavor != "Google") {
        wipe(response->body);
        return fail(ErrorCode::invalid_argument,
                    where_ + ": answer (HTTP " + std::to_string(response->status) +
                        ") lacks \"Metadata-Flavor: Google\": not the metadata server");
    }
    if (response->status != 200) {
        // The metadata server answers errors in plain text ("service account
        // not found", ...). A 404 means the account is not attached to this
        // instance: a grant to fix, not a reference.
        Error error = http_store_error(where_, response->status, error_detail(response->body));
        if (error.code == ErrorCode::not_found) error.code = ErrorCode::permission_denied;
        return std::unexpected(std::move(error));
    }
    return parse_token_answer(response->body, where_);
}

}  // namespace sa::agent::secrets::gcp
