#include "agent/egress/curl_global.h"

#include "agent/egress/connection_pinning.h"

#include <curl/curl.h>
#include <gtest/gtest.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>

#include "agent/egress/http_client.h"
#include "agent/egress/testing/test_pki.h"
#include "agent/egress/testing/tls_test_server.h"
#include "agent/secrets/secret_value.h"
#include "common/crypto/random.h"

namespace sa::agent::egress {
namespace {

namespace fs = std::filesystem;
using detail::curl_allocator;
using testing::pki;
using testing::TlsTestServer;

// What the release observer saw. Atomics: the observer is a plain function.
std::atomic<size_t> g_released{0};            // blocks released
std::atomic<size_t> g_unwiped{0};             // blocks with a non-zero byte when observed
std::atomic<size_t> g_last_length{0};         // length of the last block
std::atomic<const void*> g_last{nullptr};     // address of the last block
std::atomic<const void*> g_watched{nullptr};  // a block a test waits for
std::atomic<bool> g_watched_released{false};

void observe(const unsigned char* bytes, size_t length) {
    g_released.fetch_add(1);
    if (std::any_of(bytes, bytes + length, [](unsigned char b) { return b != 0; })) {
        g_unwiped.fetch_add(1);
    }
    g_last_length.store(length);
    g_last.store(bytes);
    if (bytes == g_watched.load()) g_watched_released = true;
}

class CurlAllocatorTest : public ::testing::Test {
  protected:
    void SetUp() override {
        g_released = 0;
        g_unwiped = 0;
        g_last_length = 0;
        g_last = nullptr;
        g_watched = nullptr;
        g_watched_released = false;
        detail::set_curl_release_observer_for_testing(&observe);
    }
    void TearDown() override { detail::set_curl_release_observer_for_testing(nullptr); }
};

TEST_F(CurlAllocatorTest, FreeWipesTheWholeUsableBlock) {
    auto* block = static_cast<unsigned char*>(curl_allocator().malloc(100));
    ASSERT_NE(block, nullptr);
    const size_t usable = malloc_usable_size(block);
    ASSERT_GE(usable, 100u);
    std::memset(block, 'S', usable);  // also the slack after the requested size
    curl_allocator().free(block);
    EXPECT_EQ(g_released.load(), 1u);
    EXPECT_EQ(g_last.load(), block);
    EXPECT_EQ(g_last_length.load(), usable);
    EXPECT_EQ(g_unwiped.load(), 0u);
}

TEST_F(CurlAllocatorTest, FreeOfNullIsANoOp) {
    curl_allocator().free(nullptr);
    EXPECT_EQ(g_released.load(), 0u);
}

TEST_F(CurlAllocatorTest, ReallocCopiesIntoANewBlockAndWipesTheOld) {
    auto* old_block = static_cast<char*>(curl_allocator().malloc(32));
    ASSERT_NE(old_block, nullptr);
    std::memcpy(old_block, "Authorization: Basic c2VjcmV0\0", 30);
    // Growing: the data moves, the old block is wiped before it is freed.
    auto* grown = static_cast<char*>(curl_allocator().realloc(old_block, 64 * 1024));
    ASSERT_NE(grown, nullptr);
    EXPECT_NE(static_cast<void*>(grown), static_cast<void*>(old_block));
    EXPECT_STREQ(grown, "Authorization: Basic c2VjcmV0");
    EXPECT_EQ(g_released.load(), 1u);
    EXPECT_EQ(g_last.load(), old_block);
    EXPECT_EQ(g_unwiped.load(), 0u);
    // Shrinking copies only what fits, and wipes the big block.
    auto* shrunk = static_cast<char*>(curl_allocator().realloc(grown, 13));
    ASSERT_NE(shrunk, nullptr);
    EXPECT_EQ(std::string(shrunk, 13), "Authorization");
    EXPECT_EQ(g_released.load(), 2u);
    EXPECT_EQ(g_last.load(), grown);
    EXPECT_GE(g_last_length.load(), 64u * 1024);
    EXPECT_EQ(g_unwiped.load(), 0u);
    curl_allocator().free(shrunk);
    EXPECT_EQ(g_released.load(), 3u);
    EXPECT_EQ(g_unwiped.load(), 0u);
}

TEST_F(CurlAllocatorTest, ReallocOfNullAllocatesAndToZeroStillReturnsABlock) {
    void* fresh = curl_allocator().realloc(nullptr, 16);
    ASSERT_NE(fresh, nullptr);
    EXPECT_EQ(g_released.load(), 0u);
    void* tiny = curl_allocator().realloc(fresh, 0);
    EXPECT_NE(tiny, nullptr);  // never NULL on success: a caller could free twice
    EXPECT_EQ(g_released.load(), 1u);
    curl_allocator().free(tiny);
    EXPECT_EQ(g_released.load(), 2u);
    EXPECT_EQ(g_unwiped.load(), 0u);
}

TEST_F(CurlAllocatorTest, StrdupAndCallocAndTheirFrees) {
    char* copy = curl_allocator().strdup("proxy-secret");
    ASSERT_NE(copy, nullptr);
    EXPECT_STREQ(copy, "proxy-secret");
    curl_allocator().free(copy);
    EXPECT_EQ(g_last.load(), copy);
    auto* zeros = static_cast<unsigned char*>(curl_allocator().calloc(8, 16));
    ASSERT_NE(zeros, nullptr);
    EXPECT_TRUE(std::all_of(zeros, zeros + 128, [](unsigned char b) { return b == 0; }));
    std::memset(zeros, 'T', 128);
    curl_allocator().free(zeros);
    EXPECT_EQ(g_released.load(), 2u);
    EXPECT_EQ(g_unwiped.load(), 0u);
}

// End to end: libcurl itself allocates through the hooks once initialised.
TEST_F(CurlAllocatorTest, LibcurlReleasesItsCopiesThroughTheWipingFree) {
    ASSERT_TRUE(ensure_curl_global_init());
    ASSERT_TRUE(ensure_curl_global_init());  // idempotent
    g_released = 0;  // the first call's own probe allocation is no concern here
    curl_slist* list = curl_slist_append(nullptr, "Authorization: Basic c2VjcmV0");
    ASSERT_NE(list, nullptr);
    g_watched = list->data;  // libcurl's copy of the line
    curl_slist_free_all(list);
    EXPECT_EQ(g_released.load(), 2u);  // the copied line and the node
    EXPECT_TRUE(g_watched_released.load());
    EXPECT_EQ(g_unwiped.load(), 0u);
}

TEST_F(CurlAllocatorTest, HttpClientTransfersFreeOnlyWipedBlocks) {
    const fs::path dir = fs::temp_directory_path() / ("sa-curlwipe-" + crypto::random_token(8));
    const std::string ca_file =
        testing::write_test_file((dir / "ca.pem").string(), pki().ca.cert_pem);
    TlsTestServer server(pki());
    server.http().Post("/token", [](const httplib::Request& req, httplib::Response& res) {
        res.set_content(req.get_header_value("Authorization") == "Basic Y2xpZW50OnNlY3JldA"
                            ? "{\"access_token\":\"tok\"}"
                            : "{}",
                        "application/json");
    });
    server.start();
    HttpClient::Options options;
    options.ca_file = ca_file;
    auto client = HttpClient::create(options);
    ASSERT_TRUE(client) << client.error().describe();
    const auto credentials = secrets::SecretValue::copy_of("Y2xpZW50OnNlY3JldA");
    const std::string body = "grant_type=client_credentials&client_secret=s3cret";
    HttpRequest request;
    request.method = "POST";
    request.url = server.url("/token");
    request.body = body;
    request.timeout = std::chrono::seconds(10);
    request.authorization = Authorization::basic(credentials);
    const size_t before = g_released.load();
    auto response = client->send(request);
    ASSERT_TRUE(response) << response.error().describe();
    EXPECT_EQ(response->body, "{\"access_token\":\"tok\"}");
    EXPECT_GT(g_released.load(), before);  // libcurl freed its buffers through the hook
    EXPECT_EQ(g_unwiped.load(), 0u);
    fs::remove_all(dir);
}

TEST(CurlListTest, WipeLinesLeavesAHarmlessHeaderInPlace) {
    ASSERT_TRUE(ensure_curl_global_init());
    detail::CurlList list;
    ASSERT_TRUE(list.append("Proxy-Authorization: Basic dXNlcjpjYW5hcnk="));
    ASSERT_TRUE(list.append("Short"));
    const char* first = list.get()->data;
    list.wipe_lines();
    EXPECT_EQ(list.get()->data, first);  // the same memory, now harmless
    EXPECT_STREQ(list.get()->data, "X-Wiped:");
    EXPECT_EQ(std::string_view(list.get()->data + 9, 10), std::string(10, '\0'));
    EXPECT_STREQ(list.get()->next->data, "");
}

}  // namespace
}  // namespace sa::agent::egress
