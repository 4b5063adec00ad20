#include "agent/worker/messages.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <string>

namespace sa::agent::worker {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

WorkerJob sample_job() {
    WorkerJob job;
    job.job_id = "job-1";
    job.operation = "extract_metadata";
    job.source = {.name = "shop",
                  .connector = "sqlite",
                  .path = "/data/shop.db",
                  .host = "db.internal",
                  .address = "10.0.0.7",
                  .database = "shop",
                  .sensitivity = "high",
                  .port = 5432,
                  .sslmode = "verify-ca",
                  .ca_file = "/etc/secure-agent/db-ca.pem",
                  .application_name = "job-1"};
    jobs::ObjectFilters f;
    f.schemas.include = {"main"};
    f.tables.exclude = {"payroll.*"};
    job.filters = {f, jobs::ObjectFilters{}};
    job.limits = {100, 1 << 20};
    job.chunk_target_bytes = 1000;
    job.spool_dir = "/var/spool/job-1";
    job.sandbox.strict = true;
    job.sandbox.limits.cpu_seconds = 60;
    return job;
}

TEST(MessagesTest, JobRoundTrips) {
    const WorkerJob job = sample_job();
    auto decoded = decode_job(encode_job(job));
    ASSERT_TRUE(decoded) << decoded.error().describe();
    EXPECT_EQ(decoded->job_id, "job-1");
    EXPECT_EQ(decoded->operation, "extract_metadata");
    EXPECT_EQ(decoded->source.name, "shop");
    EXPECT_EQ(decoded->source.connector, "sqlite");
    EXPECT_EQ(decoded->source.path, "/data/shop.db");
    EXPECT_EQ(decoded->source.host, "db.internal");
    EXPECT_EQ(decoded->source.database, "shop");
    EXPECT_EQ(decoded->source.sensitivity, "high");
    EXPECT_EQ(decoded->source.port, 5432);
    EXPECT_EQ(decoded->source.address, "10.0.0.7");
    EXPECT_EQ(decoded->source.sslmode, "verify-ca");
    EXPECT_EQ(decoded->source.ca_file, "/etc/secure-agent/db-ca.pem");
    EXPECT_EQ(decoded->source.application_name, "job-1");
    ASSERT_EQ(decoded->filters.size(), 2u);
    EXPECT_EQ(decoded->filters[0].schemas.include, std::vector<std::string>{"main"});
    EXPECT_EQ(decoded->filters[0].tables.exclude, std::vector<std::string>{"payroll.*"});
    EXPECT_TRUE(decoded->filters[1].empty());
    EXPECT_EQ(decoded->limits.max_objects, 100);
    EXPECT_EQ(decoded->limits.max_bytes, 1 << 20);
    EXPECT_EQ(decoded->chunk_target_bytes, 1000u);
    EXPECT_EQ(decoded->spool_dir, "/var/spool/job-1");
    EXPECT_TRUE(decoded->sandbox.strict);
    EXPECT_EQ(decoded->sandbox.limits.cpu_seconds, 60u);
    EXPECT_EQ(decoded->sandbox.limits.address_space_bytes, sandbox::Limits{}.address_space_bytes);
}

TEST(MessagesTest, JobErrorsNameTheField) {
    json j = json::parse(encode_job(sample_job()));
    j["source"]["port"] = 70000;
    auto bad_port = decode_job(j.dump());
    ASSERT_FALSE(bad_port);
    EXPECT_EQ(bad_port.error().message, "job.source.port: must be between 0 and 65535");

    j = json::parse(encode_job(sample_job()));
    j["source"]["address"] = "db.internal";
    auto name = decode_job(j.dump());
    ASSERT_FALSE(name);
    EXPECT_EQ(name.error().message, "job.source.address: expected an IPv4 or IPv6 address");

    j["source"]["address"] = "::1";
    EXPECT_TRUE(decode_job(j.dump()));
    j["source"].erase("sslmode");
    auto defaulted = decode_job(j.dump());
    ASSERT_TRUE(defaulted);
    EXPECT_EQ(defaulted->source.sslmode, "verify-full");

    j["source"]["sslmode"] = "prefer";
    auto sslmode = decode_job(j.dump());
    ASSERT_FALSE(sslmode);
    EXPECT_EQ(sslmode.error().message,
              "job.source.sslmode: expected disable, require, verify-ca or verify-full");

    j = json::parse(encode_job(sample_job()));
    j["source"]["ca_file"] = "ca.pem";
    auto ca = decode_job(j.dump());
    ASSERT_FALSE(ca);
    EXPECT_EQ(ca.error().message, "job.source.ca_file: expected an absolute path");

    j = json::parse(encode_job(sample_job()));
    j["spool_dir"] = "relative/dir";
    auto relative = decode_job(j.dump());
    ASSERT_FALSE(relative);
    EXPECT_EQ(relative.error().message, "job.spool_dir: expected an absolute path");

    j = json::parse(encode_job(sample_job()));
    j["surprise"] = 1;
    auto unknown = decode_job(j.dump());
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().message, "job.surprise: unknown field");

