#include "agent/secrets/aws/testing/fake_aws.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <nlohmann/json.hpp>

#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"
#include "common/crypto/random.h"

namespace sa::agent::secrets::aws::fake {
namespace {

using nlohmann::json;

constexpr const char* kJson = "application/x-amz-json-1.1";

std::string lower(std::string text) {
    for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

std::string trim_collapse(const std::string& value) {
    std::string out;
    bool blank = false;
    for (char c : value) {
        if (c == ' ' || c == '\t') {
            blank = !out.empty();
            continue;
        }
        if (blank) out += ' ';
        blank = false;
        out += c;
    }
    return out;
}

std::string hmac(const std::string& key, const std::string& data) {
    std::array<unsigned char, 32> out{};
    unsigned int length = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &length);
    return std::string(reinterpret_cast<const char*>(out.data()), length);
}

std::vector<std::string> split(const std::string& text, char separator) {
    std::vector<std::string> parts;
    size_t start = 0;
    while (true) {
        const size_t end = text.find(separator, start);
        parts.push_back(text.substr(start, end - start));
        if (end == std::string::npos) break;
        start = end + 1;
    }
    return parts;
}

std::string iso8601(int64_t seconds) {
    const std::time_t t = static_cast<std::time_t>(seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buffer[32];
    std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buffer;
}

int64_t parse_amz_date(const std::string& text) {
    std::tm tm{};
    if (text.size() != 16 || strptime(text.c_str(), "%Y%m%dT%H%M%SZ", &tm) == nullptr) return -1;
    return static_cast<int64_t>(timegm(&tm));
}

void json_error(httplib::Response& res, int status, const std::string& type,
                const std::string& message, const char* message_field = "message") {
    res.status = status;
    res.set_content(json{{"__type", type}, {message_field, message}}.dump(), kJson);
}

void sts_error(httplib::Response& res, int status, const std::string& code,
               const std::string& message) {
    res.status = status;
    res.set_content(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
        "  <Error>\n    <Type>Sender</Type>\n    <Code>" +
            code + "</Code>\n    <Message>" + message +
            "</Message>\n  </Error>\n"
            "  <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>\n"
            "</ErrorResponse>\n",
        "text/xml");
}

}  // namespace

FakeAws::FakeAws(const FakeClock& clock)
    : clock_(clock), secrets_(agent::testing::pki()), sts_(agent::testing::pki()) {
    secrets_.http().Post("/", [this](const httplib::Request& req, httplib::Response& res) {
        handle_get_secret_value(req, res);
    });
    sts_.http().Post("/", [this](const httplib::Request& req, httplib::Response& res) {
        handle_assume_role(req, res);
    });
    // Anything else is a request the documented API does not have.
    for (auto* server : {&secrets_, &sts_}) {
        server->http().set_error_handler([this](const httplib::Request& req, httplib::Response&) {
            if (req.path != "/" || req.method != "POST") {
                violation("unexpected request " + req.method + " " + req.path);
            }
        });
    }
}

FakeAws::~FakeAws() = default;

void FakeAws::start() {
    secrets_.start();
    sts_.start();
}

std::string FakeAws::arn_of(const std::string& name) {
    return std::string("arn:aws:secretsmanager:") + kRegion + ":" + kAccount + ":secret:" + name +
           "-AbCdEf";
}

void FakeAws::add_access_key(const std::string& id, const std::string& secret,
                             const std::string& session_token, int64_t expiration) {
    std::lock_guard lock(mutex_);
    keys_[id] = AccessKey{secret, session_token, expiration, false};
}

void FakeAws::put_string(const std::string& name, const std::string& value,
                         std::vector<std::string> stages) {
    std::lock_guard lock(mutex_);
    auto& versions = secrets_by_name_[name];
    // Rotation as Secrets Manager does it: the new AWSCURRENT pushes the old
    // one to AWSPREVIOUS.
    if (std::find(stages.begin(), stages.end(), "AWSCURRENT") != stages.end()) {
        for (auto& version : versions) std::erase(version.stages, "AWSPREVIOUS");
        for (auto& version : versions) {
            std::replace(version.stages.begin(), version.stages.end(), std::string("AWSCURRENT"),
                         std::string("AWSPREVIOUS"));
        }
    }
    Version version;
    version.string = value;
    version.stages = std::move(stages);
    version.version_id = "EXAMPLE1-90ab-cdef-fedc-ba987SECRET" + std::to_string(versions.size());
    versions.push_back(std::move(version));
}

void FakeAws::put_binary(const std::string& name, const std::string& bytes) {
    std::lock_guard lock(mutex_);
    Version version;
    version.binary = bytes;
    version.stages = {"AWSCURRENT"};
    version.version_id = "EXAMPLE2-90ab-cdef-fedc-ba987BINARY";
    secrets_by_name_[name] = {std::move(version)};
}

void FakeAws::deny(const std::string& name) {
    std::lock_guard lock(mutex_);
    denied_.insert(name);
}

void FakeAws::fail_next(int status, std::string body, std::string content_type) {
    std::lock_guard lock(mutex_);
    next_failure_ = Failure{status, std::move(body), std::move(content_type)};
}

void FakeAws::expire_issued_credentials() {
    std::lock_guard lock(mutex_);
    for (auto& [id, key] : keys_) {
        if (key.issued) key.expiration = 1;
    }
}

void FakeAws::expect_web_identity(const std::string& role_arn, const std::string& token) {
    std::lock_guard lock(mutex_);
    role_arn_ = role_arn;
    web_identity_token_ = token;
}

void FakeAws::fail_next_sts(int status, std::string body) {
    std::lock_guard lock(mutex_);
    next_sts_failure_ = Failure{status, std::move(body), "text/xml"};
}

std::vector<std::string> FakeAws::violations() const {
    std::lock_guard lock(mutex_);
    return violations_;
}

std::string FakeAws::last_session_name() const {
    std::lock_guard lock(mutex_);
    return last_session_name_;
}

void FakeAws::violation(std::string what) {
    std::lock_guard lock(mutex_);
    violations_.push_back(std::move(what));
}

// SigV4 as the service checks it, written apart from sigv4.cpp on purpose.
// Header names: cpp-httplib keeps each name as received in a multimap with a
// case-insensitive comparator, and may not preserve the client's spelling;
// SigV4 lower-cases names anyway, so the verifier takes the signed-header
// list from the Authorization header (lower case, as AWS requires) and looks
// each one up case-insensitively, joining repeated fields with ','. The
// server's own additions (e.g. REMOTE_ADDR) are never in that list.
std::optional<std::pair<std::string, std::string>> FakeAws::verify_signature(
    const httplib::Request& req) {
    const std::string authorization = req.get_header_value("Authorization");
    if (authorization.empty()) {
        return std::pair{"MissingAuthenticationTokenException", "Missing Authentication Token"};
    }
    constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256 ";
    if (!authorization.starts_with(kAlgorithm)) {
        return std::pair{"IncompleteSignatureException", "Unsupported AWS 'algorithm'"};
    }
    std::map<std::string, std::string> fields;
    for (const auto& part : split(authorization.substr(kAlgorithm.size()), ',')) {
        const std::string item = trim_collapse(part);
        const size_t eq = item.find('=');
        if (eq != std::string::npos) fields[item.substr(0, eq)] = item.substr(eq + 1);
    }
    if (!fields.contains("Credential") || !fields.contains("SignedHeaders") ||
        !fields.contains("Signature")) {
        return std::pair{"IncompleteSignatureException",
                         "Authorization header requires 'Credential', 'Signature' and "
                         "'SignedHeaders' parameters"};
    }
    const auto credential = split(fields["Credential"], '/');
    if (credential.size() != 5 || credential[4] != "aws4_request") {
        return std::pair{"IncompleteSignatureException", "Credential is malformed"};
    }
    const auto key = keys_.find(credential[0]);
    if (key == keys_.end()) {
        return std::pair{"UnrecognizedClientException",
                         "The security token included in the request is invalid."};
    }
    const std::string amz_date = req.get_header_value("X-Amz-Date");
    const int64_t request_time = parse_amz_date(amz_date);
    if (request_time < 0 || credential[1] != amz_date.substr(0, 8)) {
        return std::pair{"IncompleteSignatureException",
                         "Date in Credential scope does not match YYYYMMDD from ISO-8601 "
                         "version of date from HTTP"};
    }
    if (std::llabs(request_time - clock_.now_seconds()) > 15 * 60) {
        return std::pair{"InvalidSignatureException", "Signature expired"};
    }
    if (credential[2] != kRegion) {
        return std::pair{"InvalidSignatureException",
                         "Credential should be scoped to a valid region."};
    }
    if (credential[3] != "secretsmanager") {
        return std::pair{"InvalidSignatureException",
                         "Credential should be scoped to correct service: 'secretsmanager'."};
    }
    const auto signed_headers = split(fields["SignedHeaders"], ';');
    if (!std::is_sorted(signed_headers.begin(), signed_headers.end()) ||
        std::find(signed_headers.begin(), signed_headers.end(), "host") == signed_headers.end() ||
        std::find(signed_headers.begin(), signed_headers.end(), "x-amz-date") ==
            signed_headers.end()) {
        return std::pair{"IncompleteSignatureException",
                         "SignedHeaders must be sorted and include host and x-amz-date"};
    }
    for (const auto& [name, value] : req.headers) {
        const std::string lowered = lower(name);
        if (lowered.starts_with("x-amz-") && std::find(signed_headers.begin(), signed_headers.end(),
                                                       lowered) == signed_headers.end()) {
            return std::pair{"InvalidSignatureException", "Header " + lowered + " is not signed"};
        }
    }
    if (!key->second.session_token.empty() &&
        req.get_header_value("X-Amz-Security-Token") != key->second.session_token) {
        return std::pair{"UnrecognizedClientException",
                         "The security token included in the request is invalid."};
    }
    if (key->second.expiration != 0 && clock_.now_seconds() >= key->second.expiration) {
        return std::pair{"ExpiredTokenException",
                         "The security token included in the request is expired"};
    }

    std::string canonical = req.method + "\n" + req.path + "\n\n";
    for (const auto& name : signed_headers) {
        canonical += name + ":";
        auto [first, last] = req.headers.equal_range(name);
        for (auto it = first; it != last; ++it) {
            if (it != first) canonical += ',';
            canonical += trim_collapse(it->second);
        }
        canonical += "\n";
    }
    canonical += "\n" + fields["SignedHeaders"] + "\n" + crypto::sha256_hex(req.body);
    const std::string scope =
        credential[1] + "/" + credential[2] + "/" + credential[3] + "/aws4_request";
    const std::string to_sign =
        "AWS4-HMAC-SHA256\n" + amz_date + "\n" + scope + "\n" + crypto::sha256_hex(canonical);
    std::string signing_key = hmac("AWS4" + key->second.secret, credential[1]);
    signing_key = hmac(signing_key, credential[2]);
    signing_key = hmac(signing_key, credential[3]);
    signing_key = hmac(signing_key, "aws4_request");
    const std::string expected = crypto::hex_encode(hmac(signing_key, to_sign));
    if (!crypto::equal_constant_time(expected, fields["Signature"])) {
        return std::pair{"InvalidSignatureException",
                         "The request signature we calculated does not match the signature you "
                         "provided. Check your AWS Secret Access Key and signing method. Consult "
                         "the service documentation for details."};
    }
    return std::nullopt;
}

void FakeAws::handle_get_secret_value(const httplib::Request& req, httplib::Response& res) {
    ++get_calls_;
    std::vector<std::string> found;
    if (req.get_header_value("Content-Type") != kJson) {
        found.push_back("Content-Type is \"" + req.get_header_value("Content-Type") + "\"");
    }
    if (req.get_header_value("X-Amz-Target") != "secretsmanager.GetSecretValue") {
        found.push_back("X-Amz-Target is \"" + req.get_header_value("X-Amz-Target") + "\"");
    }
    if (!req.params.empty()) found.push_back("GetSecretValue has a query string");
    for (auto& what : found) violation(std::move(what));
    if (!found.empty()) {
        return json_error(res, 400, "UnknownOperationException", "Unknown operation");
    }

    std::unique_lock lock(mutex_);
    if (auto rejected = verify_signature(req)) {
        ++signature_failures_;
        const int status = rejected->first == "MissingAuthenticationTokenException" ? 403 : 400;
        return json_error(res, status, rejected->first, rejected->second);
    }
    if (next_failure_) {
        res.status = next_failure_->status;
        res.set_content(next_failure_->body, next_failure_->content_type);
        next_failure_.reset();
        return;
    }

    const json body = json::parse(req.body, nullptr, false);
    bool shape_ok = body.is_object() && body.contains("SecretId") && body["SecretId"].is_string();
    if (shape_ok) {
        for (const auto& [field, value] : body.items()) {
            if ((field != "SecretId" && field != "VersionStage" && field != "VersionId") ||
                !value.is_string()) {
                shape_ok = false;
            }
        }
    }
    if (!shape_ok) {
        lock.unlock();
        violation("GetSecretValue body: " + req.body);
        return json_error(res, 400, "InvalidParameterException",
                          "The parameter name or value is invalid.");
    }
    std::string name = body["SecretId"].get<std::string>();
    for (const auto& [candidate, versions] : secrets_by_name_) {
        if (arn_of(candidate) == name) name = candidate;
    }
    const auto secret = secrets_by_name_.find(name);
    if (secret == secrets_by_name_.end()) {
        return json_error(res, 400, "ResourceNotFoundException",
                          "Secrets Manager can't find the specified secret.");
    }
    if (denied_.contains(name)) {
        // Some services spell the field "Message"; the store reads both.
        return json_error(res, 400, "AccessDeniedException",
                          "User: arn:aws:sts::123456789012:assumed-role/secure-agent/agent is not "
                          "authorized to perform: secretsmanager:GetSecretValue on resource: " +
                              name,
                          "Message");
    }
    const std::string stage = body.value("VersionStage", "AWSCURRENT");
    const auto version =
        std::find_if(secret->second.begin(), secret->second.end(), [&](const Version& v) {
            return std::find(v.stages.begin(), v.stages.end(), stage) != v.stages.end();
        });
    if (version == secret->second.end()) {
        return json_error(res, 400, "ResourceNotFoundException",
                          "Secrets Manager can't find the specified secret value for staging "
                          "label: " +
                              stage);
    }
    json answer = {{"ARN", arn_of(name)},
                   {"CreatedDate", 1.523477145713E9},
                   {"Name", name},
                   {"VersionId", version->version_id},
                   {"VersionStages", version->stages}};
    if (version->string) answer["SecretString"] = *version->string;
    if (version->binary) answer["SecretBinary"] = crypto::base64_encode(*version->binary);
    res.status = 200;
    res.set_content(answer.dump(), kJson);
}

void FakeAws::handle_assume_role(const httplib::Request& req, httplib::Response& res) {
    ++sts_calls_;
    std::vector<std::string> found;
    if (!req.get_header_value("Content-Type").starts_with("application/x-www-form-urlencoded")) {
        found.push_back("STS Content-Type is \"" + req.get_header_value("Content-Type") + "\"");
    }
    if (req.has_header("Authorization")) {
        found.push_back("AssumeRoleWithWebIdentity must not be signed");
    }
    httplib::Params params;
    httplib::detail::parse_query_text(req.body, params);
    std::map<std::string, std::string> form;
    for (const auto& [name, value] : params) {
        if (form.contains(name)) found.push_back("STS parameter repeated: " + name);
        form[name] = value;
    }
    const std::set<std::string> expected_names = {
        "Action", "Version", "RoleArn", "RoleSessionName", "WebIdentityToken", "DurationSeconds"};
    std::set<std::string> names;
    for (const auto& [name, value] : form) names.insert(name);
    if (names != expected_names) found.push_back("STS parameters: " + req.body.substr(0, 80));
    if (form["Action"] != "AssumeRoleWithWebIdentity" || form["Version"] != "2011-06-15") {
        found.push_back("STS Action/Version: " + form["Action"] + " " + form["Version"]);
    }
    for (auto& what : found) violation(std::move(what));
    if (!found.empty()) {
        return sts_error(res, 400, "InvalidAction",
                         "The action or operation requested is invalid.");
    }

    std::lock_guard lock(mutex_);
    last_session_name_ = form["RoleSessionName"];
    if (next_sts_failure_) {
        res.status = next_sts_failure_->status;
        res.set_content(next_sts_failure_->body, next_sts_failure_->content_type);
        next_sts_failure_.reset();
        return;
    }
    if (form["WebIdentityToken"] != web_identity_token_) {
        return sts_error(res, 400, "InvalidIdentityToken",
                         "Couldn't retrieve verification key from your identity provider, please "
                         "reference AssumeRoleWithWebIdentity documentation for requirements");
    }
    if (form["RoleArn"] != role_arn_) {
        return sts_error(res, 403, "AccessDenied",
                         "Not authorized to perform sts:AssumeRoleWithWebIdentity");
    }
    int64_t duration = 0;
    try {
        duration = std::stoll(form["DurationSeconds"]);
    } catch (const std::exception&) {
        duration = 0;
    }
    if (duration < 900 || duration > 43200) {
        return sts_error(res, 400, "ValidationError", "DurationSeconds is out of range");
    }
    const std::string id = "ASIAFAKE" + std::to_string(++issued_);
    const std::string secret = crypto::random_token(30);
    const std::string token = crypto::random_token(120);
    const int64_t expiration = clock_.now_seconds() + duration;
    keys_[id] = AccessKey{secret, token, expiration, true};
    res.status = 200;
    res.set_content(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
        "  <AssumeRoleWithWebIdentityResult>\n"
        "    <SubjectFromWebIdentityToken>system:serviceaccount:agents:secure-agent"
        "</SubjectFromWebIdentityToken>\n"
        "    <Audience>sts.amazonaws.com</Audience>\n"
        "    <AssumedRoleUser>\n"
        "      <Arn>arn:aws:sts::123456789012:assumed-role/secure-agent/" +
            form["RoleSessionName"] +
            "</Arn>\n"
            "      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:" +
            form["RoleSessionName"] +
            "</AssumedRoleId>\n"
            "    </AssumedRoleUser>\n"
            "    <Credentials>\n"
            "      <SessionToken>" +
            token + "</SessionToken>\n      <SecretAccessKey>" + secret +
            "</SecretAccessKey>\n      <Expiration>" + iso8601(expiration) +
            "</Expiration>\n      <AccessKeyId>" + id +
            "</AccessKeyId>\n"
            "    </Credentials>\n"
            "    <Provider>oidc.eks.eu-west-1.amazonaws.com</Provider>\n"
            "  </AssumeRoleWithWebIdentityResult>\n"
            "  <ResponseMetadata>\n"
            "    <RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId>\n"
            "  </ResponseMetadata>\n"
            "</AssumeRoleWithWebIdentityResponse>\n",
        "text/xml");
}

}  // namespace sa::agent::secrets::aws::fake
