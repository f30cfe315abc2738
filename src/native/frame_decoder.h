// Incremental decoder for ipcwire frames: u32le bodyLength | u8 kind | u32le id | payload.
//
// Pure C++ (no Node or libuv headers) so it can be unit-tested and fuzzed on its own.
//
// Memory model (why it looks like this):
// - Small frames are read into a staging buffer and handed out as views into it; the caller copies
//   them (coalescing several into one chunk) before asking for the next read target. The staging buffer
//   starts at kInitialStagingBytes and grows to its full capacity the first time a read fills it: a main
//   holding thousands of mostly idle connections pays ~1 KiB each instead of a page of a 128 KiB buffer.
// - A frame bigger than `large_threshold` gets its own allocation; the rest of it is read straight into that
//   allocation (no second copy) and ownership passes to the caller when it is complete, sized exactly
//   4 + bodyLength bytes. Up to kEagerBytes it is allocated whole when its length prefix is known (or taken
//   whole from the block pool when a block of that size is kept); beyond, it starts at kEagerBytes and
//   doubles as bytes arrive, so a declared length costs memory only once the bytes are there (50
//   connections declaring 511 MiB and sending nothing more took 26 GiB of address space).
// - A declared length is checked against `max_body` before anything is allocated. The staging buffer never
//   grows: buffering is bounded by staging capacity + one frame of at most max_body bytes.
#ifndef IPCWIRE_FRAME_DECODER_H_
#define IPCWIRE_FRAME_DECODER_H_

#include <cstddef>
#include <cstdint>

namespace ipcwire {

constexpr size_t kLengthPrefixBytes = 4;
constexpr size_t kBodyHeaderBytes = 5;  // u8 kind | u32le id
constexpr size_t kFrameHeaderBytes = kLengthPrefixBytes + kBodyHeaderBytes;
constexpr uint64_t kDefaultMaxFrameSize = 512ull * 1024 * 1024;
constexpr uint64_t kMaxBodyLength = 0xFFFFFFFFull;

enum class DecodeStatus {
  kFrame,        // *out holds one complete frame
  kNeedMore,     // feed more bytes
  kTooLarge,     // declared body length > max_body (sticky)
  kBadFrame,     // declared body length < 5 (sticky)
  kOutOfMemory,  // allocation for a large frame failed (sticky)
};

struct DecodedFrame {
  // Points at the u32 length prefix; `size` = 4 + body length. When `owned` is false the bytes live in
  // the decoder's staging buffer and stay valid until the next Prepare(). When `owned` is true the caller
  // now owns `data` (allocated with malloc; release with free()).
  uint8_t* data = nullptr;
  size_t size = 0;
  uint8_t kind = 0;
  uint32_t id = 0;
  bool owned = false;

  const uint8_t* payload() const { return data + kFrameHeaderBytes; }
  size_t payload_size() const { return size - kFrameHeaderBytes; }
};

struct ReadTarget {
  uint8_t* data;
  size_t size;
};

inline uint32_t ReadU32LE(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

inline void WriteU32LE(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v >> 16);
  p[3] = static_cast<uint8_t>(v >> 24);
}

class FrameDecoder {
 public:
  static constexpr size_t kDefaultStagingCapacity = 128 * 1024;
  static constexpr size_t kDefaultLargeThreshold = 64 * 1024;
  // Large frames up to this size are allocated whole at once; bigger ones grow from it as bytes arrive.
  static constexpr size_t kEagerBytes = 1024 * 1024;
  // First size of the staging buffer (a handshake and small calls fit); grown to staging_capacity when full.
  static constexpr size_t kInitialStagingBytes = 1024;

  // large_threshold: frames whose total size (prefix included) exceeds it get their own allocation.
  // Requires staging_capacity > large_threshold (a small frame always fits after compaction).
  explicit FrameDecoder(uint64_t max_body = kDefaultMaxFrameSize,
                        size_t staging_capacity = kDefaultStagingCapacity,
                        size_t large_threshold = kDefaultLargeThreshold);
  ~FrameDecoder();
  FrameDecoder(const FrameDecoder&) = delete;
  FrameDecoder& operator=(const FrameDecoder&) = delete;

  // Where the next read should put bytes. Empty ({nullptr, 0}) only after an error or an allocation
  // failure of the staging buffer. Invalidates views handed out by Next().
  ReadTarget Prepare();
  // `n` bytes were written at the last Prepare() target (n <= its size).
  void Commit(size_t n);
  // Take the next complete frame, if any. Call until it returns something other than kFrame.
  DecodeStatus Next(DecodedFrame* out);

  // Copies bytes in through Prepare/Commit (tests, fuzzing). Returns how many were taken; fewer than `n`
  // means Next() must be drained first (or the decoder failed).
  size_t Feed(const uint8_t* data, size_t n);

  void set_max_body(uint64_t max_body) { max_body_ = max_body > kMaxBodyLength ? kMaxBodyLength : max_body; }
  uint64_t max_body() const { return max_body_; }
  // Declared body length of the frame that caused kTooLarge / kBadFrame / kOutOfMemory.
  uint64_t error_length() const { return error_length_; }
  DecodeStatus error() const { return error_; }
  bool failed() const { return error_ != DecodeStatus::kNeedMore; }
  // A large frame is partly read into its own allocation.
  bool in_large_frame() const { return large_ != nullptr; }
  // Bytes allocated for the large frame being read (tests: it grows with what arrived, not what was declared).
  size_t large_capacity() const { return large_cap_; }
  // Bytes held that do not yet form a complete frame.
  size_t buffered() const;
  // Bytes allocated for the staging buffer so far (0 before the first Prepare()).
  size_t staging_allocated() const { return staging_cap_; }

 private:
  DecodeStatus Fail(DecodeStatus status, uint64_t length);

  uint64_t max_body_;
  size_t staging_capacity_;
  size_t large_threshold_;
  uint8_t* staging_ = nullptr;
  size_t staging_cap_ = 0;  // allocated so far: kInitialStagingBytes, then staging_capacity_
  bool staging_filled_ = false;  // a read filled the staging buffer: grow before the next one
  size_t rpos_ = 0;  // first unconsumed byte in staging
  size_t wpos_ = 0;  // end of data in staging
  uint8_t* large_ = nullptr;
  size_t large_size_ = 0;  // the whole frame: 4 + bodyLength
  size_t large_cap_ = 0;   // allocated so far (<= large_size_)
  size_t large_fill_ = 0;
  DecodeStatus error_ = DecodeStatus::kNeedMore;  // kNeedMore = no error
  uint64_t error_length_ = 0;
};

}  // namespace ipcwire

#endif  // IPCWIRE_FRAME_DECODER_H_
