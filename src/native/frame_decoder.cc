#include "frame_decoder.h"

#include "block_pool.h"

#include <cstdlib>
#include <cstring>

namespace ipcwire {

FrameDecoder::FrameDecoder(uint64_t max_body, size_t staging_capacity, size_t large_threshold)
    : max_body_(max_body > kMaxBodyLength ? kMaxBodyLength : max_body),
      staging_capacity_(staging_capacity),
      large_threshold_(large_threshold) {
  if (large_threshold_ < kFrameHeaderBytes) large_threshold_ = kFrameHeaderBytes;
  if (staging_capacity_ <= large_threshold_) staging_capacity_ = large_threshold_ + 1;
}

FrameDecoder::~FrameDecoder() {
  free(staging_);
  BlockPool::Shared().Release(large_, large_cap_);
}

DecodeStatus FrameDecoder::Fail(DecodeStatus status, uint64_t length) {
  error_ = status;
  error_length_ = length;
  return status;
}

size_t FrameDecoder::buffered() const { return (wpos_ - rpos_) + large_fill_; }

ReadTarget FrameDecoder::Prepare() {
  if (failed()) return {nullptr, 0};
  if (large_ != nullptr) {
    if (large_fill_ == large_cap_ && large_cap_ < large_size_) {
      // Grow only once what is allocated is full: memory follows the bytes that arrived. realloc moves
      // large blocks by remapping pages, not by copying them.
      size_t cap = large_cap_ > large_size_ / 2 ? large_size_ : large_cap_ * 2;
      auto* grown = static_cast<uint8_t*>(realloc(large_, cap));
      if (grown == nullptr) {
        Fail(DecodeStatus::kOutOfMemory, large_size_ - kLengthPrefixBytes);
        return {nullptr, 0};
      }
      large_ = grown;
      large_cap_ = cap;
    }
    return {large_ + large_fill_, large_cap_ - large_fill_};
  }
  if (staging_ == nullptr) {
    // Allocated lazily (an idle connection costs no staging memory until its first read), and small at
    // first: most connections never need more.
    size_t cap = kInitialStagingBytes < staging_capacity_ ? kInitialStagingBytes : staging_capacity_;
    staging_ = static_cast<uint8_t*>(malloc(cap));
    if (staging_ == nullptr) {
      Fail(DecodeStatus::kOutOfMemory, cap);
      return {nullptr, 0};
    }
    staging_cap_ = cap;
  }
  if (rpos_ > 0) {
    // What remains is at most one partial small frame (< large_threshold_), so this move is short.
    size_t rest = wpos_ - rpos_;
    if (rest > 0) memmove(staging_, staging_ + rpos_, rest);
    rpos_ = 0;
    wpos_ = rest;
  }
  // A read filled the buffer (more is likely waiting), or a partial small frame fills it: grow to the full
  // capacity once, which always has room for a small frame.
  if ((staging_filled_ || wpos_ == staging_cap_) && staging_cap_ < staging_capacity_) {
    auto* grown = static_cast<uint8_t*>(realloc(staging_, staging_capacity_));
    if (grown == nullptr) {
      Fail(DecodeStatus::kOutOfMemory, staging_capacity_);
      return {nullptr, 0};
    }
    staging_ = grown;
    staging_cap_ = staging_capacity_;
  }
  staging_filled_ = false;
  return {staging_ + wpos_, staging_cap_ - wpos_};
}

void FrameDecoder::Commit(size_t n) {
  if (large_ != nullptr) {
    large_fill_ += n;
  } else {
    wpos_ += n;
    if (wpos_ == staging_cap_) staging_filled_ = true;
  }
}

DecodeStatus FrameDecoder::Next(DecodedFrame* out) {
  if (failed()) return error_;
  if (large_ == nullptr) {
    size_t avail = wpos_ - rpos_;
    if (avail < kLengthPrefixBytes) return DecodeStatus::kNeedMore;
    const uint8_t* p = staging_ + rpos_;
    uint64_t body = ReadU32LE(p);
    // Both checks happen before any allocation: the declared length is untrusted.
    if (body > max_body_) return Fail(DecodeStatus::kTooLarge, body);
    if (body < kBodyHeaderBytes) return Fail(DecodeStatus::kBadFrame, body);
    size_t total = static_cast<size_t>(body) + kLengthPrefixBytes;
    if (total <= large_threshold_) {
      if (avail < total) return DecodeStatus::kNeedMore;
      out->data = staging_ + rpos_;
      out->size = total;
      out->kind = p[4];
      out->id = ReadU32LE(p + 5);
      out->owned = false;
      rpos_ += total;
      return DecodeStatus::kFrame;
    }
    // Warm memory when a block of this size was freed lately; else the whole frame up to kEagerBytes, or
    // the part that arrived (at least kEagerBytes) for a bigger one, grown in Prepare().
    size_t cap = total;
    large_ = BlockPool::Shared().Acquire(total, /*fallback=*/total <= kEagerBytes);
    if (large_ == nullptr && total > kEagerBytes) {
      cap = avail > kEagerBytes ? (avail < total ? avail : total) : kEagerBytes;
      large_ = static_cast<uint8_t*>(malloc(cap));
    }
    if (large_ == nullptr) return Fail(DecodeStatus::kOutOfMemory, body);
    large_size_ = total;
    large_cap_ = cap;
    size_t take = avail < total ? avail : total;
    memcpy(large_, p, take);
    large_fill_ = take;
    rpos_ += take;
  }
  if (large_fill_ < large_size_) return DecodeStatus::kNeedMore;
  out->data = large_;
  out->size = large_size_;
  out->kind = large_[4];
  out->id = ReadU32LE(large_ + 5);
  out->owned = true;
  large_ = nullptr;
  large_size_ = 0;
  large_cap_ = 0;
  large_fill_ = 0;
  return DecodeStatus::kFrame;
}

size_t FrameDecoder::Feed(const uint8_t* data, size_t n) {
  size_t taken = 0;
  while (taken < n) {
    ReadTarget t = Prepare();
    if (t.size == 0) break;
    size_t k = n - taken < t.size ? n - taken : t.size;
    memcpy(t.data, data + taken, k);
    Commit(k);
    taken += k;
    // Without draining, a full staging buffer cannot take more: let the caller run Next(). (One still at
    // its initial size grows in the next Prepare().)
    if (large_ == nullptr && wpos_ == staging_capacity_) break;
    if (large_ != nullptr && large_fill_ == large_size_) break;
  }
  return taken;
}

}  // namespace ipcwire
