#include "hub/server/http_server.h"

#include <httplib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <chrono>
#include <thread>

#include "common/crypto/openssl_ptr.h"
#include "common/protocol/protocol.h"

namespace sa::hub::server {
namespace {

// What the request log needs to know about the request being handled on this
// thread. cpp-httplib runs pre-routing, the handler and the logger of one
// request on the same worker thread.
struct RequestContext {
    bool active = false;
    std::chrono::steady_clock::time_point start;
    std::string client_id;
    std::string detail;
};
thread_local RequestContext t_request;

std::optional<std::string> header(const httplib::Request& req, const char* name) {
    if (!req.has_header(name)) return std::nullopt;
    return req.get_header_value(name);
}

void respond(httplib::Response& res, const ApiResponse& r) {
    res.status = r.status;
    for (const auto& [k, v] : r.headers) res.set_header(k.c_str(), v);
    if (!r.content_type.empty()) res.set_content(r.body, r.content_type.c_str());
    t_request.client_id = r.client_id;
    t_request.detail = r.detail;
}

}  // namespace

struct HttpServer::Impl {
    Api& api;
    JsonLog& log;
    HttpServerOptions options;
    std::string tls_error;
    std::unique_ptr<httplib::SSLServer> server;

    Impl(Api& a, JsonLog& l, HttpServerOptions o) : api(a), log(l), options(std::move(o)) {}

    bool setup_tls(SSL_CTX& ctx) {
        // SECURITY NOTE: protocol v1 promises TLS 1.2 or newer; agents enforce
        // the same floor on their side.
        SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
        SSL_CTX_set_options(&ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                      SSL_OP_NO_COMPRESSION);
        if (SSL_CTX_use_certificate_chain_file(&ctx, options.cert_file.c_str()) != 1) {
            tls_error = "cannot load server certificate " + options.cert_file + ": " +
                        crypto::openssl_error();
            return false;
        }
        if (SSL_CTX_use_PrivateKey_file(&ctx, options.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(&ctx) != 1) {
            tls_error =
                "cannot load server key " + options.key_file + ": " + crypto::openssl_error();
            return false;
        }
        return true;
    }

    void routes() {
        auto& s = *server;
        s.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
            respond(res, api.healthz());
        });
        s.Post(protocol::kTokenPath, [this](const httplib::Request& req, httplib::Response& res) {
            respond(res, api.token(header(req, "Authorization"), req.body));
        });
        s.Post(protocol::kLeasePath, [this](const httplib::Request& req, httplib::Response& res) {
            respond(res, api.lease(header(req, "Authorization"), req.body));
        });
        s.Get(protocol::kPingPath, [this](const httplib::Request& req, httplib::Response& res) {
            std::optional<std::string> agent_id;
            if (req.get_param_value_count("agent_id") == 1) {
                agent_id = req.get_param_value("agent_id");
            }
            respond(res, api.ping(header(req, "Authorization"), agent_id));
        });
        // Job ids are UUIDs; the pattern is wider but still keeps odd bytes out.
        s.Put(R"(/v1/jobs/([A-Za-z0-9_.-]{1,128})/chunks/([0-9]{1,9}))",
              [this](const httplib::Request& req, httplib::Response& res) {
                  respond(res, api.put_chunk(header(req, "Authorization"), req.matches[1],
                                             req.matches[2], header(req, protocol::kLeaseHeader),
                                             header(req, protocol::kDigestHeader), req.body));
              });
        s.Post(R"(/v1/jobs/([A-Za-z0-9_.-]{1,128})/complete)", [this](const httplib::Request& req,
                                                                      httplib::Response& res) {
            respond(res, api.complete(header(req, "Authorization"), req.matches[1], req.body));
        });
        s.Post(R"(/v1/jobs/([A-Za-z0-9_.-]{1,128})/heartbeat)", [this](const httplib::Request& req,
                                                                       httplib::Response& res) {
            respond(res, api.heartbeat(header(req, "Authorization"), req.matches[1], req.body));
        });
        s.Post(R"(/v1/jobs/([A-Za-z0-9_.-]{1,128})/fail)",
               [this](const httplib::Request& req, httplib::Response& res) {
                   respond(res, api.fail(header(req, "Authorization"), req.matches[1], req.body));
               });

