#include "agent/secrets/vault/vault_secret_store.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <chrono>
#include <optional>
#include <string_view>
#include <utility>

#include "agent/secrets/http_store.h"
#include "agent/secrets/json_wipe.h"
#include "common/crypto/digest.h"
#include "common/util/files.h"

namespace sa::agent::secrets::vault {

// The login token and its lease, as granted by the last login or renewal.
struct VaultSecretStore::Lease {
    SecretValue token;
    int64_t lease_seconds = 0;  // as granted at login; 0: the token never expires
    int64_t expires_at = 0;     // Unix seconds; meaningless when lease_seconds is 0
    bool renewable = false;
};

// Where a reference's PATH points: the encoded secret path and the version.
struct VaultSecretStore::Target {
    std::string path;     // percent-encoded segments joined by '/'
    int64_t version = 0;  // 0: the current version
};

namespace {

using json = nlohmann::json;

// Wipes a string that held secret bytes (a response body, a request body)
// on every way out of a scope.
class WipeOnExit final {
  public:
    explicit WipeOnExit(std::string& text) : text_(text) {}
    ~WipeOnExit() { wipe(text_); }
    WipeOnExit(const WipeOnExit&) = delete;
    WipeOnExit& operator=(const WipeOnExit&) = delete;

  private:
    std::string& text_;
};

bool has_control(std::string_view text) {
    for (unsigned char c : text) {
        if (std::iscntrl(c)) return true;
    }
    return false;
}

// Percent-encodes each '/'-separated segment of path. Empty, "." and ".."
// segments are refused: libcurl would squash dot segments, so a reference
// like "../../sys/x" would otherwise reach another Vault endpoint.
std::optional<std::string> encode_path(std::string_view path) {
    std::string out;
    size_t start = 0;
    while (true) {
        const size_t slash = path.find('/', start);
        const std::string_view segment = path.substr(
            start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
        if (segment.empty() || segment == "." || segment == "..") return std::nullopt;
        if (!out.empty()) out += '/';
        out += crypto::percent_encode(segment);
        if (slash == std::string_view::npos) return out;
        start = slash + 1;
    }
}

// A mount setting: surrounding slashes are ignored ("/kv/" = "kv").
std::optional<std::string> encode_mount(std::string_view mount) {
    while (!mount.empty() && mount.front() == '/') mount.remove_prefix(1);
    while (!mount.empty() && mount.back() == '/') mount.remove_suffix(1);
    return encode_path(mount);
}

// Appends text as a JSON string literal. The caller reserves the capacity
// first, so no reallocation leaves a copy of a credential behind.
void append_json_string(std::string& out, std::string_view text) {
    out += '"';
    append_json_escaped(out, text);
    out += '"';
}

// {"NAME1":"VALUE1","NAME2":"VALUE2"} in a buffer that is never reallocated.
std::string json_pair_body(std::string_view name1, std::string_view value1, std::string_view name2,
                           std::string_view value2) {
    std::string body;
    body.reserve(16 + 6 * (name1.size() + value1.size() + name2.size() + value2.size()));
    body += '{';
    append_json_string(body, name1);
    body += ':';
    append_json_string(body, value1);
    body += ',';
    append_json_string(body, name2);
    body += ':';
    append_json_string(body, value2);
    body += '}';
    return body;
}

// The text of Vault's error body {"errors":["...", ...]}, joined with "; ";
// a body that is not such JSON (a proxy's page) is quoted as it is. Always
// made safe through error_detail.
std::string vault_error_text(const std::string& body) {
    const json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) return error_detail(body);
    if (!doc.is_object()) return {};
    auto errors = doc.find("errors");
    if (errors == doc.end() || !errors->is_array()) return {};
    std::string text;
    for (const auto& entry : *errors) {
        if (!entry.is_string()) continue;
        const std::string& message = entry.get_ref<const std::string&>();
        if (message.empty()) continue;
        if (!text.empty()) text += "; ";
        text += message;
    }
    return error_detail(text);
}

// The shared mapping plus Vault's own: 412 is a standby (or performance
// replica) that has not caught up with the requested state yet: retry.
Error vault_error(std::string_view where, long status, const std::string& body) {
    Error error = http_store_error(where, status, vault_error_text(body));
    if (status == 412) error.code = ErrorCode::unavailable;
    return error;
}

// A refused login: Vault answers 400 for an unknown role or a wrong SecretID
// ("invalid role or secret ID") and 403 for a rejected JWT; both mean the
// agent's identity was not accepted.
Error login_error(std::string_view where, long status, const std::string& body) {
    Error error = vault_error(where, status, body);
    if (status == 400) error.code = ErrorCode::permission_denied;
    return error;
}

Error malformed(const std::string& where, std::string_view what) {
    return Error{ErrorCode::invalid_argument,
                 where + ": malformed answer from Vault (" + std::string(what) + ")"};
}

// The client token, lease and renewability of a login or renew-self answer
// ({"auth":{"client_token","lease_duration","renewable",...}}).
struct Grant {
    SecretValue token;
    int64_t lease_seconds = 0;
    bool renewable = false;
};

Result<Grant> parse_grant(const std::string& body, const std::string& where) {
    json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object()) {
        wipe_json(doc);
        return std::unexpected(malformed(where, "not a JSON object"));
    }
    Grant grant;
    std::string problem;
    auto auth = doc.find("auth");
    if (auth == doc.end() || !auth->is_object()) {
        problem = "no auth object";
    } else {
        auto token = auth->find("client_token");
        auto lease = auth->find("lease_duration");
        auto renewable = auth->find("renewable");
        if (token == auth->end() || !token->is_string() ||
            token->get_ref<const std::string&>().empty()) {
            problem = "no auth.client_token";
        } else if (lease == auth->end() || !lease->is_number_integer() ||
                   lease->get<int64_t>() < 0) {
            problem = "no auth.lease_duration";
        } else if (renewable != auth->end() && !renewable->is_boolean()) {
            problem = "auth.renewable is not a boolean";
        } else {
            grant.token = SecretValue::copy_of(token->get_ref<const std::string&>());
            grant.lease_seconds = lease->get<int64_t>();
            grant.renewable = renewable != auth->end() && renewable->get<bool>();
        }
    }
    wipe_json(doc);
    if (!problem.empty()) return std::unexpected(malformed(where, problem));
    return grant;
}

// For a 404 (or a 200 without data) of a KV v2 read: Vault still sends the
// version's metadata when that version was deleted or destroyed.
std::string deleted_version_detail(const json& doc) {
    if (!doc.is_object()) return {};
    auto data = doc.find("data");
    if (data == doc.end() || !data->is_object()) return {};
    auto metadata = data->find("metadata");
    if (metadata == data->end() || !metadata->is_object()) return {};
    std::string version = "version";
    if (auto v = metadata->find("version"); v != metadata->end() && v->is_number_integer()) {
        version += " " + std::to_string(v->get<int64_t>());
    }
    if (auto d = metadata->find("destroyed");
        d != metadata->end() && d->is_boolean() && d->get<bool>()) {
        return version + " is destroyed";
    }
    if (auto t = metadata->find("deletion_time");
        t != metadata->end() && t->is_string() && !t->get_ref<const std::string&>().empty()) {
        return version + " is deleted";
    }
    return {};
}

}  // namespace

