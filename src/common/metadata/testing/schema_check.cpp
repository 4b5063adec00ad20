#include "common/metadata/testing/schema_check.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/crypto/random.h"

namespace sa::metadata::testing {

std::string schema_check_skip_reason() {
    if (std::system("python3 -c 'import jsonschema' >/dev/null 2>&1") != 0) {
        return "python3 with jsonschema (python3-jsonschema) is not installed";
    }
    return "";
}

Result<std::vector<std::string>> check_against_schema(std::string_view ndjson) {
    const auto input = std::filesystem::temp_directory_path() /
                       ("sa-schema-check-" + crypto::random_token(8) + ".ndjson");
    {
        std::ofstream out(input, std::ios::binary);
        out.write(ndjson.data(), static_cast<std::streamsize>(ndjson.size()));
        if (!out) return fail(ErrorCode::io, "cannot write " + input.string());
    }
    const std::string command = std::string("'") + SA_VALIDATE_METADATA + "' '" +
                                SA_METADATA_SCHEMA + "' '" + input.string() + "' 2>&1";
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) {
        std::filesystem::remove(input);
        return fail(ErrorCode::io, "cannot run the schema validator");
    }
    std::string output;
    char buffer[4096];
    size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
    const int status = ::pclose(pipe);
    std::filesystem::remove(input);
    if (!WIFEXITED(status) || WEXITSTATUS(status) > 1) {
        return fail(ErrorCode::internal, "the schema validator failed: " + output);
    }
    std::vector<std::string> verdicts;
    std::istringstream lines(output);
    std::string line;
    while (std::getline(lines, line)) {
        const auto space = line.find(' ');
        if (space == std::string::npos) return fail(ErrorCode::internal, "validator said: " + line);
        verdicts.push_back(line.substr(space + 1));
    }
    return verdicts;
}

Result<std::vector<std::string>> check_against_schema(const std::vector<Record>& records) {
    std::string ndjson;
    for (const auto& r : records) ndjson += to_json(r).dump() + "\n";
    return check_against_schema(ndjson);
}

}  // namespace sa::metadata::testing
