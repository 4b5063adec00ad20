#include "agent/timestamp/tsa_client.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pkcs7.h>
#include <openssl/ts.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <ctime>
#include <memory>

#include "common/crypto/openssl_ptr.h"
#include "common/crypto/random.h"

namespace sa::agent::timestamp {
namespace {

struct TsReqFree {
    void operator()(TS_REQ* p) const { TS_REQ_free(p); }
};
struct TsRespFree {
    void operator()(TS_RESP* p) const { TS_RESP_free(p); }
};
struct TsVerifyCtxFree {
    void operator()(TS_VERIFY_CTX* p) const { TS_VERIFY_CTX_free(p); }
};
struct Pkcs7Free {
    void operator()(PKCS7* p) const { PKCS7_free(p); }
};
struct TstInfoFree {
    void operator()(TS_TST_INFO* p) const { TS_TST_INFO_free(p); }
};
struct X509StoreFree {
    void operator()(X509_STORE* p) const { X509_STORE_free(p); }
};
struct MsgImprintFree {
    void operator()(TS_MSG_IMPRINT* p) const { TS_MSG_IMPRINT_free(p); }
};
struct AlgorFree {
    void operator()(X509_ALGOR* p) const { X509_ALGOR_free(p); }
};
struct Asn1IntegerFree {
    void operator()(ASN1_INTEGER* p) const { ASN1_INTEGER_free(p); }
};
struct BnFree {
    void operator()(BIGNUM* p) const { BN_free(p); }
};

using TsReqPtr = std::unique_ptr<TS_REQ, TsReqFree>;
using TsRespPtr = std::unique_ptr<TS_RESP, TsRespFree>;
using TsVerifyCtxPtr = std::unique_ptr<TS_VERIFY_CTX, TsVerifyCtxFree>;
using Pkcs7Ptr = std::unique_ptr<PKCS7, Pkcs7Free>;
using TstInfoPtr = std::unique_ptr<TS_TST_INFO, TstInfoFree>;
using X509StorePtr = std::unique_ptr<X509_STORE, X509StoreFree>;

constexpr size_t kMaxReplyBytes = 64 * 1024;

std::string der_of(TS_REQ* req) {
    int len = i2d_TS_REQ(req, nullptr);
    if (len <= 0) return {};
    std::string out(static_cast<size_t>(len), '\0');
    auto* p = reinterpret_cast<unsigned char*>(out.data());
    i2d_TS_REQ(req, &p);
    return out;
}

Result<TsReqPtr> make_request(std::string_view digest) {
    TsReqPtr req(TS_REQ_new());
    std::unique_ptr<TS_MSG_IMPRINT, MsgImprintFree> imprint(TS_MSG_IMPRINT_new());
    std::unique_ptr<X509_ALGOR, AlgorFree> algo(X509_ALGOR_new());
    std::unique_ptr<BIGNUM, BnFree> nonce_bn(BN_new());
    if (!req || !imprint || !algo || !nonce_bn) return fail(ErrorCode::internal, "out of memory");
    // The nonce ties the reply to this request: a replayed reply fails.
    std::string nonce = crypto::random_bytes(8);
    BN_bin2bn(reinterpret_cast<const unsigned char*>(nonce.data()), 8, nonce_bn.get());
    std::unique_ptr<ASN1_INTEGER, Asn1IntegerFree> nonce_int(
        BN_to_ASN1_INTEGER(nonce_bn.get(), nullptr));
    if (!nonce_int ||
        X509_ALGOR_set0(algo.get(), OBJ_nid2obj(NID_sha256), V_ASN1_NULL, nullptr) != 1 ||
        TS_MSG_IMPRINT_set_algo(imprint.get(), algo.get()) != 1 ||
        TS_MSG_IMPRINT_set_msg(imprint.get(),
                               reinterpret_cast<unsigned char*>(const_cast<char*>(digest.data())),
                               static_cast<int>(digest.size())) != 1 ||
        TS_REQ_set_version(req.get(), 1) != 1 ||
        TS_REQ_set_msg_imprint(req.get(), imprint.get()) != 1 ||
        TS_REQ_set_nonce(req.get(), nonce_int.get()) != 1 ||
        TS_REQ_set_cert_req(req.get(), 1) != 1) {
        return fail(ErrorCode::internal,
                    "cannot build RFC 3161 request: " + crypto::openssl_error());
    }
    return req;
}

Result<X509StorePtr> load_store(const std::string& ca_file) {
    X509StorePtr store(X509_STORE_new());
    if (!store) return fail(ErrorCode::internal, "out of memory");
    if (X509_STORE_load_file(store.get(), ca_file.c_str()) != 1) {
        return fail(ErrorCode::io,
                    "cannot load TSA CA file " + ca_file + ": " + crypto::openssl_error());
    }
    return store;
}

Result<int64_t> gen_time(PKCS7* token) {
    TstInfoPtr info(PKCS7_to_TS_TST_INFO(token));
    if (!info) return fail(ErrorCode::invalid_argument, "timestamp token has no TSTInfo");
    const ASN1_GENERALIZEDTIME* t = TS_TST_INFO_get_time(info.get());
    std::tm tm{};
    if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
        return fail(ErrorCode::invalid_argument, "timestamp token has an unreadable genTime");
    }
    return static_cast<int64_t>(timegm(&tm));
}

Status verify_with(TS_VERIFY_CTX* ctx, const std::string& ca_file, PKCS7* token, TS_RESP* resp) {
    auto store = load_store(ca_file);
    if (!store) return std::unexpected(store.error());
    // The context owns the store from here on.
    TS_VERIFY_CTX_set_store(ctx, store->release());
    TS_VERIFY_CTX_add_flags(ctx, TS_VFY_SIGNATURE);
    int ok =
        resp != nullptr ? TS_RESP_verify_response(ctx, resp) : TS_RESP_verify_token(ctx, token);
    if (ok != 1)
        return fail(ErrorCode::integrity, "timestamp does not verify: " + crypto::openssl_error());
    return {};
}

}  // namespace

