#include "agent/worker/channel.h"

#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <utility>

namespace sa::agent::worker {
namespace {

using namespace std::chrono_literals;

struct Pair {
    Channel a;
    Channel b;
};

Pair make_pair_channels() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    return {Channel(util::UniqueFd(sv[0])), Channel(util::UniqueFd(sv[1]))};
}

// A raw socket end for writing arbitrary bytes at the reader.
struct RawPair {
    util::UniqueFd writer;
    Channel reader;
};

RawPair make_raw_pair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    return {util::UniqueFd(sv[0]), Channel(util::UniqueFd(sv[1]))};
}

void write_all(int fd, std::string_view bytes) {
    ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
}

std::string header(uint32_t length, uint8_t type) {
    std::string h(5, '\0');
    h[0] = static_cast<char>(length >> 24);
    h[1] = static_cast<char>(length >> 16);
    h[2] = static_cast<char>(length >> 8);
    h[3] = static_cast<char>(length);
    h[4] = static_cast<char>(type);
    return h;
}

TEST(FrameCodecTest, HeaderIsBigEndianLengthThenType) {
    auto h = encode_frame_header(7, 0x010203);
    ASSERT_TRUE(h);
    EXPECT_EQ(*h, std::string("\x00\x01\x02\x03\x07", 5));
    auto decoded = decode_frame_header(*h);
    ASSERT_TRUE(decoded);
    EXPECT_EQ(decoded->length, 0x010203u);
    EXPECT_EQ(decoded->type, 7);
}

TEST(FrameCodecTest, DecodeTakesWholeFramesOffTheFront) {
    std::string bytes = header(3, 1) + "abc" + header(0, 3) + header(4, 2) + "xy";
    std::string_view input = bytes;
    auto first = decode_frame(input);
    ASSERT_TRUE(first && *first);
    EXPECT_EQ((*first)->type, 1);
    EXPECT_EQ((*first)->payload, "abc");
    auto second = decode_frame(input);
    ASSERT_TRUE(second && *second);
    EXPECT_EQ((*second)->type, 3);
    EXPECT_EQ((*second)->payload, "");
    // The third frame is incomplete: nothing consumed.
    const size_t before = input.size();
    auto third = decode_frame(input);
    ASSERT_TRUE(third);
    EXPECT_FALSE(*third);
    EXPECT_EQ(input.size(), before);
}