        s.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
            t_request = RequestContext{true, std::chrono::steady_clock::now(), {}, {}};
            return httplib::Server::HandlerResponse::Unhandled;
        });
        // Answers cpp-httplib's own errors (404, 413, ...) in the OAuth shape;
        // responses built by the Api already have a body and pass through.
        s.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req,
                                                                    httplib::Response& res) {
            if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
            std::string c = wire::code::kInvalidRequest;
            std::string description = "malformed HTTP request";
            if (res.status == 404) {
                c = wire::code::kNotFound;
                description = "no endpoint " + req.method + " " + req.path;
            } else if (res.status == 413) {
                c = wire::code::kTooLarge;
                description =
                    "request body exceeds " + std::to_string(protocol::kMaxChunkBytes) + " bytes";
            } else if (res.status >= 500) {
                c = wire::code::kServerError;
            }
            ApiResponse r = Api::error(c, description);
            res.set_content(r.body, r.content_type.c_str());
            return httplib::Server::HandlerResponse::Handled;
        }));
        s.set_exception_handler(
            [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
                std::string what = "unknown exception";
                try {
                    if (ep) std::rethrow_exception(ep);
                } catch (const std::exception& e) {
                    what = e.what();
                } catch (...) {
                }
                ApiResponse r = Api::error(wire::code::kServerError, "exception: " + what);
                respond(res, r);
            });
        s.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
            nlohmann::json fields = {
                {"method", req.method},
                {"path", req.path},
                {"status", res.status},
                {"remote", req.remote_addr},
            };
            if (t_request.active) {
                auto elapsed = std::chrono::steady_clock::now() - t_request.start;
                fields["duration_ms"] = std::chrono::duration<double, std::milli>(elapsed).count();
            }
            if (!t_request.client_id.empty()) fields["client_id"] = t_request.client_id;
            if (!t_request.detail.empty()) fields["detail"] = t_request.detail;
            t_request = RequestContext{};
            log.write(res.status >= 500   ? "error"
                      : res.status >= 400 ? "warn"
                                          : "info",
                      "request", fields);
        });
    }
};

Result<std::unique_ptr<HttpServer>> HttpServer::create(Api& api, JsonLog& log,
                                                       const HttpServerOptions& options) {
    auto impl = std::make_unique<Impl>(api, log, options);
    Impl* raw = impl.get();
    impl->server =
        std::make_unique<httplib::SSLServer>([raw](SSL_CTX& ctx) { return raw->setup_tls(ctx); });
    if (!impl->server->is_valid()) {
        return fail(ErrorCode::invalid_argument,
                    impl->tls_error.empty() ? "cannot set up TLS" : impl->tls_error);
    }
    size_t threads = options.threads;
    impl->server->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    impl->server->set_read_timeout(options.io_timeout_seconds, 0);
    impl->server->set_write_timeout(options.io_timeout_seconds, 0);
    impl->server->set_payload_max_length(protocol::kMaxChunkBytes);
    impl->server->set_tcp_nodelay(true);
    impl->routes();
    return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() = default;

Result<int> HttpServer::bind() {
    const auto& o = impl_->options;
    if (o.port == 0) {
        int port = impl_->server->bind_to_any_port(o.host);
        if (port < 0) return fail(ErrorCode::unavailable, "cannot listen on " + o.host + ":0");
        return port;
    }
    if (!impl_->server->bind_to_port(o.host, o.port)) {
        return fail(ErrorCode::unavailable, "cannot listen on " + o.host + ":" +
                                                std::to_string(o.port) +
                                                " (address in use or not available)");
    }
    return o.port;
}

bool HttpServer::run() {
    return impl_->server->listen_after_bind();
}

void HttpServer::stop() {
    impl_->server->stop();
}

bool HttpServer::wait_until_running(std::chrono::milliseconds timeout) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!impl_->server->is_running()) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

bool HttpServer::is_running() const {
    return impl_->server->is_running();
}

}  // namespace sa::hub::server
