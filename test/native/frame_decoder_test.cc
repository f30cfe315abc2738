// Native tests of the frame decoder (pure C++). Tests are named <area>-<behaviour>; each prints one line,
// and the run ends with "frame_decoder: N passed, N failed".
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "frame_decoder.h"

using ipcwire::DecodedFrame;
using ipcwire::DecodeStatus;
using ipcwire::FrameDecoder;

namespace {


struct Frame {
  uint8_t kind;
  uint32_t id;
  std::vector<uint8_t> payload;
  bool operator==(const Frame& o) const { return kind == o.kind && id == o.id && payload == o.payload; }
};

std::vector<uint8_t> Encode(const std::vector<Frame>& frames) {
  std::vector<uint8_t> out;
  for (const Frame& f : frames) {
    uint8_t h[9];
    ipcwire::WriteU32LE(h, static_cast<uint32_t>(f.payload.size() + 5));
    h[4] = f.kind;
    ipcwire::WriteU32LE(h + 5, f.id);
    out.insert(out.end(), h, h + 9);
    out.insert(out.end(), f.payload.begin(), f.payload.end());
  }
  return out;
}

struct Result {
  std::vector<Frame> frames;
  DecodeStatus error = DecodeStatus::kNeedMore;
  size_t owned = 0;  // frames that came in their own allocation
};

// Feeds `bytes` in pieces ending at the given cut points, draining after each piece.
Result Decode(FrameDecoder& d, const std::vector<uint8_t>& bytes, const std::vector<size_t>& cuts) {
  Result r;
  size_t pos = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(bytes.size());
  for (size_t end : ends) {
    while (pos < end) {
      size_t n = d.Feed(bytes.data() + pos, end - pos);
      pos += n;
      for (;;) {
        DecodedFrame f;
        DecodeStatus s = d.Next(&f);
        if (s == DecodeStatus::kNeedMore) break;
        if (s != DecodeStatus::kFrame) {
          r.error = s;
          return r;
        }
        Frame out{f.kind, f.id, std::vector<uint8_t>(f.payload(), f.payload() + f.payload_size())};
        r.frames.push_back(std::move(out));
        if (f.owned) {
          r.owned++;
          free(f.data);
        }
      }
      if (n == 0 && pos < end) {
        r.error = d.error();
        return r;
      }
    }
  }
  return r;
}

std::vector<uint8_t> Bytes(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// Several frames: empty payloads, small ones, and ones above the large-frame threshold (kept small here by
// constructing the decoder with a tiny threshold, so every split point stays affordable).
std::vector<Frame> Mixed() {
  return {
      {3, 0, {}},
      {4, 1, Bytes(1, 1)},
      {5, 0xFFFFFFFFu, Bytes(200, 2)},  // large with threshold 64
      {3, 7, {}},
      {7, 42, Bytes(55, 3)},            // 64 bytes in all: the largest "small" frame
      {6, 9, Bytes(300, 4)},            // large, bigger than the staging buffer
      {8, 3, Bytes(2, 5)},
  };
}

bool SplitEveryPointSingleCut() {
  auto frames = Mixed();
  auto bytes = Encode(frames);
  for (size_t cut = 0; cut <= bytes.size(); cut++) {
    FrameDecoder d(1 << 20, 128, 64);
    Result r = Decode(d, bytes, {cut});
    CHECK(r.error == DecodeStatus::kNeedMore);
    CHECK(r.frames == frames);
    CHECK(r.owned == 2);
    CHECK(d.buffered() == 0);
  }
  return true;
}

bool SplitEveryPairOfCuts() {
  auto frames = Mixed();
  auto bytes = Encode(frames);
  for (size_t a = 0; a <= bytes.size(); a += 1) {
    for (size_t b = a; b <= bytes.size(); b += 5) {
      FrameDecoder d(1 << 20, 128, 64);
      Result r = Decode(d, bytes, {a, b});
      CHECK(r.error == DecodeStatus::kNeedMore);
      CHECK(r.frames == frames);
    }
  }
  return true;
}

bool SplitByteByByte() {
  auto frames = Mixed();
  auto bytes = Encode(frames);
  std::vector<size_t> cuts;
  for (size_t i = 1; i < bytes.size(); i++) cuts.push_back(i);
  FrameDecoder d(1 << 20, 128, 64);
  Result r = Decode(d, bytes, cuts);
  CHECK(r.frames == frames);
  return true;
}

bool SplitRandomDefaultSizes() {
  // Default staging/threshold with real sizes: 0, small, 64 KiB - 4 (largest small), 64 KiB + 1, 1 MiB.
  std::vector<Frame> frames = {{3, 1, {}},
                               {3, 2, Bytes(100, 6)},
                               {3, 3, Bytes(64 * 1024 - 9, 7)},
                               {3, 4, Bytes(64 * 1024 + 1, 8)},
                               {5, 5, Bytes(1 << 20, 9)},
                               {3, 6, Bytes(10, 10)}};
  auto bytes = Encode(frames);
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 200; trial++) {
    std::vector<size_t> cuts;
    size_t pos = 0;
    while (true) {
      pos += 1 + rng() % (trial % 2 ? 70000 : 3000);
      if (pos >= bytes.size()) break;
      cuts.push_back(pos);
    }
    FrameDecoder d;
    Result r = Decode(d, bytes, cuts);
    CHECK(r.error == DecodeStatus::kNeedMore);
    CHECK(r.frames == frames);
    CHECK(r.owned == 2);
  }
  return true;
}

bool OversizedRejectedBeforeAllocation() {
  // 0xFFFFFFFF declared with max 1 MiB: must fail as soon as the 4-byte prefix is complete, with
  // nothing allocated for it (a 4 GiB malloc would fail or be visible as a large frame).
  for (size_t cut = 0; cut <= 4; cut++) {
    FrameDecoder d(1 << 20);
    std::vector<uint8_t> bytes = {0xFF, 0xFF, 0xFF, 0xFF, 3, 0, 0, 0, 0};
    Result r = Decode(d, bytes, {cut});
    CHECK(r.error == DecodeStatus::kTooLarge);
    CHECK(d.error_length() == 0xFFFFFFFFull);
    CHECK(!d.in_large_frame());
    CHECK(r.frames.empty());
  }
  // Exactly at the limit is accepted; one more is not.
  {
    FrameDecoder d(100);
    auto ok = Encode({{3, 1, Bytes(95, 1)}});
    Result r = Decode(d, ok, {});
    CHECK(r.error == DecodeStatus::kNeedMore && r.frames.size() == 1);
    auto bad = Encode({{3, 1, Bytes(96, 1)}});
    r = Decode(d, bad, {});
    CHECK(r.error == DecodeStatus::kTooLarge && d.error_length() == 101);
  }
  return true;
}

bool FramesBeforeErrorStillDecoded() {
  auto good = Encode({{3, 1, Bytes(10, 1)}, {3, 2, {}}});
  std::vector<uint8_t> bytes = good;
  const uint8_t huge[] = {0, 0, 0, 0x40, 3, 0, 0, 0, 0};  // 1 GiB > default 512 MiB
  bytes.insert(bytes.end(), huge, huge + sizeof(huge));
  FrameDecoder d;
  Result r = Decode(d, bytes, {});
  CHECK(r.frames.size() == 2);
  CHECK(r.error == DecodeStatus::kTooLarge);
  // Sticky: nothing more is taken.
  CHECK(d.Prepare().size == 0);
  DecodedFrame f;
  CHECK(d.Next(&f) == DecodeStatus::kTooLarge);
  return true;
}

bool ShortBodyRejected() {
  for (uint32_t len = 0; len < 5; len++) {
    FrameDecoder d;
    uint8_t bytes[9] = {0};
    ipcwire::WriteU32LE(bytes, len);
    Result r = Decode(d, std::vector<uint8_t>(bytes, bytes + 9), {2});
    CHECK(r.error == DecodeStatus::kBadFrame);
    CHECK(d.error_length() == len);
  }
  return true;
}

bool MaxBodyAdjustable() {
  FrameDecoder d(10);
  CHECK(d.max_body() == 10);
  d.set_max_body(1ull << 40);
  CHECK(d.max_body() == ipcwire::kMaxBodyLength);
  auto bytes = Encode({{3, 1, Bytes(100, 1)}});
  d.set_max_body(104);
  CHECK(Decode(d, bytes, {}).error == DecodeStatus::kTooLarge);
  FrameDecoder e(105);
  CHECK(Decode(e, bytes, {}).frames.size() == 1);
  return true;
}

bool BufferingIsBounded() {
  // A stream of many small frames fed in big pieces never holds more than one partial frame.
  std::vector<Frame> frames;
  for (uint32_t i = 0; i < 5000; i++) frames.push_back({3, i, Bytes(i % 97, i)});
  auto bytes = Encode(frames);
  FrameDecoder d(1 << 20, 4096, 1024);
  size_t pos = 0, count = 0;
  while (pos < bytes.size()) {
    pos += d.Feed(bytes.data() + pos, bytes.size() - pos);
    DecodedFrame f;
    while (d.Next(&f) == DecodeStatus::kFrame) {
      count++;
      if (f.owned) free(f.data);
    }
    CHECK(d.buffered() < 1024);
  }
  CHECK(count == frames.size());
  return true;
}

void Run(const char* name, const std::function<bool()>& fn) { native_test::Run("decoder", name, fn); }

bool LargeFrameGrowsWithArrivingBytes() {
  // A frame declaring 511 MiB costs what arrived (at least kEagerBytes), not what it declared; it grows as
  // bytes come and is delivered whole and intact at the end.
  {
    FrameDecoder d;
    std::vector<uint8_t> head = {0xFF, 0xFF, 0xFF, 0x1F, 3, 1, 0, 0, 0};  // 511 MiB + ~1 MiB body
    CHECK(d.Feed(head.data(), head.size()) == head.size());
    DecodedFrame f;
    CHECK(d.Next(&f) == DecodeStatus::kNeedMore);
    CHECK(d.in_large_frame());
    CHECK(d.large_capacity() == FrameDecoder::kEagerBytes);
  }
  {
    const size_t body = 5 * 1024 * 1024 + 17;
    std::vector<uint8_t> bytes = Encode({{3, 7, Bytes(body - 5, 9)}});
    FrameDecoder d;
    size_t off = 0;
    size_t last_cap = 0;
    DecodedFrame f;
    DecodeStatus s = DecodeStatus::kNeedMore;
    while (off < bytes.size()) {
      size_t n = std::min<size_t>(100 * 1000, bytes.size() - off);
      CHECK(d.Feed(bytes.data() + off, n) == n);
      off += n;
      s = d.Next(&f);
      if (s == DecodeStatus::kFrame) break;
      CHECK(s == DecodeStatus::kNeedMore);
      // Never more than twice what arrived (or the first kEagerBytes).
      CHECK(d.large_capacity() >= last_cap);
      CHECK(d.large_capacity() <= std::max<size_t>(FrameDecoder::kEagerBytes, 2 * off));
      last_cap = d.large_capacity();
    }
    CHECK(s == DecodeStatus::kFrame);
    CHECK(off == bytes.size());
    CHECK(f.owned && f.size == bytes.size() && f.id == 7 && f.kind == 3);
    CHECK(memcmp(f.data, bytes.data(), bytes.size()) == 0);
    free(f.data);
  }
  return true;
}

// A connection that only says hello keeps a small staging buffer; one whose reads fill it gets the full
// capacity, and a small frame bigger than the initial buffer still decodes.
bool StagingStartsSmallAndGrows() {
  FrameDecoder d;
  std::vector<uint8_t> hello = Encode({{1, 0, std::vector<uint8_t>(100, 7)}});
  CHECK(d.Feed(hello.data(), hello.size()) == hello.size());
  DecodedFrame f;
  CHECK(d.Next(&f) == DecodeStatus::kFrame && f.size == hello.size());
  CHECK(d.Next(&f) == DecodeStatus::kNeedMore);
  CHECK(d.staging_allocated() == FrameDecoder::kInitialStagingBytes);
  std::vector<uint8_t> big = Encode({{2, 9, std::vector<uint8_t>(40000, 3)}, {2, 10, std::vector<uint8_t>(10, 4)}});
  size_t off = 0;
  std::vector<uint32_t> ids;
  while (off < big.size()) {
    size_t n = d.Feed(big.data() + off, big.size() - off);
    off += n;
    for (;;) {
      DecodeStatus s = d.Next(&f);
      if (s != DecodeStatus::kFrame) {
        CHECK(s == DecodeStatus::kNeedMore);
        break;
      }
      CHECK(!f.owned && f.kind == 2);
      ids.push_back(f.id);
    }
    CHECK(n > 0 || off == big.size());
  }
  CHECK(ids.size() == 2 && ids[0] == 9 && ids[1] == 10);
  CHECK(d.staging_allocated() == FrameDecoder::kDefaultStagingCapacity);
  CHECK(d.buffered() == 0);
  return true;
}

}  // namespace

int main() {
  Run("split-every-point", SplitEveryPointSingleCut);
  Run("split-every-pair-of-points", SplitEveryPairOfCuts);
  Run("split-byte-by-byte", SplitByteByByte);
  Run("split-random-real-sizes", SplitRandomDefaultSizes);
  Run("oversized-rejected-before-allocation", OversizedRejectedBeforeAllocation);
  Run("frames-before-error-delivered", FramesBeforeErrorStillDecoded);
  Run("short-body-rejected", ShortBodyRejected);
  Run("max-body-adjustable", MaxBodyAdjustable);
  Run("buffering-bounded", BufferingIsBounded);
  Run("large-frame-grows-with-arriving-bytes", LargeFrameGrowsWithArrivingBytes);
  Run("staging-starts-small-and-grows", StagingStartsSmallAndGrows);
  return native_test::Summary("frame_decoder");
}