TEST(FrameCodecTest, OversizedLengthIsRefusedBeforeThePayloadArrives) {
    std::string bytes = header(kMaxFrameBytes + 1, 1);
    std::string_view input = bytes;
    auto frame = decode_frame(input);
    ASSERT_FALSE(frame);
    EXPECT_EQ(frame.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(frame.error().message, "frame of 1048577 bytes exceeds the 1048576-byte limit");
    // The largest allowed length is accepted.
    EXPECT_TRUE(decode_frame_header(header(kMaxFrameBytes, 1)));
    EXPECT_FALSE(encode_frame_header(1, kMaxFrameBytes + 1));
}

TEST(ChannelTest, RoundTripsFramesOfEverySize) {
    auto [a, b] = make_pair_channels();
    for (size_t size : {size_t{0}, size_t{1}, size_t{4096}}) {
        std::string payload(size, 'p');
        ASSERT_TRUE(a.send(9, payload));
        auto received = b.receive(1s);
        ASSERT_TRUE(received) << received.error().describe();
        auto* frame = std::get_if<Frame>(&*received);
        ASSERT_NE(frame, nullptr);
        EXPECT_EQ(frame->type, 9);
        EXPECT_EQ(frame->payload, payload);
    }
}

TEST(ChannelTest, LargestFrameCrossesWhileTheReaderReads) {
    auto [a, b] = make_pair_channels();
    // 1 MiB is more than the socket buffer: send blocks until the reader drains it.
    std::string payload(kMaxFrameBytes, 'x');
    payload.back() = 'z';
    std::thread sender([&a, &payload] { EXPECT_TRUE(a.send(2, payload)); });
    auto received = b.receive(10s);
    sender.join();
    ASSERT_TRUE(received) << received.error().describe();
    auto* frame = std::get_if<Frame>(&*received);
    ASSERT_NE(frame, nullptr);
    EXPECT_EQ(frame->payload, payload);
}

TEST(ChannelTest, OversizedPayloadIsNotSent) {
    auto [a, b] = make_pair_channels();
    auto sent = a.send(1, std::string(kMaxFrameBytes + 1, 'x'));
    ASSERT_FALSE(sent);
    EXPECT_EQ(sent.error().code, ErrorCode::invalid_argument);
    auto received = b.receive(0ms);
    ASSERT_TRUE(received);
    EXPECT_TRUE(std::holds_alternative<TimedOut>(*received));
}

TEST(ChannelTest, OversizedLengthOnTheWireIsAnError) {
    auto [writer, reader] = make_raw_pair();
    // Announce 4 GiB - 1; nothing follows. The reader must refuse at once.
    write_all(writer.get(), header(0xFFFFFFFFu, 1));
    auto received = reader.receive(1s);
    ASSERT_FALSE(received);
    EXPECT_EQ(received.error().message, "frame of 4294967295 bytes exceeds the 1048576-byte limit");
    // The channel is unusable afterwards.
    EXPECT_FALSE(reader.receive(0ms));
}

TEST(ChannelTest, TimeoutKeepsAPartialFrameForTheNextCall) {
    auto [writer, reader] = make_raw_pair();
    write_all(writer.get(), header(6, 4).substr(0, 3));
    auto first = reader.receive(20ms);
    ASSERT_TRUE(first);
    EXPECT_TRUE(std::holds_alternative<TimedOut>(*first));
    write_all(writer.get(), header(6, 4).substr(3) + "abc");
    auto second = reader.receive(20ms);
    ASSERT_TRUE(second);
    EXPECT_TRUE(std::holds_alternative<TimedOut>(*second));
    write_all(writer.get(), "def");
    auto third = reader.receive(1s);
    ASSERT_TRUE(third);
    auto* frame = std::get_if<Frame>(&*third);
    ASSERT_NE(frame, nullptr);
    EXPECT_EQ(frame->type, 4);
    EXPECT_EQ(frame->payload, "abcdef");
}

TEST(ChannelTest, EofAtAFrameBoundaryIsClosed) {
    auto [writer, reader] = make_raw_pair();
    write_all(writer.get(), header(2, 1) + "ok");
    writer.reset();
    auto frame = reader.receive(1s);
    ASSERT_TRUE(frame);
    EXPECT_TRUE(std::holds_alternative<Frame>(*frame));
    auto closed = reader.receive(1s);
    ASSERT_TRUE(closed) << closed.error().describe();
    EXPECT_TRUE(std::holds_alternative<Closed>(*closed));
}

TEST(ChannelTest, EofInsideTheHeaderIsAnError) {
    auto [writer, reader] = make_raw_pair();
    write_all(writer.get(), header(2, 1).substr(0, 2));
    writer.reset();
    auto received = reader.receive(1s);
    ASSERT_FALSE(received);
    EXPECT_EQ(received.error().code, ErrorCode::io);
    EXPECT_NE(received.error().message.find("middle of a frame"), std::string::npos);
}

TEST(ChannelTest, EofInsideThePayloadIsAnError) {
    auto [writer, reader] = make_raw_pair();
    write_all(writer.get(), header(10, 1) + "short");
    writer.reset();
    auto received = reader.receive(1s);
    ASSERT_FALSE(received);
    EXPECT_NE(received.error().message.find("middle of a frame"), std::string::npos);
}

TEST(ChannelTest, ReadsNoBytesBeyondTheCurrentFrame) {
    auto [writer, reader] = make_raw_pair();
    write_all(writer.get(), header(1, 1) + "a" + header(1, 2) + "b");
    auto first = reader.receive(1s);
    ASSERT_TRUE(first);
    // The second frame is still in the socket, not in a buffer of the channel.
    int pending = 0;
    ASSERT_EQ(::ioctl(reader.fd(), FIONREAD, &pending), 0);
    EXPECT_EQ(pending, 6);
}

TEST(ChannelTest, SendToAClosedPeerIsUnavailableNotSigpipe) {
    auto [a, b] = make_pair_channels();
    { Channel gone = std::move(b); }
    auto sent = a.send(1, "x");
    ASSERT_FALSE(sent);
    EXPECT_EQ(sent.error().code, ErrorCode::unavailable);
}

}  // namespace
}  // namespace sa::agent::worker
