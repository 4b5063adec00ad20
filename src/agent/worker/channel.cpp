#include "agent/worker/channel.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sa::agent::worker {
namespace {

Error oversized(uint64_t length) {
    return Error{ErrorCode::invalid_argument, "frame of " + std::to_string(length) +
                                                  " bytes exceeds the " +
                                                  std::to_string(kMaxFrameBytes) + "-byte limit"};
}

constexpr std::chrono::milliseconds kMaxWait = std::chrono::hours(24 * 365);

Error errno_error(const char* what) {
    return Error{ErrorCode::io,
                 std::string(what) + " on the worker channel: " + std::strerror(errno)};
}

}  // namespace

Result<std::string> encode_frame_header(uint8_t type, size_t payload_size) {
    if (payload_size > kMaxFrameBytes) return std::unexpected(oversized(payload_size));
    const auto length = static_cast<uint32_t>(payload_size);
    std::string header(kFrameHeaderBytes, '\0');
    header[0] = static_cast<char>((length >> 24) & 0xFF);
    header[1] = static_cast<char>((length >> 16) & 0xFF);
    header[2] = static_cast<char>((length >> 8) & 0xFF);
    header[3] = static_cast<char>(length & 0xFF);
    header[4] = static_cast<char>(type);
    return header;
}

Result<FrameHeader> decode_frame_header(std::string_view header) {
    if (header.size() < kFrameHeaderBytes) {
        return fail(ErrorCode::invalid_argument, "frame header is shorter than 5 bytes");
    }
    const auto byte = [&](size_t i) {
        return static_cast<uint32_t>(static_cast<uint8_t>(header[i]));
    };
    FrameHeader h;
    h.length = (byte(0) << 24) | (byte(1) << 16) | (byte(2) << 8) | byte(3);
    h.type = static_cast<uint8_t>(header[4]);
    if (h.length > kMaxFrameBytes) return std::unexpected(oversized(h.length));
    return h;
}

Result<std::optional<Frame>> decode_frame(std::string_view& input) {
    if (input.size() < kFrameHeaderBytes) return std::optional<Frame>{};
    auto header = decode_frame_header(input.substr(0, kFrameHeaderBytes));
    if (!header) return std::unexpected(header.error());
    if (input.size() - kFrameHeaderBytes < header->length) return std::optional<Frame>{};
    Frame frame{header->type, std::string(input.substr(kFrameHeaderBytes, header->length))};
    input.remove_prefix(kFrameHeaderBytes + header->length);
    return std::optional<Frame>{std::move(frame)};
}

Status Channel::send(uint8_t type, std::string_view payload) {
    auto header = encode_frame_header(type, payload.size());
    if (!header) return std::unexpected(header.error());
    iovec iov[2] = {{header->data(), header->size()},
                    {const_cast<char*>(payload.data()), payload.size()}};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    size_t left = header->size() + payload.size();
    while (left > 0) {
        // MSG_NOSIGNAL: a peer that has gone is an error here, not SIGPIPE.
        ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EPIPE || errno == ECONNRESET) {
                return fail(ErrorCode::unavailable, "the worker channel's peer has gone");
            }
            return std::unexpected(errno_error("send failed"));
        }
        left -= static_cast<size_t>(n);
        auto sent = static_cast<size_t>(n);
        while (sent > 0 && msg.msg_iovlen > 0) {
            if (sent >= msg.msg_iov[0].iov_len) {
                sent -= msg.msg_iov[0].iov_len;
                ++msg.msg_iov;
                --msg.msg_iovlen;
            } else {
                msg.msg_iov[0].iov_base = static_cast<char*>(msg.msg_iov[0].iov_base) + sent;
                msg.msg_iov[0].iov_len -= sent;
                sent = 0;
            }
        }
    }
    return {};
}

Result<Received> Channel::receive(std::chrono::milliseconds timeout) {
    if (broken_) return fail(ErrorCode::io, "the worker channel is broken by an earlier error");
    // Bounded so that now() + timeout cannot overflow.
    const auto deadline = std::chrono::steady_clock::now() + std::min(timeout, kMaxWait);
    for (;;) {
        if (partial_ && payload_read_ == partial_->payload.size()) {
            Frame frame = std::move(*partial_);
            partial_.reset();
            header_.clear();
            payload_read_ = 0;
            return Received{std::move(frame)};
        }
        // Read only what the current frame still needs, never into the next.
        char header_bytes[kFrameHeaderBytes];
        char* into = partial_ ? partial_->payload.data() + payload_read_ : header_bytes;
        const size_t want = partial_ ? partial_->payload.size() - payload_read_
                                     : kFrameHeaderBytes - header_.size();

        ssize_t n = ::recv(fd_.get(), into, want, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return Received{TimedOut{}};
            pollfd p{fd_.get(), POLLIN, 0};
            int ready = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)));
            if (ready < 0 && errno != EINTR) {
                broken_ = true;
                return std::unexpected(errno_error("poll failed"));
            }
            continue;
        }
        if (n < 0) {
            broken_ = true;
            if (errno == ECONNRESET) return fail(ErrorCode::io, "the worker channel was reset");
            return std::unexpected(errno_error("receive failed"));
        }
        if (n == 0) {
            if (!partial_ && header_.empty()) return Received{Closed{}};
            broken_ = true;
            return fail(ErrorCode::io, "the worker channel closed in the middle of a frame");
        }
        if (partial_) {
            payload_read_ += static_cast<size_t>(n);
            continue;
        }
        header_.append(header_bytes, static_cast<size_t>(n));
        if (header_.size() < kFrameHeaderBytes) continue;
        auto header = decode_frame_header(header_);
        if (!header) {
            broken_ = true;
            return std::unexpected(header.error());
        }
        // The length is checked: this allocation is at most kMaxFrameBytes.
        partial_ = Frame{header->type, std::string(header->length, '\0')};
        payload_read_ = 0;
    }
}

}  // namespace sa::agent::worker
