#pragma once
// Access tokens from the GCP metadata server (Compute Engine, GKE workload
// identity, Cloud Run): GET {metadata_url}/computeMetadata/v1/instance/
// service-accounts/{service_account}/token with "Metadata-Flavor: Google".
//
// The answer must carry "Metadata-Flavor: Google" as well; an answer without
// it did not come from the metadata server (a proxy, a captive portal, a
// wrong metadata_url) and is refused (invalid_argument), whatever its status.
// Tokens are cached and refreshed 5 minutes before they expire (see
// RefreshingTokenSource), which serialises token requests.
#include <chrono>
#include <memory>
#include <string>

#include "agent/egress/http.h"
#include "agent/secrets/gcp/gcp_settings.h"
#include "agent/secrets/gcp/gcp_token.h"

namespace sa::agent::secrets::gcp {

class MetadataTokenSource final : public RefreshingTokenSource {
  public:
    // Does no I/O. Errors: invalid_argument naming the setting
    // (auth.metadata_url not http(s)://HOST..., auth.service_account empty or
    // containing '/'). clock must outlive the source.
    static Result<std::unique_ptr<MetadataTokenSource>> create(
        const GcpAuthSettings& settings, std::chrono::milliseconds timeout,
        std::unique_ptr<egress::Transport> transport, const auth::Clock& clock);

    // The token URL (for messages and tests).
    const std::string& token_url() const { return url_; }

  private:
    MetadataTokenSource(std::string url, std::string where, std::chrono::milliseconds timeout,
                        std::unique_ptr<egress::Transport> transport, const auth::Clock& clock);
    Result<AccessToken> fetch() override;

    std::string url_;
    std::string where_;
    std::chrono::milliseconds timeout_;
    std::unique_ptr<egress::Transport> transport_;
};

}  // namespace sa::agent::secrets::gcp