TsaClient::TsaClient(egress::Transport& transport, std::string url, std::string tsa_ca_file,
                     std::chrono::milliseconds timeout)
    : transport_(transport),
      url_(std::move(url)),
      tsa_ca_file_(std::move(tsa_ca_file)),
      timeout_(timeout) {}

Result<Token> TsaClient::timestamp(std::string_view sha256_digest) {
    if (sha256_digest.size() != 32)
        return fail(ErrorCode::invalid_argument, "a SHA-256 digest has 32 bytes");
    auto req = make_request(sha256_digest);
    if (!req) return std::unexpected(req.error());
    std::string query = der_of(req->get());
    egress::HttpRequest http;
    http.method = "POST";
    http.url = url_;
    http.headers = {{"Content-Type", "application/timestamp-query"},
                    {"Accept", "application/timestamp-reply"}};
    http.body = query;
    http.timeout = timeout_;
    auto reply = transport_.send(http);
    if (!reply) return std::unexpected(reply.error());
    if (reply->status != 200) {
        return fail(ErrorCode::unavailable,
                    "TSA " + url_ + " answered HTTP " + std::to_string(reply->status));
    }
    const std::string* type = reply->header("content-type");
    if (type == nullptr || type->rfind("application/timestamp-reply", 0) != 0) {
        return fail(ErrorCode::integrity,
                    "TSA " + url_ + " did not answer with application/timestamp-reply");
    }
    std::string_view body = reply->body;
    if (body.size() > kMaxReplyBytes)
        return fail(ErrorCode::integrity, "TSA reply larger than 64 KiB");
    const auto* p = reinterpret_cast<const unsigned char*>(body.data());
    TsRespPtr resp(d2i_TS_RESP(nullptr, &p, static_cast<long>(body.size())));
    if (!resp || p != reinterpret_cast<const unsigned char*>(body.data()) + body.size()) {
        ERR_clear_error();
        return fail(ErrorCode::integrity, "TSA " + url_ + " sent a malformed RFC 3161 reply");
    }
    TS_STATUS_INFO* status = TS_RESP_get_status_info(resp.get());
    long code = ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(status));
    if (code != 0 && code != 1) {  // granted, grantedWithMods
        return fail(ErrorCode::unavailable, "TSA " + url_ + " refused the request (PKIStatus " +
                                                std::to_string(code) + ")");
    }
    // Checks version, policy, imprint and nonce against our request, then the
    // signature against the locally configured TSA CA.
    TsVerifyCtxPtr ctx(TS_REQ_to_TS_VERIFY_CTX(req->get(), nullptr));
    if (!ctx) return fail(ErrorCode::internal, "cannot build the verify context");
    if (auto st = verify_with(ctx.get(), tsa_ca_file_, nullptr, resp.get()); !st) {
        return std::unexpected(st.error());
    }
    PKCS7* token = TS_RESP_get_token(resp.get());
    int len = i2d_PKCS7(token, nullptr);
    if (len <= 0) return fail(ErrorCode::integrity, "TSA reply has no token");
    Token out;
    out.der.resize(static_cast<size_t>(len));
    auto* w = reinterpret_cast<unsigned char*>(out.der.data());
    i2d_PKCS7(token, &w);
    auto when = gen_time(token);
    if (!when) return std::unexpected(when.error());
    out.gen_time_unix = *when;
    return out;
}