Result<std::unique_ptr<VaultSecretStore>> VaultSecretStore::create(
    std::string name, VaultSettings settings, std::unique_ptr<egress::Transport> transport,
    CredentialReader credentials, std::shared_ptr<const auth::Clock> clock) {
    const std::string prefix = "secret store \"" + name + "\": ";
    auto bad = [&](const std::string& what) -> Result<std::unique_ptr<VaultSecretStore>> {
        return fail(ErrorCode::invalid_argument, prefix + what);
    };
    if (name.empty()) return fail(ErrorCode::invalid_argument, "vault secret store needs a name");
    if (!transport) return bad("no transport");

    std::string address = settings.address;
    while (address.ends_with('/')) address.pop_back();
    const bool https = address.starts_with("https://");
    const size_t scheme = https ? 8 : address.starts_with("http://") ? 7 : 0;
    if (scheme == 0) return bad("address must be an https:// (or http://) URL");
    if (address.size() == scheme || address[scheme] == '/' || has_control(address) ||
        address.find_first_of(" ?#@") != std::string::npos) {
        return bad("address must be SCHEME://HOST[:PORT] without user, query or fragment");
    }
    auto kv_mount = encode_mount(settings.mount);
    if (!kv_mount) return bad("mount must be a path like \"secret\" or \"kv/team\"");
    if (has_control(settings.namespace_)) return bad("namespace contains a control character");
    if (settings.timeout_seconds < 1 || settings.timeout_seconds > 300) {
        return bad("timeout_seconds must be between 1 and 300");
    }

    const VaultAuthSettings& a = settings.auth;
    auto is_set = [](const SecretRef& ref) { return !ref.store.empty() && !ref.path.empty(); };
    Method method = Method::token;
    std::string default_mount;
    if (a.method == "token") {
        if (!is_set(a.token)) return bad("auth.token is required for auth.method token");
    } else if (a.method == "approle") {
        method = Method::approle;
        default_mount = "approle";
        if (a.role_id.empty()) return bad("auth.role_id is required for auth.method approle");
        if (!is_set(a.secret_id)) {
            return bad("auth.secret_id is required for auth.method approle");
        }
    } else if (a.method == "kubernetes") {
        method = Method::kubernetes;
        default_mount = "kubernetes";
        if (a.role.empty()) return bad("auth.role is required for auth.method kubernetes");
        if (a.jwt_file.empty()) return bad("auth.jwt_file must not be empty");
    } else {
        return bad("auth.method must be one of token, approle, kubernetes");
    }
    std::string auth_mount;
    if (method != Method::token) {
        auto encoded = encode_mount(a.mount.empty() ? default_mount : a.mount);
        if (!encoded) return bad("auth.mount must be a path like \"approle\" or \"k8s/prod\"");
        auth_mount = std::move(*encoded);
    }
    if (method != Method::kubernetes && !credentials) {
        return bad("no credential reader for auth.method " + a.method);
    }
    if (!clock) clock = std::make_shared<auth::SystemClock>();

    std::unique_ptr<VaultSecretStore> store(new VaultSecretStore(
        std::move(name), std::move(settings), method, std::move(address), std::move(*kv_mount),
        std::move(auth_mount), std::move(transport), std::move(credentials), std::move(clock)));
    return store;
}

