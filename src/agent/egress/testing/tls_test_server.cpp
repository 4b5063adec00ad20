#include "agent/egress/testing/tls_test_server.h"

#include <openssl/pem.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "common/crypto/openssl_ptr.h"

namespace sa::agent::testing {
namespace {

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "TlsTestServer: %s\n", what);
    std::abort();
}

}  // namespace

TlsTestServer::TlsTestServer(const TestPki& pki, Options options) {
    server_ = std::make_unique<httplib::SSLServer>([&](SSL_CTX& ctx) {
        crypto::BioPtr cert_bio(BIO_new_mem_buf(pki.server.cert_pem.data(),
                                                static_cast<int>(pki.server.cert_pem.size())));
        crypto::X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
        crypto::BioPtr key_bio(BIO_new_mem_buf(pki.server.key_pem.data(),
                                               static_cast<int>(pki.server.key_pem.size())));
        crypto::EvpPkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
        if (!cert || !key) return false;
        if (options.security_level >= 0) SSL_CTX_set_security_level(&ctx, options.security_level);
        if (!options.ciphers.empty() &&
            SSL_CTX_set_cipher_list(&ctx, options.ciphers.c_str()) != 1) {
            return false;
        }
        SSL_CTX_set_min_proto_version(&ctx, options.min_version);
        SSL_CTX_set_max_proto_version(&ctx, options.max_version);
        SSL_CTX_set_client_hello_cb(&ctx, &TlsTestServer::on_client_hello, this);
        return SSL_CTX_use_certificate(&ctx, cert.get()) == 1 &&
               SSL_CTX_use_PrivateKey(&ctx, key.get()) == 1;
    });
    if (!server_->is_valid()) die("could not set up the SSL context");
    // stop() waits for idle keep-alive connections; keep that wait short.
    server_->set_keep_alive_timeout(1);
}

TlsTestServer::~TlsTestServer() {
    stop();
}

void TlsTestServer::start() {
    port_ = server_->bind_to_any_port("127.0.0.1");
    if (port_ <= 0) die("could not bind 127.0.0.1:0");
    thread_ = std::thread([this] {
        server_->listen_after_bind();
        finished_ = true;
    });
    // Polling a state flag, not sleeping for a guessed time: stop() before
    // the loop runs would otherwise be lost.
    while (!server_->is_running() && !finished_) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

void TlsTestServer::stop() {
    if (!thread_.joinable()) return;
    server_->stop();
    thread_.join();
}

std::string TlsTestServer::url(std::string_view path) const {
    return "https://127.0.0.1:" + std::to_string(port_) + std::string(path);
}

std::vector<std::vector<int>> TlsTestServer::offered_versions() const {
    std::lock_guard lock(mutex_);
    return offered_;
}

int TlsTestServer::on_client_hello(SSL* ssl, int*, void* arg) {
    auto* self = static_cast<TlsTestServer*>(arg);
    std::vector<int> versions;
    const unsigned char* data = nullptr;
    size_t length = 0;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_supported_versions, &data, &length) == 1 &&
        length >= 1) {
        // One length byte, then two bytes per version.
        const size_t list = std::min<size_t>(data[0], length - 1);
        for (size_t i = 0; i + 1 < list; i += 2) {
            versions.push_back((data[1 + i] << 8) | data[2 + i]);
        }
    } else {
        versions.push_back(static_cast<int>(SSL_client_hello_get0_legacy_version(ssl)));
    }
    std::lock_guard lock(self->mutex_);
    self->offered_.push_back(std::move(versions));
    return SSL_CLIENT_HELLO_SUCCESS;
}

}  // namespace sa::agent::testing
