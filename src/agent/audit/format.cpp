#include "agent/audit/format.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>

#include "agent/audit/canonical.h"
#include "common/crypto/encoding.h"

namespace sa::agent::audit {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::string_view kSegmentPrefix = "segment-";
constexpr std::string_view kSegmentSuffix = ".jsonl";

Result<std::string> required_string(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string())
        return fail(ErrorCode::invalid_argument,
                    std::string("field ") + key + " missing or not a string");
    return it->get<std::string>();
}

Result<uint64_t> required_uint(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_unsigned())
        return fail(ErrorCode::invalid_argument,
                    std::string("field ") + key + " missing or not a non-negative integer");
    return it->get<uint64_t>();
}

}  // namespace

std::string segment_name(uint64_t number) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%06llu", static_cast<unsigned long long>(number));
    return std::string(kSegmentPrefix) + buf + std::string(kSegmentSuffix);
}

std::optional<uint64_t> parse_segment_name(std::string_view name) {
    if (!name.starts_with(kSegmentPrefix) || !name.ends_with(kSegmentSuffix)) return std::nullopt;
    std::string_view digits = name.substr(
        kSegmentPrefix.size(), name.size() - kSegmentPrefix.size() - kSegmentSuffix.size());
    if (digits.size() < 6 || digits.size() > 18) return std::nullopt;
    uint64_t n = 0;
    for (char c : digits) {
        if (c < '0' || c > '9') return std::nullopt;
        n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    if (n == 0 || segment_name(n) != name) return std::nullopt;
    return n;
}

Result<std::vector<std::string>> list_segments(const std::string& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return fail(ErrorCode::not_found, "no audit directory " + dir);
    std::vector<std::pair<uint64_t, std::string>> found;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::string name = it->path().filename().string();
        if (auto n = parse_segment_name(name)) found.emplace_back(*n, name);
    }
    if (ec) return fail(ErrorCode::io, "cannot list " + dir + ": " + ec.message());
    std::sort(found.begin(), found.end());
    std::vector<std::string> names;
    names.reserve(found.size());
    for (auto& f : found) names.push_back(std::move(f.second));
    return names;
}

Status check_no_floats(const json& value, const std::string& path) {
    if (value.is_number_float())
        return fail(ErrorCode::invalid_argument,
                    "floating-point number at " + (path.empty() ? std::string("/") : path) +
                        " (audit records allow integers, strings, bools, null, arrays, objects)");
    if (value.is_object()) {
        for (auto it = value.begin(); it != value.end(); ++it)
            if (auto st = check_no_floats(it.value(), path + "/" + it.key()); !st) return st;
    } else if (value.is_array()) {
        for (size_t i = 0; i < value.size(); ++i)
            if (auto st = check_no_floats(value[i], path + "/" + std::to_string(i)); !st) return st;
    }
    return {};
}

Result<std::string> canonical_dump(const json& value) {
    if (auto st = check_no_floats(value); !st) return std::unexpected(st.error());
    try {
        return value.dump();
    } catch (const json::exception& e) {
        return fail(ErrorCode::invalid_argument, std::string("not valid UTF-8: ") + e.what());
    }
}

Result<Record> parse_record_line(std::string_view line) {
    // The scanner decides canonical form and types in one pass; nlohmann only
    // builds the values afterwards (a line the scanner accepts is valid JSON).
    if (auto head = scan_record_line(line); !head) return std::unexpected(head.error());
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object())
        return fail(ErrorCode::invalid_argument, "not valid JSON");
    Record r;
    auto seq = required_uint(j, "seq");
    if (!seq) return std::unexpected(seq.error());
    r.seq = *seq;
    for (auto [key, out] :
         {std::pair{"ts", &r.ts}, std::pair{"type", &r.type}, std::pair{"actor", &r.actor},
          std::pair{"agent_id", &r.agent_id}, std::pair{"prev", &r.prev}}) {
        auto v = required_string(j, key);
        if (!v) return std::unexpected(v.error());
        *out = std::move(*v);
    }
    for (auto [key, out] : {std::pair{"job_id", &r.job_id}, std::pair{"trace_id", &r.trace_id}}) {
        if (!j.contains(key)) continue;
        auto v = required_string(j, key);
        if (!v) return std::unexpected(v.error());
        *out = std::move(*v);
    }
    auto fields = j.find("fields");
    if (fields == j.end() || !fields->is_object())
        return fail(ErrorCode::invalid_argument, "field fields missing or not an object");
    r.fields = std::move(*fields);
    return r;
}