    j = json::parse(encode_job(sample_job()));
    j["filters"][0]["tables"]["include"] = json::array({"("});
    auto filter = decode_job(j.dump());
    ASSERT_FALSE(filter);
    EXPECT_NE(filter.error().message.find("job.filters[0]"), std::string::npos);

    EXPECT_FALSE(decode_job("not json"));
    EXPECT_FALSE(decode_job("[1,2]"));
}

TEST(MessagesTest, JobBaselineFlagIsOptionalAndOnlyForExtraction) {
    WorkerJob job = sample_job();
    json j = json::parse(encode_job(job));
    EXPECT_FALSE(j.contains("baseline"));  // absent: a full run
    auto decoded = decode_job(j.dump());
    ASSERT_TRUE(decoded);
    EXPECT_FALSE(decoded->baseline);

    job.baseline = true;
    j = json::parse(encode_job(job));
    EXPECT_EQ(j["baseline"], true);
    decoded = decode_job(j.dump());
    ASSERT_TRUE(decoded) << decoded.error().describe();
    EXPECT_TRUE(decoded->baseline);

    j["baseline"] = "yes";
    auto wrong_type = decode_job(j.dump());
    ASSERT_FALSE(wrong_type);
    EXPECT_EQ(wrong_type.error().message, "job.baseline: expected true or false");
    j["baseline"] = true;
    j["operation"] = "list_schemas";
    auto interactive = decode_job(j.dump());
    ASSERT_FALSE(interactive);
    EXPECT_NE(interactive.error().message.find("job.baseline"), std::string::npos);
}

TEST(MessagesTest, CredentialIsDecodedIntoASecretAndThePayloadWiped) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    Channel sender{util::UniqueFd(sv[0])};
    Channel receiver{util::UniqueFd(sv[1])};

    const std::string secret = "s3cr3t-Pa55word";
    Credential credential{"password", secrets::SecretValue::copy_of(secret)};
    std::string buffer;
    ASSERT_TRUE(send_credential(sender, credential, buffer));
    // The encoder's buffer: empty, and every byte it held is zero.
    EXPECT_TRUE(buffer.empty());
    const size_t encoded = 2 + 8 + secret.size();
    ASSERT_GE(buffer.capacity(), encoded);
    for (size_t i = 0; i < encoded; ++i) {
        EXPECT_EQ(buffer.data()[i], '\0') << "byte " << i;
    }
    // The credential itself is untouched (the caller owns it).
    EXPECT_EQ(credential.value.reveal(), secret);

    auto received = receiver.receive(1s);
    ASSERT_TRUE(received);
    Frame& frame = std::get<Frame>(*received);
    EXPECT_EQ(frame.type, static_cast<uint8_t>(FrameType::credential));
    const char* bytes = frame.payload.data();
    const size_t size = frame.payload.size();
    ASSERT_EQ(size, encoded);
    auto decoded = decode_credential(frame.payload);
    ASSERT_TRUE(decoded) << decoded.error().describe();
    EXPECT_EQ(decoded->name, "password");
    EXPECT_EQ(decoded->value.reveal(), secret);
    EXPECT_TRUE(frame.payload.empty());
    for (size_t i = 0; i < size; ++i) EXPECT_EQ(bytes[i], '\0') << "byte " << i;
}

TEST(MessagesTest, MalformedCredentialsAreRefusedAndStillWiped) {
    std::string unknown = std::string("\x00\x05", 2) + "token" + "value";
    const char* bytes = unknown.data();
    auto refused = decode_credential(unknown);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().message, "credential: unknown credential name \"token\"");
    for (size_t i = 0; i < 12; ++i) EXPECT_EQ(bytes[i], '\0');

    std::string truncated = std::string("\x00\x20", 2) + "user";
    EXPECT_FALSE(decode_credential(truncated));
    std::string tiny = "x";
    EXPECT_FALSE(decode_credential(tiny));
    std::string empty_name = std::string("\x00\x00", 2) + "v";
    EXPECT_FALSE(decode_credential(empty_name));
    // An empty value is a value (an empty password).
    std::string empty_value = std::string("\x00\x04", 2) + "user";
    auto ok = decode_credential(empty_value);
    ASSERT_TRUE(ok);
    EXPECT_TRUE(ok->value.empty());
}