VaultSecretStore::VaultSecretStore(std::string name, VaultSettings settings, Method method,
                                   std::string address, std::string kv_mount,
                                   std::string auth_mount,
                                   std::unique_ptr<egress::Transport> transport,
                                   CredentialReader credentials,
                                   std::shared_ptr<const auth::Clock> clock)
    : name_(std::move(name)),
      settings_(std::move(settings)),
      method_(method),
      auth_mount_(std::move(auth_mount)),
      address_(std::move(address)),
      kv_mount_(std::move(kv_mount)),
      credentials_(std::move(credentials)),
      clock_(std::move(clock)),
      transport_(std::move(transport)) {}

VaultSecretStore::~VaultSecretStore() = default;

Result<SecretValue> VaultSecretStore::read(const SecretRef& ref) {
    const std::string where = store_where(name_, ref.path);

    // PATH[@VERSION]
    Target target;
    std::string_view path = ref.path;
    if (const size_t at = path.rfind('@'); at != std::string_view::npos) {
        const std::string_view digits = path.substr(at + 1);
        const bool numeric = !digits.empty() && digits.size() <= 18 &&
                             digits.find_first_not_of("0123456789") == std::string_view::npos;
        if (numeric) {
            target.version = std::stoll(std::string(digits));
            if (target.version == 0) {
                return fail(ErrorCode::invalid_argument, where + ": version must be 1 or more");
            }
            path = path.substr(0, at);
        }
    }
    auto encoded = encode_path(path);
    if (!encoded) {
        return fail(ErrorCode::invalid_argument,
                    where +
                        ": PATH must be '/'-separated names without empty, \".\" or \"..\" "
                        "segments");
    }
    target.path = std::move(*encoded);

    std::lock_guard lock(mutex_);
    if (method_ == Method::token) return read_with_token_method(target, ref, where);
    return read_with_login(target, ref, where);
}

