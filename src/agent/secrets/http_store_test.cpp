#include "agent/secrets/http_store.h"

#include <gtest/gtest.h>

namespace sa::agent::secrets {
namespace {

TEST(HttpStoreTest, StatusMapsToTheThreeKinds) {
    const std::string where = store_where("vault", "kv/db");
    EXPECT_EQ(http_store_error(where, 404).code, ErrorCode::not_found);
    EXPECT_EQ(http_store_error(where, 410).code, ErrorCode::not_found);
    EXPECT_EQ(http_store_error(where, 401).code, ErrorCode::permission_denied);
    EXPECT_EQ(http_store_error(where, 403).code, ErrorCode::permission_denied);
    for (long status : {408L, 425L, 429L, 500L, 502L, 503L, 504L}) {
        EXPECT_EQ(http_store_error(where, status).code, ErrorCode::unavailable) << status;
    }
    EXPECT_EQ(http_store_error(where, 400).code, ErrorCode::invalid_argument);
    EXPECT_EQ(http_store_error(where, 302).code, ErrorCode::invalid_argument);
}

TEST(HttpStoreTest, MessageNamesStorePathStatusAndDetail) {
    const Error error = http_store_error(store_where("aws", "prod/db"), 403, "AccessDenied");
    EXPECT_EQ(error.message, "secret store \"aws\" path \"prod/db\": HTTP 403: AccessDenied");
    EXPECT_EQ(http_store_error("x", 503).message, "x: HTTP 503");
}

TEST(HttpStoreTest, TransportErrorsAreUnavailableExceptPolicyRefusals) {
    const Error refused =
        transport_store_error("w", Error{ErrorCode::permission_denied, "not in egress allowlist"});
    EXPECT_EQ(refused.code, ErrorCode::permission_denied);
    EXPECT_EQ(refused.message, "w: not in egress allowlist");
    EXPECT_EQ(transport_store_error("w", Error{ErrorCode::unavailable, "timeout"}).code,
              ErrorCode::unavailable);
    EXPECT_EQ(transport_store_error("w", Error{ErrorCode::invalid_argument, "too large"}).code,
              ErrorCode::unavailable);
}

TEST(HttpStoreTest, ErrorDetailIsBoundedAndPrintable) {
    EXPECT_EQ(error_detail("  permission\ndenied\t "), "permission denied");
    EXPECT_EQ(error_detail(std::string(500, 'a')).size(), 200u);
    EXPECT_EQ(error_detail("\r\n"), "");
}

}  // namespace
}  // namespace sa::agent::secrets