TEST(MessagesTest, ReadyRoundTripsTheSandboxReport) {
    sandbox::Report report;
    report.layers = {{sandbox::Layer::no_new_privs, true, ""},
                     {sandbox::Layer::landlock_net, false, "landlock ABI 3 < 4"},
                     {sandbox::Layer::seccomp, true, "allowlist"}};
    auto ready = decode_ready(encode_ready(report));
    ASSERT_TRUE(ready) << ready.error().describe();
    ASSERT_EQ(ready->report.layers.size(), 3u);
    EXPECT_EQ(ready->report.layers[1].layer, sandbox::Layer::landlock_net);
    EXPECT_FALSE(ready->report.layers[1].applied);
    EXPECT_EQ(ready->report.layers[1].detail, "landlock ABI 3 < 4");
    EXPECT_EQ(json::parse(encode_ready(report))["layers"][2]["layer"], "seccomp");

    auto unknown = decode_ready(R"({"layers":[{"layer":"chroot","applied":true}]})");
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().message, "ready.layers[0].layer: unknown layer \"chroot\"");
}

TEST(MessagesTest, LogIsBoundedWhenEncodedAndRefusedWhenTooLarge) {
    LogLine line{"warn", std::string(20000, 'm'), json{{"k", std::string(5000, 'v')}}};
    const std::string encoded = encode_log(line);
    EXPECT_LE(encoded.size(), kMaxLogBytes);
    auto decoded = decode_log(encoded);
    ASSERT_TRUE(decoded) << decoded.error().describe();
    EXPECT_EQ(decoded->level, "warn");
    EXPECT_TRUE(decoded->fields.empty());

    auto small = decode_log(encode_log({"info", "hello", json{{"n", 1}}}));
    ASSERT_TRUE(small);
    EXPECT_EQ(small->fields["n"], 1);

    EXPECT_FALSE(decode_log(json{{"level", "info"}, {"message", std::string(9000, 'x')}}.dump()));
    auto level = decode_log(R"({"level":"debug","message":"x"})");
    ASSERT_FALSE(level);
    EXPECT_EQ(level.error().message, "log.level: expected info, warn or error");
}

TEST(MessagesTest, ChunkFileMustBeTheNameItsSeqAllows) {
    ChunkMessage chunk{3, std::string(64, 'a'), 10, chunk_file_name(3)};
    EXPECT_EQ(chunk.file, "chunk-000003.ndjson");
    auto ok = decode_chunk(encode_chunk(chunk));
    ASSERT_TRUE(ok) << ok.error().describe();
    EXPECT_EQ(ok->seq, 3);
    EXPECT_EQ(ok->size, 10);

    for (const char* file : {"../chunk-000003.ndjson", "chunk-000004.ndjson", "/etc/passwd",
                             "chunk-000003.ndjson/x", "chunk-3.ndjson"}) {
        chunk.file = file;
        auto refused = decode_chunk(encode_chunk(chunk));
        ASSERT_FALSE(refused) << file;
        EXPECT_EQ(refused.error().message, "chunk.file: expected \"chunk-000003.ndjson\"");
    }
    chunk.file = chunk_file_name(3);
    chunk.sha256_hex = std::string(64, 'G');
    EXPECT_FALSE(decode_chunk(encode_chunk(chunk)));
    chunk.sha256_hex = std::string(64, 'a');
    chunk.size = -1;
    EXPECT_FALSE(decode_chunk(encode_chunk(chunk)));
}

TEST(MessagesTest, FinishedRoundTripsAndBoundsTheResult) {
    Finished f{{1, 2, 3, 4, 5}, json{{"connected", true}}};
    auto encoded = encode_finished(f);
    ASSERT_TRUE(encoded);
    auto decoded = decode_finished(*encoded);
    ASSERT_TRUE(decoded) << decoded.error().describe();
    EXPECT_EQ(decoded->summary.tables, 1);
    EXPECT_EQ(decoded->summary.foreign_keys, 5);
    ASSERT_TRUE(decoded->result);
    EXPECT_EQ((*decoded->result)["connected"], true);

    auto no_result = decode_finished(*encode_finished({{}, std::nullopt}));
    ASSERT_TRUE(no_result);
    EXPECT_FALSE(no_result->result);

    Finished big{{}, json{{"blob", std::string(kMaxResultBytes, 'x')}}};
    EXPECT_FALSE(encode_finished(big));
    json raw{{"summary",
              {{"tables", 0}, {"views", 0}, {"columns", 0}, {"indexes", 0}, {"foreign_keys", 0}}},
             {"result", {{"blob", std::string(kMaxResultBytes + 2000, 'x')}}}};
    EXPECT_FALSE(decode_finished(raw.dump()));
    auto negative = decode_finished(
        R"({"summary":{"tables":-1,"views":0,"columns":0,"indexes":0,"foreign_keys":0}})");
    ASSERT_FALSE(negative);
    EXPECT_NE(negative.error().message.find("result.summary.tables"), std::string::npos);
}