std::string checkpoint_note(const std::string& agent_id, uint64_t tree_size,
                            const std::string& root_base64, const std::string& ts) {
    return std::string(kCheckpointNoteHeader) + "\n" + agent_id + "\n" + std::to_string(tree_size) +
           "\n" + root_base64 + "\n" + ts + "\n";
}

json to_json(const Checkpoint& cp) {
    return json{{"agent_id", cp.agent_id}, {"tree_size", cp.tree_size},
                {"root", cp.root},         {"ts", cp.ts},
                {"key_id", cp.key_id},     {"signature", cp.signature}};
}

Result<Checkpoint> checkpoint_from_json(const json& j) {
    if (!j.is_object()) return fail(ErrorCode::invalid_argument, "checkpoint is not a JSON object");
    Checkpoint cp;
    auto size = required_uint(j, "tree_size");
    if (!size) return std::unexpected(size.error());
    cp.tree_size = *size;
    for (auto [key, out] :
         {std::pair{"agent_id", &cp.agent_id}, std::pair{"root", &cp.root}, std::pair{"ts", &cp.ts},
          std::pair{"key_id", &cp.key_id}, std::pair{"signature", &cp.signature}}) {
        auto v = required_string(j, key);
        if (!v) return std::unexpected(v.error());
        *out = std::move(*v);
    }
    auto root = crypto::base64_decode(cp.root);
    if (!root || root->size() != 32)
        return fail(ErrorCode::invalid_argument, "checkpoint root is not base64 of 32 bytes");
    return cp;
}

Result<Checkpoint> parse_checkpoint_line(std::string_view line) {
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return fail(ErrorCode::invalid_argument, "checkpoint is not valid JSON");
    return checkpoint_from_json(j);
}

Status verify_checkpoint(const Checkpoint& cp, const crypto::Ed25519PublicKey& public_key) {
    if (cp.key_id != public_key.key_id())
        return fail(ErrorCode::integrity, "checkpoint signed by key " + cp.key_id +
                                              ", expected key " + public_key.key_id());
    auto sig = crypto::base64_decode(cp.signature);
    if (!sig || sig->size() != 64)
        return fail(ErrorCode::integrity, "checkpoint signature is not base64 of 64 bytes");
    if (!public_key.verify(checkpoint_note(cp.agent_id, cp.tree_size, cp.root, cp.ts), *sig))
        return fail(ErrorCode::integrity, "checkpoint signature does not verify");
    return {};
}

namespace {
constexpr size_t kReadBlock = 1u << 20;  // large reads; lines are ~0.5 KB
}  // namespace

Result<LineViewReader> LineViewReader::open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return fail(ErrorCode::not_found, "no such file: " + path);
        return fail(ErrorCode::io, "cannot open " + path + ": " + std::strerror(errno));
    }
    return LineViewReader(fd, path);
}

LineViewReader::LineViewReader(int fd, std::string path)
    : fd_(fd), path_(std::move(path)), buf_(new char[kReadBlock]), cap_(kReadBlock) {}