Result<int64_t> verify_token(std::string_view token_der, std::string_view sha256_digest,
                             const std::string& tsa_ca_file) {
    if (sha256_digest.size() != 32)
        return fail(ErrorCode::invalid_argument, "a SHA-256 digest has 32 bytes");
    const auto* p = reinterpret_cast<const unsigned char*>(token_der.data());
    Pkcs7Ptr token(d2i_PKCS7(nullptr, &p, static_cast<long>(token_der.size())));
    if (!token) {
        ERR_clear_error();
        return fail(ErrorCode::invalid_argument, "not a DER timestamp token");
    }
    TsVerifyCtxPtr ctx(TS_VERIFY_CTX_new());
    if (!ctx) return fail(ErrorCode::internal, "out of memory");
    auto* imprint = static_cast<unsigned char*>(OPENSSL_malloc(sha256_digest.size()));
    if (imprint == nullptr) return fail(ErrorCode::internal, "out of memory");
    std::copy(sha256_digest.begin(), sha256_digest.end(), imprint);
    TS_VERIFY_CTX_set_imprint(ctx.get(), imprint,
                              static_cast<long>(sha256_digest.size()));  // takes ownership
    TS_VERIFY_CTX_set_flags(ctx.get(), TS_VFY_VERSION | TS_VFY_IMPRINT);
    if (auto st = verify_with(ctx.get(), tsa_ca_file, token.get(), nullptr); !st) {
        return std::unexpected(st.error());
    }
    return gen_time(token.get());
}

Result<TokenClaims> read_token_claims(std::string_view token_der) {
    const auto* p = reinterpret_cast<const unsigned char*>(token_der.data());
    Pkcs7Ptr token(d2i_PKCS7(nullptr, &p, static_cast<long>(token_der.size())));
    if (!token ||
        p != reinterpret_cast<const unsigned char*>(token_der.data()) + token_der.size()) {
        ERR_clear_error();
        return fail(ErrorCode::invalid_argument, "not a DER timestamp token");
    }
    TstInfoPtr info(PKCS7_to_TS_TST_INFO(token.get()));
    if (!info) {
        ERR_clear_error();
        return fail(ErrorCode::invalid_argument, "timestamp token has no TSTInfo");
    }
    TS_MSG_IMPRINT* imprint = TS_TST_INFO_get_msg_imprint(info.get());
    X509_ALGOR* algo = imprint == nullptr ? nullptr : TS_MSG_IMPRINT_get_algo(imprint);
    ASN1_OCTET_STRING* msg = imprint == nullptr ? nullptr : TS_MSG_IMPRINT_get_msg(imprint);
    const ASN1_OBJECT* oid = nullptr;
    if (algo != nullptr) X509_ALGOR_get0(&oid, nullptr, nullptr, algo);
    if (oid == nullptr || OBJ_obj2nid(oid) != NID_sha256 || msg == nullptr ||
        ASN1_STRING_length(msg) != 32) {
        return fail(ErrorCode::invalid_argument,
                    "timestamp token's imprint is not a SHA-256 digest");
    }
    TokenClaims out;
    out.imprint.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(msg)), 32);
    auto when = gen_time(token.get());
    if (!when) return std::unexpected(when.error());
    out.gen_time_unix = *when;
    return out;
}

}  // namespace sa::agent::timestamp
