// HealthProber against a small fake hub over real TLS on 127.0.0.1:0: token
// endpoint and ping, with switches to refuse tokens, stall or go away.
#include "agent/app/health_probe.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>

#include "agent/egress/testing/tls_test_server.h"
#include "agent/secrets/file_secret_store.h"
#include "common/crypto/encoding.h"
#include "common/crypto/random.h"
#include "common/util/time.h"

namespace sa::agent::app {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

// Polls pred until it holds or a generous deadline passes; never a timing assertion.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 15s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

class ProbeHub {
  public:
    explicit ProbeHub(const testing::TestPki& pki) : server_(pki) {
        auto& http = server_.http();
        http.Post("/oauth2/token", [this](const httplib::Request& req, httplib::Response& res) {
            std::lock_guard lock(mutex);
            if (req.get_header_value("Authorization") !=
                "Basic " + crypto::base64_encode("cid_1:s3cret")) {
                res.status = 401;
                res.set_content(R"({"error":"invalid_client"})", "application/json");
                return;
            }
            if (token_status != 200) {
                res.status = token_status;
                res.set_content(R"({"error":"server_error"})", "application/json");
                return;
            }
            ++tokens_issued;
            res.set_content(json{{"access_token", "tok-" + std::to_string(tokens_issued)},
                                 {"token_type", "Bearer"},
                                 {"expires_in", 900}}
                                .dump(),
                            "application/json");
        });
        http.Get("/v1/agent/ping", [this](const httplib::Request& req, httplib::Response& res) {
            std::unique_lock lock(mutex);
            ++pings;
            agent_ids.push_back(req.get_param_value("agent_id"));
            if (stall) {
                ++stalled;
                changed.notify_all();
                // Released by the test (or, as a safety net, after a while).
                changed.wait_for(lock, 20s, [this] { return !stall; });
            }
            if (reject_tokens ||
                req.get_header_value("Authorization").rfind("Bearer tok-", 0) != 0) {
                res.status = 401;
                res.set_content(R"({"error":"invalid_token","error_description":"revoked"})",
                                "application/json");
                return;
            }
            res.set_content(json{{"agent_id", req.get_param_value("agent_id")},
                                 {"server_time", util::unix_seconds() + skew_seconds}}
                                .dump(),
                            "application/json");
        });
        server_.start();
    }

    std::string url() const { return server_.url(); }
    void stop() {
        {
            std::lock_guard lock(mutex);
            stall = false;
        }
        changed.notify_all();
        server_.stop();
    }
    void release() {
        std::lock_guard lock(mutex);
        stall = false;
        changed.notify_all();
    }

    std::mutex mutex;
    std::condition_variable changed;
    int tokens_issued = 0;
    int pings = 0;
    int stalled = 0;
    bool reject_tokens = false;
    int token_status = 200;
    bool stall = false;
    int64_t skew_seconds = 0;
    std::vector<std::string> agent_ids;

  private:
    testing::TlsTestServer server_;
};

// Wall-clock time the test moves (token refresh timing).
class TestClock final : public auth::Clock {
  public:
    int64_t now_seconds() const override { return util::unix_seconds() + offset.load(); }
    std::atomic<int64_t> offset{0};
};

class HealthProberTest : public ::testing::Test {
  protected:
    void SetUp() override {
        static const testing::TestPki pki = testing::TestPki::generate();
        dir_ = fs::temp_directory_path() / ("sa-probe-" + crypto::random_token(8));
        testing::write_test_file((dir_ / "secrets" / "hub").string(), "s3cret\n");
        ca_ = testing::write_test_file((dir_ / "ca.pem").string(), pki.ca.cert_pem);
        hub_ = std::make_unique<ProbeHub>(pki);
        stores_ = std::make_unique<secrets::SecretStores>();
        stores_->add("files", std::make_unique<secrets::FileSecretStore>(
                                  "files", (dir_ / "secrets").string()));
    }
    void TearDown() override {
        prober_.reset();
        if (hub_) hub_->stop();
        hub_.reset();
        fs::remove_all(dir_);
    }

    HealthProber::Options options(std::chrono::milliseconds interval = 20ms, int threshold = 3) {
        HealthProber::Options o;
        o.interval = interval;
        o.failure_threshold = threshold;
        o.timeout = 10s;
        o.hub_url = hub_->url();
        o.agent_id = "edge-1";
        o.token = {.token_url = hub_->url() + "/oauth2/token",
                   .client_id = "cid_1",
                   .client_secret = {"files", "hub", ""}};
        o.observer = [this](std::string_view endpoint, long status) {
            std::lock_guard lock(mutex_);
            observed_.emplace_back(std::string(endpoint), status);
        };
        o.on_readiness = [this](bool ready) { last_ready_ = ready ? 1 : 0; };
        return o;
    }

