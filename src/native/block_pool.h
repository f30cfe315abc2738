// Recycles the blocks that large frames are read into. Pure C++: shared by every transport.
//
// A frame above the decoder's large threshold (64 KiB) is read into its own malloc'd block, which JS then
// owns as an external Buffer until the GC finalizes it. Left to malloc, a stream of 1 MiB messages gets
// fresh pages for most frames (glibc unmaps or trims what the finalizers free), and on the VMs we measure a
// first touch costs ~11 µs per 4 KiB page: ~2.8 ms per MiB, several times the cost of the copy itself. The
// pool keeps up to kPoolMaxBytes of freed blocks, already touched, for frames of about the same size.
//
// Process-wide on purpose: blocks outlive the connection (and even the environment) that read them, since a
// Buffer may be finalized late; every entry point takes the lock, so worker threads share it safely. The
// pool is never destroyed (a finalizer may run during static destruction); what it holds stays reachable.
#ifndef IPCWIRE_BLOCK_POOL_H_
#define IPCWIRE_BLOCK_POOL_H_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <vector>

namespace ipcwire {

class BlockPool {
 public:
  // Most bytes kept idle, and the sizes worth keeping (smaller blocks are cheap for malloc to reuse).
  static constexpr size_t kPoolMaxBytes = 32u << 20;
  static constexpr size_t kMinBlock = 64u << 10;

  static BlockPool& Shared() {
    static BlockPool* pool = new BlockPool();
    return *pool;
  }

  // A block of at least `size` bytes (a kept one if one fits without wasting more than an eighth), else
  // malloc. nullptr when memory is exhausted.
  // With `fallback` false, only a kept block: nullptr when none fits.
  uint8_t* Acquire(size_t size, bool fallback = true) {
    if (size >= kMinBlock) {
      std::lock_guard<std::mutex> lk(mu_);
      size_t best = blocks_.size();
      for (size_t i = 0; i < blocks_.size(); i++) {
        size_t s = blocks_[i].size;
        if (s >= size && s - size <= size / 8 && (best == blocks_.size() || s < blocks_[best].size)) best = i;
      }
      if (best != blocks_.size()) {
        uint8_t* p = blocks_[best].data;
        held_ -= blocks_[best].size;
        blocks_[best] = blocks_.back();
        blocks_.pop_back();
        return p;
      }
    }
    return fallback ? static_cast<uint8_t*>(malloc(size)) : nullptr;
  }

  // Gives back a block of `size` usable bytes (from Acquire or malloc; nullptr is ignored). Kept if there
  // is room, else freed; when full, the oldest kept block makes way for the newest (the likeliest size).
  void Release(uint8_t* data, size_t size) {
    if (data == nullptr) return;
    if (size < kMinBlock || size > kPoolMaxBytes) {
      free(data);
      return;
    }
    std::vector<uint8_t*> evicted;
    {
      std::lock_guard<std::mutex> lk(mu_);
      while (held_ + size > kPoolMaxBytes && !blocks_.empty()) {
        evicted.push_back(blocks_.front().data);
        held_ -= blocks_.front().size;
        blocks_.erase(blocks_.begin());
      }
      blocks_.push_back({data, size});
      held_ += size;
    }
    for (uint8_t* p : evicted) free(p);
  }

  // Frees everything kept (tests; a process may call it to give memory back).
  void Trim() {
    std::vector<Entry> all;
    {
      std::lock_guard<std::mutex> lk(mu_);
      all.swap(blocks_);
      held_ = 0;
    }
    for (const Entry& e : all) free(e.data);
  }

  size_t held() {
    std::lock_guard<std::mutex> lk(mu_);
    return held_;
  }

 private:
  struct Entry {
    uint8_t* data;
    size_t size;
  };
  BlockPool() = default;
  std::mutex mu_;
  std::vector<Entry> blocks_;
  size_t held_ = 0;
};

}  // namespace ipcwire

#endif  // IPCWIRE_BLOCK_POOL_H_
