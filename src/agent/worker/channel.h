#pragma once
// The framed channel between the supervisor and a job worker: a connected
// AF_UNIX SOCK_STREAM socket carrying frames of
//
//   [u32 big-endian payload length][u8 frame type][payload]
//
// The payload is at most kMaxFrameBytes; a larger announced length is an
// error before anything is allocated, so a peer cannot make the reader
// allocate more than that. The channel knows nothing about frame types
// (messages.h gives them meaning) and reads exactly one frame at a time: no
// bytes of a later frame (a credential, say) sit in a buffer of ours.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "common/result.h"
#include "common/util/unique_fd.h"

namespace sa::agent::worker {

inline constexpr size_t kMaxFrameBytes = 1024 * 1024;
inline constexpr size_t kFrameHeaderBytes = 5;

struct Frame {
    uint8_t type = 0;
    std::string payload;
};

struct FrameHeader {
    uint32_t length = 0;
    uint8_t type = 0;
};

// The 5-byte header for a payload; invalid_argument above kMaxFrameBytes.
Result<std::string> encode_frame_header(uint8_t type, size_t payload_size);
// header must hold kFrameHeaderBytes bytes. Errors: invalid_argument
// "frame of N bytes exceeds the 1048576-byte limit".
Result<FrameHeader> decode_frame_header(std::string_view header);

// Pure decoder for fuzzing and tests: takes one complete frame off the front
// of input (advancing it), or returns nullopt when input holds only part of
// one (input unchanged). Errors as decode_frame_header.
Result<std::optional<Frame>> decode_frame(std::string_view& input);

// The peer closed the channel cleanly, at a frame boundary.
struct Closed {};
// receive() timed out; a partly read frame is kept for the next call.
struct TimedOut {};
using Received = std::variant<Frame, Closed, TimedOut>;

// Owns the socket. Not thread-safe: one reader and one writer, and in this
// project that is the same thread on each side.
class Channel final {
  public:
    explicit Channel(util::UniqueFd fd) : fd_(std::move(fd)) {}

    // Sends one frame (blocking until the kernel took all of it). Errors:
    // invalid_argument for an oversized payload, unavailable when the peer
    // has gone (EPIPE/ECONNRESET; never SIGPIPE), io otherwise.
    Status send(uint8_t type, std::string_view payload);

    // Waits up to timeout for the next complete frame. Errors: invalid_argument
    // for an oversized length, io for EOF in the middle of a frame or a read
    // error. After an error the channel is unusable (framing is lost).
    Result<Received> receive(std::chrono::milliseconds timeout);

    int fd() const { return fd_.get(); }

  private:
    util::UniqueFd fd_;
    // The frame being read: its header, then its payload, allocated once at
    // the announced (checked) size.
    std::string header_;
    std::optional<Frame> partial_;
    size_t payload_read_ = 0;
    bool broken_ = false;
};

}  // namespace sa::agent::worker