    // Real HttpClients with the test CA; while cut_ is set, the "network" is
    // down: every round's transport fails like an unreachable host.
    HealthProber::TransportFactory transports() {
        egress::HttpClient::Options http;
        http.ca_file = ca_;
        http.on_connection = [this](const egress::ConnectionRecord&) { ++connections_; };
        auto real = HealthProber::http_transports(http);
        return [this, real](
                   const std::atomic<bool>& abort) -> Result<std::unique_ptr<egress::Transport>> {
            ++rounds_;
            if (cut_) return std::make_unique<Unreachable>();
            return real(abort);
        };
    }

    HealthProber& make(HealthProber::Options o) {
        prober_ = std::make_unique<HealthProber>(std::move(o), transports(), *stores_, clock_,
                                                 registry_, readiness_, logger_);
        return *prober_;
    }

    double gauge(const char* name, const char* target = nullptr) {
        if (target == nullptr) return registry_.gauge(name, "").value();
        return registry_.gauge(name, "", {{"target", target}}).value();
    }
    double failures(const char* target) {
        return registry_.counter("secure_agent_probe_failures_total", "", {{"target", target}})
            .value();
    }
    int pings() {
        std::lock_guard lock(hub_->mutex);
        return hub_->pings;
    }
    std::string logs() {
        std::lock_guard lock(mutex_);
        std::string all;
        for (const auto& line : log_lines_) all += line;
        return all;
    }

    class Unreachable final : public egress::Transport {
      public:
        Result<egress::HttpResponse> send(const egress::HttpRequest&) override {
            return fail(ErrorCode::unavailable, "connection refused");
        }
    };