Result<SecretValue> VaultSecretStore::read_with_token_method(const Target& target,
                                                             const SecretRef& ref,
                                                             const std::string& where) {
    auto token = read_credential(settings_.auth.token, "auth.token", where);
    if (!token) return std::unexpected(token.error());
    bool forbidden = false;
    auto value = read_kv(target, ref, where, *token, forbidden);
    if (!forbidden) return value;
    // The token may have been rotated since the reference was last read (by
    // a cache around the credential reader): one more read, one retry.
    auto again = read_credential(settings_.auth.token, "auth.token", where);
    if (!again || crypto::equal_constant_time(again->reveal(), token->reveal())) return value;
    forbidden = false;
    return read_kv(target, ref, where, *again, forbidden);
}

Result<SecretValue> VaultSecretStore::read_with_login(const Target& target, const SecretRef& ref,
                                                      const std::string& where) {
    bool fresh = false;
    if (auto ready = ensure_token(where, fresh); !ready) return std::unexpected(ready.error());
    bool forbidden = false;
    auto value = read_kv(target, ref, where, lease_->token, forbidden);
    if (!forbidden || fresh) return value;
    // A 403 with a token that worked before: it was probably revoked. Log in
    // again once; a 403 with the fresh token is the answer.
    lease_.reset();
    if (auto again = login(where); !again) return std::unexpected(again.error());
    forbidden = false;
    return read_kv(target, ref, where, lease_->token, forbidden);
}

Result<SecretValue> VaultSecretStore::read_kv(const Target& target, const SecretRef& ref,
                                              const std::string& where, const SecretValue& token,
                                              bool& forbidden) {
    std::string path = kv_mount_ + "/data/" + target.path;
    if (target.version > 0) path += "?version=" + std::to_string(target.version);
    egress::HttpRequest req = request("GET", std::move(path));
    req.authorization = egress::Authorization::bearer(token);
    auto response = transport_->send(req);
    if (!response) return std::unexpected(transport_store_error(where, response.error()));
    WipeOnExit wipe_body(response->body);
    const long status = response->status;
    forbidden = status == 403;

    if (status != 200 && status != 404) {
        return std::unexpected(vault_error(where, status, response->body));
    }
    json doc = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
    if (status == 404) {
        std::string detail = doc.is_discarded() ? std::string() : deleted_version_detail(doc);
        wipe_json(doc);
        if (detail.empty()) return std::unexpected(vault_error(where, status, response->body));
        return std::unexpected(http_store_error(where, status, detail));
    }
    if (doc.is_discarded() || !doc.is_object()) {
        wipe_json(doc);
        return std::unexpected(malformed(where, "not a JSON object"));
    }
    auto data = doc.find("data");
    if (data == doc.end() || !data->is_object()) {
        wipe_json(doc);
        return std::unexpected(malformed(where, "no data object"));
    }
    auto secret = data->find("data");
    if (secret == data->end()) {
        wipe_json(doc);
        return std::unexpected(malformed(where, "no data.data"));
    }
    if (secret->is_null()) {
        // Vault sends a deleted version with data.data null (with 404; be
        // as strict with a 200).
        std::string detail = deleted_version_detail(doc);
        wipe_json(doc);
        if (detail.empty()) detail = "version has no data";
        return std::unexpected(http_store_error(where, 404, detail));
    }
    if (!secret->is_object()) {
        wipe_json(doc);
        return std::unexpected(malformed(where, "data.data is not an object"));
    }
    std::string content = secret->dump();
    wipe_json(doc);
    return select_secret(std::move(content), ref, where);
}

Status VaultSecretStore::ensure_token(const std::string& where, bool& fresh) {
    const int64_t now = clock_->now_seconds();
    if (lease_ && lease_->lease_seconds > 0 && now >= lease_->expires_at) lease_.reset();
    if (!lease_) {
        auto done = login(where);
        fresh = done.has_value();
        return done;
    }
    if (lease_->lease_seconds == 0) return {};  // a token without expiry
    const int64_t remaining = lease_->expires_at - now;
    if (remaining * 3 >= lease_->lease_seconds) return {};
    if (lease_->renewable && renew(where)) return {};
    // Renewal failed or is not possible: log in again. If that fails too,
    // the old token still works until it expires.
    fresh = login(where).has_value();
    return {};
}