LineViewReader::LineViewReader(LineViewReader&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      path_(std::move(other.path_)),
      buf_(std::move(other.buf_)),
      cap_(std::exchange(other.cap_, 0)),
      begin_(std::exchange(other.begin_, 0)),
      end_(std::exchange(other.end_, 0)),
      scanned_(std::exchange(other.scanned_, 0)),
      eof_(other.eof_),
      offset_(other.offset_),
      error_(std::move(other.error_)) {}

LineViewReader& LineViewReader::operator=(LineViewReader&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = std::exchange(other.fd_, -1);
        path_ = std::move(other.path_);
        buf_ = std::move(other.buf_);
        cap_ = std::exchange(other.cap_, 0);
        begin_ = std::exchange(other.begin_, 0);
        end_ = std::exchange(other.end_, 0);
        scanned_ = std::exchange(other.scanned_, 0);
        eof_ = other.eof_;
        offset_ = other.offset_;
        error_ = std::move(other.error_);
    }
    return *this;
}

LineViewReader::~LineViewReader() {
    if (fd_ >= 0) ::close(fd_);
}

bool LineViewReader::fill() {
    if (eof_ || error_) return false;
    // Keep the unfinished line, move it to the front, grow for very long lines.
    if (begin_ > 0) {
        std::memmove(buf_.get(), buf_.get() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
    }
    if (end_ == cap_) {
        std::unique_ptr<char[]> bigger(new char[cap_ * 2]);
        std::memcpy(bigger.get(), buf_.get(), end_);
        buf_ = std::move(bigger);
        cap_ *= 2;
    }
    for (;;) {
        ssize_t n = ::read(fd_, buf_.get() + end_, cap_ - end_);
        if (n > 0) {
            end_ += static_cast<size_t>(n);
            return true;
        }
        if (n == 0) {
            eof_ = true;
            return false;
        }
        if (errno == EINTR) continue;
        error_ = Error{ErrorCode::io, "cannot read " + path_ + ": " + std::strerror(errno)};
        return false;
    }
}

bool LineViewReader::next(std::string_view& line, bool& complete) {
    for (;;) {
        const char* base = buf_.get();
        const size_t from = begin_ + scanned_;
        if (const void* nl = std::memchr(base + from, '\n', end_ - from)) {
            const auto at = static_cast<size_t>(static_cast<const char*>(nl) - base);
            line = std::string_view(base + begin_, at - begin_);
            complete = true;
            offset_ += at + 1 - begin_;
            begin_ = at + 1;
            scanned_ = 0;
            return true;
        }
        scanned_ = end_ - begin_;
        if (!fill()) {
            if (error_ || begin_ == end_) return false;
            line = std::string_view(buf_.get() + begin_, end_ - begin_);  // fill() may move it
            complete = false;
            offset_ += end_ - begin_;
            begin_ = end_;
            scanned_ = 0;
            return true;
        }
    }
}

Result<LineReader> LineReader::open(const std::string& path) {
    auto reader = LineViewReader::open(path);
    if (!reader) return std::unexpected(reader.error());
    return LineReader(std::move(*reader));
}

bool LineReader::next(std::string& line, bool& complete) {
    std::string_view view;
    if (!reader_.next(view, complete)) return false;
    line.assign(view);
    return true;
}

Status for_each_line(const std::string& dir,
                     const std::function<bool(const Position&, std::string_view, bool)>& visit) {
    auto segments = list_segments(dir);
    if (!segments) return std::unexpected(segments.error());
    for (const auto& name : *segments) {
        auto reader = LineViewReader::open((fs::path(dir) / name).string());
        if (!reader) return std::unexpected(reader.error());
        Position pos{name, 0};
        bool complete = true;
        std::string_view line;
        while (reader->next(line, complete)) {
            ++pos.line;
            if (!visit(pos, line, complete)) return {};
        }
        if (reader->error()) return std::unexpected(*reader->error());
    }
    return {};
}

Result<std::vector<Checkpoint>> read_checkpoints(const std::string& dir) {
    std::vector<Checkpoint> out;
    auto st =
        for_each_parsed_line(dir, kCheckpointsFile, parse_checkpoint_line,
                             [&](Checkpoint&& cp, uint64_t) { out.push_back(std::move(cp)); });
    if (!st) return std::unexpected(st.error());
    return out;
}

}  // namespace sa::agent::audit