    fs::path dir_;
    std::string ca_;
    std::unique_ptr<ProbeHub> hub_;
    std::unique_ptr<secrets::SecretStores> stores_;
    TestClock clock_;
    observe::Registry registry_;
    observe::Readiness readiness_;
    std::mutex mutex_;
    std::vector<std::string> log_lines_;
    std::vector<std::pair<std::string, long>> observed_;
    observe::Logger logger_{"edge-1", observe::Level::info, [this](std::string_view line) {
                                std::lock_guard lock(mutex_);
                                log_lines_.emplace_back(line);
                            }};
    std::atomic<int> rounds_{0};
    std::atomic<int> connections_{0};
    std::atomic<bool> cut_{false};
    std::atomic<int> last_ready_{-1};
    std::unique_ptr<HealthProber> prober_;
};

TEST_F(HealthProberTest, MetricsExistAtZeroBeforeTheFirstProbe) {
    make(options());
    const std::string text = registry_.render();
    for (const char* line : {
             "secure_agent_probe_success{target=\"hub\"} 0",
             "secure_agent_probe_success{target=\"token\"} 0",
             "secure_agent_probe_duration_seconds{target=\"hub\"} 0",
             "secure_agent_probe_last_success_timestamp_seconds{target=\"token\"} 0",
             "secure_agent_probe_failures_total{target=\"hub\"} 0",
             "secure_agent_probe_failures_total{target=\"token\"} 0",
             "secure_agent_hub_clock_skew_seconds 0",
             "# TYPE secure_agent_probe_failures_total counter",
             "# TYPE secure_agent_probe_success gauge",
         }) {
        EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
    }
    EXPECT_EQ(rounds_, 0);  // the constructor does no I/O
}

TEST_F(HealthProberTest, HealthyHubSetsSuccessAndSkewAndKeepsOneToken) {
    {
        std::lock_guard lock(hub_->mutex);
        hub_->skew_seconds = 100;
    }
    readiness_.set_ready();
    const int64_t before = util::unix_seconds();
    auto& prober = make(options());
    prober.start();
    ASSERT_TRUE(eventually([&] { return pings() >= 3; }));
    prober.stop();

    EXPECT_EQ(gauge("secure_agent_probe_success", "token"), 1);
    EXPECT_EQ(gauge("secure_agent_probe_success", "hub"), 1);
    EXPECT_GE(gauge("secure_agent_probe_last_success_timestamp_seconds", "hub"), before);
    EXPECT_GE(gauge("secure_agent_probe_last_success_timestamp_seconds", "token"), before);
    EXPECT_GT(gauge("secure_agent_probe_duration_seconds", "hub"), 0);
    EXPECT_EQ(failures("hub"), 0);
    EXPECT_EQ(failures("token"), 0);
    // server_time has one-second resolution.
    EXPECT_NEAR(gauge("secure_agent_hub_clock_skew_seconds"), 100, 2.0);
    EXPECT_TRUE(readiness_.ready());
    EXPECT_TRUE(readiness_.failing_conditions().empty());
    EXPECT_EQ(last_ready_, 1);

    std::lock_guard lock(hub_->mutex);
    // The cached token served every probe: no flood of token requests.
    EXPECT_EQ(hub_->tokens_issued, 1);
    EXPECT_EQ(hub_->agent_ids.front(), "edge-1");
    // Every probe request went through the egress hooks (network log).
    EXPECT_GE(connections_.load(), hub_->pings);
}

TEST_F(HealthProberTest, RejectedTokensMakeTheAgentNotReadyAfterTheThreshold) {
    readiness_.set_ready();
    auto& prober = make(options(20ms, 3));
    prober.start();
    ASSERT_TRUE(eventually([&] { return gauge("secure_agent_probe_success", "hub") == 1; }));
    {
        std::lock_guard lock(hub_->mutex);
        hub_->reject_tokens = true;
    }
    ASSERT_TRUE(eventually([&] { return !readiness_.ready(); }));
    // The control loop's own success does not hide the probe's verdict.
    readiness_.set_ready();
    EXPECT_FALSE(readiness_.ready());
    const auto failing = readiness_.failing_conditions();
    ASSERT_EQ(failing.size(), 1u);
    EXPECT_EQ(failing[0].name, "hub_probe");
    EXPECT_NE(failing[0].reason.find("hub: 3 probes failed in a row"), std::string::npos)
        << failing[0].reason;
    EXPECT_NE(failing[0].reason.find("401"), std::string::npos) << failing[0].reason;
    EXPECT_EQ(failing[0].reason.find("tok-"), std::string::npos) << failing[0].reason;
    EXPECT_EQ(gauge("secure_agent_probe_success", "hub"), 0);
    EXPECT_GE(failures("hub"), 3);
    EXPECT_EQ(gauge("secure_agent_probe_success", "token"), 1);

    // Recovery: the hub accepts tokens again.
    {
        std::lock_guard lock(hub_->mutex);
        hub_->reject_tokens = false;
    }
    ASSERT_TRUE(eventually([&] { return readiness_.ready(); }));
    EXPECT_TRUE(readiness_.failing_conditions().empty());
    EXPECT_TRUE(eventually([&] { return gauge("secure_agent_probe_success", "hub") == 1; }));
    prober.stop();
    {
        // Each 401 dropped the token: a new one per failed ping, not more.
        std::lock_guard lock(hub_->mutex);
        EXPECT_LE(hub_->tokens_issued, hub_->pings + 1);
        EXPECT_GE(hub_->tokens_issued, 4);
    }
    const std::string text = logs();
    EXPECT_NE(text.find("not ready: connection probes failing"), std::string::npos);
    EXPECT_NE(text.find("connection probes healthy again"), std::string::npos);
    EXPECT_EQ(text.find("tok-"), std::string::npos);
    EXPECT_EQ(text.find("s3cret"), std::string::npos);
}

TEST_F(HealthProberTest, UnreachableHubFailsBothTargetsThenRecovers) {
    readiness_.set_ready();
    auto& prober = make(options(20ms, 2));
    cut_ = true;
    prober.start();
    // on_readiness runs on the prober's thread just after the condition is set.
    ASSERT_TRUE(eventually([&] { return !readiness_.ready() && last_ready_ == 0; }));
    EXPECT_EQ(last_ready_, 0);
    EXPECT_EQ(gauge("secure_agent_probe_success", "token"), 0);
    EXPECT_EQ(gauge("secure_agent_probe_success", "hub"), 0);
    EXPECT_EQ(gauge("secure_agent_probe_last_success_timestamp_seconds", "hub"), 0);
    const std::string reason = readiness_.reason();
    EXPECT_NE(reason.find("hub_probe: token: "), std::string::npos) << reason;
    EXPECT_NE(reason.find("connection refused"), std::string::npos) << reason;
    EXPECT_NE(reason.find("hub: "), std::string::npos) << reason;

    cut_ = false;
    ASSERT_TRUE(eventually([&] { return readiness_.ready() && last_ready_ == 1; }));
    EXPECT_EQ(last_ready_, 1);
    EXPECT_TRUE(eventually([&] {
        return gauge("secure_agent_probe_success", "token") == 1 &&
               gauge("secure_agent_probe_success", "hub") == 1;
    }));
    prober.stop();
    EXPECT_GE(failures("token"), 2);
    EXPECT_GE(failures("hub"), 2);
}

TEST_F(HealthProberTest, StoppedServerIsReportedWithTheTransportError) {
    readiness_.set_ready();
    auto& prober = make(options(20ms, 2));
    prober.probe_once();
    EXPECT_EQ(gauge("secure_agent_probe_success", "hub"), 1);
    hub_->stop();
    prober.probe_once();  // the token is cached: only the ping fails
    EXPECT_EQ(gauge("secure_agent_probe_success", "token"), 1);
    EXPECT_EQ(gauge("secure_agent_probe_success", "hub"), 0);
    EXPECT_TRUE(readiness_.ready());  // one failure is below the threshold
    prober.probe_once();
    EXPECT_FALSE(readiness_.ready());
    EXPECT_NE(readiness_.reason().find("hub: 2 probes failed in a row: unavailable"),
              std::string::npos)
        << readiness_.reason();
}

TEST_F(HealthProberTest, CachedTokenIsReusedAndAFailedEarlyRefreshIsReported) {
    readiness_.set_ready();
    auto& prober = make(options(20ms, 1));
    prober.probe_once();
    prober.probe_once();
    {
        std::lock_guard lock(hub_->mutex);
        EXPECT_EQ(hub_->tokens_issued, 1);
        EXPECT_EQ(hub_->pings, 2);
    }
    // Past the refresh point (900 s lifetime, refreshed 60 s early) but
    // before expiry, the token endpoint fails: the still-valid token keeps
    // the hub probe working, and the token probe reports the failure.
    clock_.offset = 850;
    {
        std::lock_guard lock(hub_->mutex);
        hub_->token_status = 500;
    }
    prober.probe_once();
    EXPECT_EQ(gauge("secure_agent_probe_success", "token"), 0);
    EXPECT_EQ(gauge("secure_agent_probe_success", "hub"), 1);
    EXPECT_EQ(failures("token"), 1);
    EXPECT_FALSE(readiness_.ready());  // threshold 1
    EXPECT_NE(readiness_.reason().find("token: 1 probes failed in a row"), std::string::npos)
        << readiness_.reason();

    // The endpoint is back: the refresh happens once and the probe recovers.
    {
        std::lock_guard lock(hub_->mutex);
        hub_->token_status = 200;
    }
    prober.probe_once();
    prober.probe_once();
    EXPECT_EQ(gauge("secure_agent_probe_success", "token"), 1);
    EXPECT_TRUE(readiness_.ready());
    std::lock_guard lock(hub_->mutex);
    EXPECT_EQ(hub_->tokens_issued, 2);
}

TEST_F(HealthProberTest, StopReturnsPromptlyDuringTheWaitAndDuringARequest) {
    // A long interval: stop() must not wait it out.
    auto& idle = make(options(std::chrono::hours(1)));
    idle.start();
    ASSERT_TRUE(eventually([&] { return pings() >= 1; }));
    ASSERT_TRUE(eventually([&] { return gauge("secure_agent_probe_success", "hub") == 1; }));
    auto t0 = std::chrono::steady_clock::now();
    idle.stop();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);  // generous: the interval is 1 h
    EXPECT_FALSE(idle.running());
    idle.stop();  // idempotent

