#pragma once
// A GoogleTest base for suites that need a MariaDB server: one throwaway
// server for the whole suite (starting one takes a second or two), and every
// test skipped, with the reason, where none can run (not root, not
// installed). A derived SetUp() calls MariaDbServerSuite::SetUp() first and
// returns when IsSkipped() or HasFatalFailure().
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "agent/connectors/testing/mariadb_server.h"

namespace sa::agent::connectors::testing {

class MariaDbServerSuite : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        if (!MariaDbServer::skip_reason().empty()) return;
        auto server = MariaDbServer::start();
        if (server) {
            server_ = std::move(*server);
        } else {
            start_error_ = server.error().describe();
        }
    }
    static void TearDownTestSuite() { server_.reset(); }

    void SetUp() override {
        if (auto reason = MariaDbServer::skip_reason(); !reason.empty()) GTEST_SKIP() << reason;
        ASSERT_TRUE(server_) << start_error_;
    }

    inline static std::unique_ptr<MariaDbServer> server_;
    inline static std::string start_error_;
};

}  // namespace sa::agent::connectors::testing