TEST(MessagesTest, FinishedCarriesTheDeltaFlag) {
    auto full = encode_finished(Finished{{1, 0, 2, 0, 0}, std::nullopt});
    ASSERT_TRUE(full);
    EXPECT_FALSE(json::parse(*full).contains("delta"));
    auto decoded = decode_finished(*full);
    ASSERT_TRUE(decoded);
    EXPECT_FALSE(decoded->delta);

    Finished delta{{1, 0, 2, 0, 0}, std::nullopt};
    delta.delta = true;
    auto encoded = encode_finished(delta);
    ASSERT_TRUE(encoded);
    EXPECT_EQ(json::parse(*encoded)["delta"], true);
    decoded = decode_finished(*encoded);
    ASSERT_TRUE(decoded) << decoded.error().describe();
    EXPECT_TRUE(decoded->delta);
    EXPECT_EQ(decoded->summary.tables, 1);

    json bad = json::parse(*encoded);
    bad["delta"] = 1;
    auto wrong = decode_finished(bad.dump());
    ASSERT_FALSE(wrong);
    EXPECT_EQ(wrong.error().message, "result.delta: expected true or false");
}

TEST(MessagesTest, FailureReasonCodeIsASimpleToken) {
    auto ok = decode_failure(encode_failure({"limit_exceeded", "too many"}));
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->reason_code, "limit_exceeded");
    EXPECT_EQ(ok->message, "too many");
    EXPECT_FALSE(decode_failure(R"({"reason_code":"Bad Code","message":""})"));
    EXPECT_FALSE(decode_failure(R"({"reason_code":"","message":""})"));
    // A long message is cut by the encoder, so it always decodes.
    EXPECT_TRUE(decode_failure(encode_failure({"x", std::string(10000, 'm')})));
}

// What a fuzz target does, in miniature: arbitrary and mutated payloads give
// an error or a value, never a crash or an exception.
TEST(MessagesTest, DecodersSurviveArbitraryBytes) {
    std::vector<std::string> seeds = {
        encode_job(sample_job()),
        encode_ready({}),
        encode_log({"info", "m", json::object()}),
        encode_progress({1, 2, 3}),
        encode_chunk({0, std::string(64, 'a'), 1, chunk_file_name(0)}),
        *encode_finished({{1, 2, 3, 4, 5}, json{{"k", "v"}}}),
        encode_failure({"x", "y"}),
        std::string("\x00\x04user\x01\x02", 8),
    };
    uint64_t state = 0x9E3779B97F4A7C15ull;
    auto next = [&state] {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state;
    };
    for (int round = 0; round < 3000; ++round) {
        std::string input = seeds[next() % seeds.size()];
        const int edits = 1 + static_cast<int>(next() % 4);
        for (int e = 0; e < edits && !input.empty(); ++e) {
            const size_t at = next() % input.size();
            switch (next() % 3) {
                case 0:
                    input[at] = static_cast<char>(next());
                    break;
                case 1:
                    input.erase(at, 1 + next() % 8);
                    break;
                default:
                    input.insert(at, 1, static_cast<char>(next()));
            }
        }
        (void)decode_job(input);
        (void)decode_ready(input);
        (void)decode_log(input);
        (void)decode_progress(input);
        (void)decode_chunk(input);
        (void)decode_finished(input);
        (void)decode_failure(input);
        std::string copy = input;
        (void)decode_credential(copy);
        std::string_view view = input;
        while (true) {
            auto frame = decode_frame(view);
            if (!frame || !*frame) break;
        }
    }
}

TEST(MessagesTest, FrameTypeNames) {
    EXPECT_EQ(frame_type_name(static_cast<uint8_t>(FrameType::credential)), "credential");
    EXPECT_EQ(frame_type_name(static_cast<uint8_t>(FrameType::failure)), "failure");
    EXPECT_EQ(frame_type_name(99), "unknown frame type 99");
}

}  // namespace
}  // namespace sa::agent::worker