    // A ping the hub never answers: stop() aborts it.
    {
        std::lock_guard lock(hub_->mutex);
        hub_->stall = true;
    }
    auto& busy = make(options(std::chrono::hours(1)));
    busy.start();
    ASSERT_TRUE(eventually([&] {
        std::lock_guard lock(hub_->mutex);
        return hub_->stalled >= 1;
    }));
    t0 = std::chrono::steady_clock::now();
    busy.stop();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);  // the stall lasts 20 s
    hub_->release();
}

TEST_F(HealthProberTest, ZeroIntervalTurnsProbesOff) {
    auto& prober = make(options(0ms));
    prober.start();
    EXPECT_FALSE(prober.running());
    prober.stop();
    EXPECT_EQ(rounds_, 0);
    EXPECT_NE(logs().find("connection health probes are off"), std::string::npos);
}

TEST_F(HealthProberTest, PausedRoundsSendNothing) {
    auto o = options();
    std::atomic<int> asked{0};
    o.paused = [&asked] {
        ++asked;
        return true;
    };
    auto& prober = make(std::move(o));
    prober.start();
    ASSERT_TRUE(eventually([&] { return asked >= 3; }));
    prober.stop();
    EXPECT_EQ(rounds_, 0);
    EXPECT_EQ(pings(), 0);
}

TEST_F(HealthProberTest, FactoryFailureCountsAsAFailedRound) {
    readiness_.set_ready();
    prober_ = std::make_unique<HealthProber>(
        options(20ms, 1),
        [](const std::atomic<bool>&) -> Result<std::unique_ptr<egress::Transport>> {
            return fail(ErrorCode::internal, "no curl handle");
        },
        *stores_, clock_, registry_, readiness_, logger_);
    prober_->probe_once();
    EXPECT_FALSE(readiness_.ready());
    EXPECT_NE(readiness_.reason().find("cannot create the probe transport"), std::string::npos);
    EXPECT_EQ(failures("token"), 1);
    EXPECT_EQ(failures("hub"), 1);
}

}  // namespace
}  // namespace sa::agent::app
