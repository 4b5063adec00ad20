#include "agent/observe/health_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "agent/config/config.h"
#include "common/util/files.h"

namespace sa::agent::observe {

void Readiness::set_ready() {
    std::lock_guard lock(mutex_);
    ready_ = true;
    reason_.clear();
}

void Readiness::set_not_ready(std::string reason) {
    std::lock_guard lock(mutex_);
    ready_ = false;
    reason_ = std::move(reason);
}

void Readiness::block(std::string reason) {
    std::lock_guard lock(mutex_);
    if (blocked_.empty()) blocked_ = std::move(reason);
}

void Readiness::set_condition(const std::string& name, bool ok, std::string reason) {
    std::lock_guard lock(mutex_);
    conditions_[name] = Condition{name, ok, ok ? std::string() : std::move(reason)};
}

bool Readiness::ready() const {
    std::lock_guard lock(mutex_);
    return ready_ && blocked_.empty() &&
           std::all_of(conditions_.begin(), conditions_.end(),
                       [](const auto& entry) { return entry.second.ok; });
}

std::string Readiness::reason() const {
    std::lock_guard lock(mutex_);
    if (!blocked_.empty()) return blocked_;
    if (!ready_) return reason_;
    for (const auto& [name, condition] : conditions_) {
        if (!condition.ok) return name + ": " + condition.reason;
    }
    return "";
}

std::vector<Readiness::Condition> Readiness::failing_conditions() const {
    std::lock_guard lock(mutex_);
    std::vector<Condition> out;
    for (const auto& [name, condition] : conditions_) {
        if (!condition.ok) out.push_back(condition);
    }
    return out;
}

Result<std::unique_ptr<HealthServer>> HealthServer::start(Options options, const Registry& registry,
                                                          const Readiness& readiness,
                                                          const Logger& logger,
                                                          const Liveness* liveness) {
    if (!config::is_loopback_literal(options.host)) {
        return fail(ErrorCode::permission_denied,
                    "health endpoint must bind a loopback address, not " + options.host);
    }
    std::unique_ptr<HealthServer> self(new HealthServer());
    self->server_ = std::make_unique<httplib::Server>();
    httplib::Server& server = *self->server_;
    // A scrape or probe at a time is the expected load.
    server.new_task_queue = [] { return new httplib::ThreadPool(2); };
    server.set_keep_alive_timeout(2);
    // cpp-httplib's default also sets SO_REUSEPORT, which would let another
    // process bind the same port and take over the endpoint.
    server.set_socket_options([](socket_t sock) {
        int yes = 1;
        ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
        res.set_content("ok\n", "text/plain; charset=utf-8");
    });
    server.Get("/readyz", [&readiness](const httplib::Request&, httplib::Response& res) {
        const bool ready = readiness.ready();
        nlohmann::json body{{"ready", ready}};
        if (!ready) {
            body["reason"] = readiness.reason();
            auto failing = readiness.failing_conditions();
            if (!failing.empty()) {
                auto& list = body["conditions"] = nlohmann::json::array();
                for (const auto& c : failing) {
                    list.push_back({{"name", c.name}, {"reason", c.reason}});
                }
            }
        }
        res.status = ready ? 200 : 503;
        res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                        "application/json");
    });
    server.Get("/livez", [liveness](const httplib::Request&, httplib::Response& res) {
        const Liveness::Verdict verdict = liveness ? liveness->check() : Liveness::Verdict{};
        nlohmann::json body{{"live", verdict.live}};
        if (!verdict.live) body["reason"] = verdict.reason;
        res.status = verdict.live ? 200 : 503;
        res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                        "application/json");
    });
    server.Get("/metrics", [&registry](const httplib::Request&, httplib::Response& res) {
        res.set_content(registry.render(), "text/plain; version=0.0.4; charset=utf-8");
    });

    if (options.port == 0) {
        self->port_ = server.bind_to_any_port(options.host);
    } else if (server.bind_to_port(options.host, options.port)) {
        self->port_ = options.port;
    }
    const std::string host_for_url =
        options.host.find(':') != std::string::npos ? "[" + options.host + "]" : options.host;
    if (self->port_ <= 0) {
        return fail(ErrorCode::unavailable,
                    "cannot listen on " + host_for_url + ":" + std::to_string(options.port));
    }
    self->url_ = "http://" + host_for_url + ":" + std::to_string(self->port_);

    HealthServer* raw = self.get();
    self->thread_ = std::thread([raw] {
        raw->server_->listen_after_bind();
        raw->finished_ = true;
    });
    // stop() is lost if it runs before the accept loop started: wait for it.
    while (!server.is_running() && !self->finished_) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }

    if (!options.state_dir.empty()) {
        const std::string path = options.state_dir + "/health-url";
        if (auto ok = util::write_file_atomic(path, self->url_, 0644); !ok) {
            return std::unexpected(ok.error());  // the destructor stops the server
        }
    }
    logger.info("health endpoint listening", {{"url", self->url_}});
    return self;
}

HealthServer::~HealthServer() {
    stop();
}

void HealthServer::stop() {
    if (!thread_.joinable()) return;
    server_->stop();
    thread_.join();
}

}  // namespace sa::agent::observe