Status VaultSecretStore::login(const std::string& where) {
    const std::string login_where = where + ": login";
    std::string body;
    WipeOnExit wipe_request(body);
    if (method_ == Method::approle) {
        auto secret_id = read_credential(settings_.auth.secret_id, "auth.secret_id", where);
        if (!secret_id) return std::unexpected(secret_id.error());
        body = json_pair_body("role_id", settings_.auth.role_id, "secret_id", secret_id->reveal());
    } else {
        // Read at every login: the kubelet rotates the projected token.
        auto jwt = util::read_file(settings_.auth.jwt_file);
        if (!jwt) {
            return fail(ErrorCode::permission_denied,
                        login_where + ": cannot read auth.jwt_file: " + jwt.error().message);
        }
        WipeOnExit wipe_jwt(*jwt);
        std::string_view token = *jwt;
        while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) {
            token.remove_suffix(1);
        }
        if (token.empty()) {
            return fail(ErrorCode::permission_denied, login_where + ": auth.jwt_file is empty");
        }
        body = json_pair_body("role", settings_.auth.role, "jwt", token);
    }

    egress::HttpRequest req = request("POST", "auth/" + auth_mount_ + "/login");
    req.headers.emplace_back("Content-Type", "application/json");
    req.body = body;
    const int64_t now = clock_->now_seconds();
    auto response = transport_->send(req);
    if (!response) return std::unexpected(transport_store_error(login_where, response.error()));
    WipeOnExit wipe_body(response->body);
    if (response->status != 200) {
        return std::unexpected(login_error(login_where, response->status, response->body));
    }
    auto grant = parse_grant(response->body, login_where);
    if (!grant) return std::unexpected(grant.error());
    auto lease = std::make_unique<Lease>();
    lease->token = std::move(grant->token);
    lease->lease_seconds = grant->lease_seconds;
    lease->expires_at = now + grant->lease_seconds;
    lease->renewable = grant->renewable;
    lease_ = std::move(lease);
    return {};
}

Status VaultSecretStore::renew(const std::string& where) {
    const std::string renew_where = where + ": token renewal";
    egress::HttpRequest req = request("POST", "auth/token/renew-self");
    req.headers.emplace_back("Content-Type", "application/json");
    req.body = "{}";  // no increment: Vault applies the token's default TTL
    req.authorization = egress::Authorization::bearer(lease_->token);
    const int64_t now = clock_->now_seconds();
    auto response = transport_->send(req);
    if (!response) return std::unexpected(transport_store_error(renew_where, response.error()));
    WipeOnExit wipe_body(response->body);
    if (response->status != 200) {
        return std::unexpected(vault_error(renew_where, response->status, response->body));
    }
    auto grant = parse_grant(response->body, renew_where);
    if (!grant) return std::unexpected(grant.error());
    // Near its max TTL, Vault grants only what is left; if that does not get
    // the token out of its last third, only a new login helps.
    if (grant->lease_seconds * 3 < lease_->lease_seconds) {
        return fail(ErrorCode::unavailable, renew_where + ": token is near its max TTL");
    }
    lease_->expires_at = now + grant->lease_seconds;
    lease_->renewable = grant->renewable;
    return {};
}

Result<SecretValue> VaultSecretStore::read_credential(const SecretRef& ref, const char* field,
                                                      const std::string& where) {
    auto value = credentials_(ref);
    if (!value) {
        // Only a retry-worthy failure stays unavailable: any other failure
        // to read the agent's own credential is a problem of its identity.
        const ErrorCode code = value.error().code == ErrorCode::unavailable
                                   ? ErrorCode::unavailable
                                   : ErrorCode::permission_denied;
        return fail(code, where + ": cannot read " + field + " " + ref.to_string() + ": " +
                              value.error().message);
    }
    if (value->empty()) {
        return fail(ErrorCode::permission_denied,
                    where + ": " + field + " " + ref.to_string() + " is empty");
    }
    return value;
}

egress::HttpRequest VaultSecretStore::request(std::string method, std::string path) const {
    egress::HttpRequest req;
    req.method = std::move(method);
    req.url = address_ + "/v1/" + path;
    req.timeout = std::chrono::seconds(settings_.timeout_seconds);
    if (!settings_.namespace_.empty()) {
        req.headers.emplace_back("X-Vault-Namespace", settings_.namespace_);
    }
    return req;
}

}  // namespace sa::agent::secrets::vault
