#include "agent/secrets/aws/sts_xml.h"

#include <expat.h>

#include <cctype>
#include <ctime>
#include <map>
#include <memory>
#include <vector>

namespace sa::agent::secrets::aws {
namespace {

constexpr size_t kMaxDepth = 16;

// Collects the text of the elements at the wanted slash-separated paths.
struct Collector {
    XML_Parser parser = nullptr;
    std::vector<std::string> path;
    std::string joined;                         // path joined with '/'
    std::map<std::string, std::string> wanted;  // path -> text
    bool refused = false;

    ~Collector() {
        for (auto& [name, text] : wanted) wipe(text);
    }

    void rejoin() {
        joined.clear();
        for (const auto& element : path) {
            if (!joined.empty()) joined += '/';
            joined += element;
        }
    }

    void stop() {
        refused = true;
        XML_StopParser(parser, static_cast<XML_Bool>(0));
    }

    static void on_start(void* data, const XML_Char* name, const XML_Char**) {
        auto* self = static_cast<Collector*>(data);
        if (self->path.size() >= kMaxDepth) return self->stop();
        self->path.emplace_back(name);
        self->rejoin();
    }
    static void on_end(void* data, const XML_Char*) {
        auto* self = static_cast<Collector*>(data);
        if (!self->path.empty()) self->path.pop_back();
        self->rejoin();
    }
    static void on_text(void* data, const XML_Char* text, int length) {
        auto* self = static_cast<Collector*>(data);
        auto it = self->wanted.find(self->joined);
        if (it != self->wanted.end()) it->second.append(text, static_cast<size_t>(length));
    }
    static void on_doctype(void* data, const XML_Char*, const XML_Char*, const XML_Char*, int) {
        static_cast<Collector*>(data)->stop();
    }
    static void on_entity(void* data, const XML_Char*, int, const XML_Char*, int, const XML_Char*,
                          const XML_Char*, const XML_Char*, const XML_Char*) {
        static_cast<Collector*>(data)->stop();
    }
};

struct ParserDeleter {
    void operator()(XML_ParserStruct* p) const { XML_ParserFree(p); }
};

// False when the document is not well-formed or was refused.
bool collect(std::string_view xml, Collector& collector) {
    std::unique_ptr<XML_ParserStruct, ParserDeleter> parser(XML_ParserCreate("UTF-8"));
    if (!parser) return false;
    collector.parser = parser.get();
    XML_SetUserData(parser.get(), &collector);
    XML_SetElementHandler(parser.get(), &Collector::on_start, &Collector::on_end);
    XML_SetCharacterDataHandler(parser.get(), &Collector::on_text);
    XML_SetStartDoctypeDeclHandler(parser.get(), &Collector::on_doctype);
    XML_SetEntityDeclHandler(parser.get(), &Collector::on_entity);
    const auto status = XML_Parse(parser.get(), xml.data(), static_cast<int>(xml.size()), 1);
    return status == XML_STATUS_OK && !collector.refused;
}

std::string trimmed(const std::string& text) {
    const size_t first = text.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) return {};
    const size_t last = text.find_last_not_of(" \t\r\n");
    return text.substr(first, last - first + 1);
}

}  // namespace

Result<int64_t> parse_iso8601_utc(std::string_view text) {
    // YYYY-MM-DDTHH:MM:SS[.fff]Z
    const auto bad = [] { return fail(ErrorCode::invalid_argument, "not an ISO 8601 UTC time"); };
    if (text.size() < 20 || text.back() != 'Z') return bad();
    const std::string_view main = text.substr(0, 19);
    static constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:dd";
    for (size_t i = 0; i < kShape.size(); ++i) {
        const bool digit = std::isdigit(static_cast<unsigned char>(main[i])) != 0;
        if (kShape[i] == 'd' ? !digit : main[i] != kShape[i]) return bad();
    }
    const std::string_view rest = text.substr(19, text.size() - 20);
    if (!rest.empty()) {
        if (rest[0] != '.' || rest.size() < 2) return bad();
        for (char c : rest.substr(1)) {
            if (!std::isdigit(static_cast<unsigned char>(c))) return bad();
        }
    }
    const auto number = [&](size_t pos, size_t len) {
        int v = 0;
        for (size_t i = pos; i < pos + len; ++i) v = v * 10 + (main[i] - '0');
        return v;
    };
    std::tm tm{};
    tm.tm_year = number(0, 4) - 1900;
    tm.tm_mon = number(5, 2) - 1;
    tm.tm_mday = number(8, 2);
    tm.tm_hour = number(11, 2);
    tm.tm_min = number(14, 2);
    tm.tm_sec = number(17, 2);
    if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
        tm.tm_sec > 60) {
        return bad();
    }
    return static_cast<int64_t>(timegm(&tm));
}

Result<TemporaryCredentials> parse_assume_role_with_web_identity(std::string_view xml) {
    static const std::string kPrefix =
        "AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult/Credentials/";
    Collector collector;
    for (const char* field : {"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}) {
        collector.wanted[kPrefix + field];
    }
    if (!collect(xml, collector)) {
        return fail(ErrorCode::invalid_argument,
                    "AssumeRoleWithWebIdentity answer is not well-formed XML");
    }
    TemporaryCredentials out;
    for (const char* field : {"AccessKeyId", "SecretAccessKey", "SessionToken"}) {
        std::string& text = collector.wanted[kPrefix + field];
        std::string value = trimmed(text);
        wipe(text);
        if (value.empty()) {
            return fail(
                ErrorCode::invalid_argument,
                std::string("AssumeRoleWithWebIdentity answer has no Credentials/") + field);
        }
        SecretValue secret = SecretValue::from(std::move(value));
        if (std::string_view(field) == "AccessKeyId") {
            out.access_key_id = std::move(secret);
        } else if (std::string_view(field) == "SecretAccessKey") {
            out.secret_access_key = std::move(secret);
        } else {
            out.session_token = std::move(secret);
        }
    }
    auto expiration = parse_iso8601_utc(trimmed(collector.wanted[kPrefix + "Expiration"]));
    if (!expiration) {
        return fail(ErrorCode::invalid_argument,
                    "AssumeRoleWithWebIdentity answer has no valid Credentials/Expiration");
    }
    out.expiration = *expiration;
    return out;
}

StsError parse_sts_error(std::string_view xml) {
    Collector collector;
    collector.wanted["ErrorResponse/Error/Code"];
    collector.wanted["ErrorResponse/Error/Message"];
    if (!collect(xml, collector)) return {};
    return StsError{trimmed(collector.wanted["ErrorResponse/Error/Code"]),
                    trimmed(collector.wanted["ErrorResponse/Error/Message"])};
}

}  // namespace sa::agent::secrets::aws
