#pragma once
// A GoogleTest base for suites that need a throwaway database server
// (Server: PgServer or MariaDbServer, with static skip_reason() and
// start()): one server for the whole suite (starting one takes seconds), and
// every test skipped, with the reason, where none can run (not root, not
// installed). A derived SetUp() calls the base SetUp() first and returns
// when IsSkipped() or HasFatalFailure().
#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace sa::agent::connectors::testing {

template <typename Server>
class ServerSuite : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        if (!Server::skip_reason().empty()) return;
        auto server = Server::start();
        if (server) {
            server_ = std::move(*server);
        } else {
            start_error_ = server.error().describe();
        }
    }
    static void TearDownTestSuite() { server_.reset(); }

    void SetUp() override {
        if (auto reason = Server::skip_reason(); !reason.empty()) GTEST_SKIP() << reason;
        ASSERT_TRUE(server_) << start_error_;
    }

    inline static std::unique_ptr<Server> server_;
    inline static std::string start_error_;
};

}  // namespace sa::agent::connectors::testing
