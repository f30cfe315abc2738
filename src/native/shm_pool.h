// Shared-memory pools for large byte arrays. Pure C++ (no Node headers).
//
// Each side of a connection that sends large byte arrays through shared memory owns one segment: a memfd
// (Linux), an unlinked 0600 shm_open object (macOS) or an unnamed, non-inheritable section backed by the paging
// file (Windows: CreateFileMapping; its handle reaches the peer duplicated, as every passed handle does),
// mapped once on both sides. The sender copies a byte
// array into a free block of its segment and sends only {segment, slot, offset, length} on the socket; the
// receiver hands JS a Buffer over its own mapping of that block.
//
// A block comes back through its slot's counter in the segment's header, not through a message: the sender
// adds 1 per send, the receiver's Buffer finalizer subtracts 1 (an atomic store into shared memory: legal on
// any thread, at teardown too, and it never calls into JS or touches the socket). The sender reuses a block
// once its counter is 0 and no Buffer of its own (allocShared) refers to it. A peer that never releases only
// keeps the sender's own, bounded, segment full: the sender then falls back to the socket.
#ifndef IPCWIRE_SHM_POOL_H_
#define IPCWIRE_SHM_POOL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ipcwire {
namespace shm {

// The segment's header: one u32 counter per slot, then the data area.
constexpr size_t kHeaderBytes = 4096;
constexpr uint32_t kSlots = kHeaderBytes / sizeof(uint32_t);
// Blocks start on cache-line boundaries.
constexpr size_t kAlign = 64;
// Offsets and lengths travel as u32.
constexpr uint64_t kMaxSegmentBytes = 0xffffffffull;

// Whether this build can create and map segments at all.
bool Supported();

// One mapping of a segment, unmapped when the last owner lets go (the pool or connection that made it, and
// every Buffer over one of its blocks).
class Mapping {
 public:
  // A new segment of `size` bytes (header included), mapped read-write and shared. `*fd` receives its
  // descriptor (close-on-exec; on Linux sealed against shrinking and growing). nullptr on failure, with
  // `*err` naming the failed call and `*err_no` its errno.
  static std::shared_ptr<Mapping> Create(size_t size, int* fd, std::string* err, int* err_no);
  // Maps a segment received from the peer. Checks that it cannot shrink under us (a shrunk file would turn
  // reads into SIGBUS): on Linux, the shrink seal. Does not close `fd`. nullptr on failure, with the reason.
  static std::shared_ptr<Mapping> Adopt(int fd, std::string* err);
  ~Mapping();
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  uint8_t* base() const { return base_; }
  size_t size() const { return size_; }
  std::atomic<uint32_t>* counter(uint32_t slot) const {
    return reinterpret_cast<std::atomic<uint32_t>*>(base_) + slot;
  }
  // Whether [offset, offset + length) lies inside the data area: it starts at or after the header, on a byte of
  // the segment, and ends by the segment's end. The one test of what a peer names or a view covers (an empty
  // range at the very end is refused: it names no byte, and no pooled array is empty).
  bool InDataArea(uint64_t offset, uint64_t length) const {
    return offset >= kHeaderBytes && offset < size_ && length <= size_ - offset;
  }
  // The same for `length` bytes at `p` in this process (a view's bytes, which may lie anywhere).
  bool InDataArea(const uint8_t* p, size_t length) const {
    uintptr_t at = reinterpret_cast<uintptr_t>(p);
    uintptr_t base = reinterpret_cast<uintptr_t>(base_);
    return at >= base && InDataArea(static_cast<uint64_t>(at - base), static_cast<uint64_t>(length));
  }
  // Validates a received {slot, offset, length}: inside the data area, slot in range. nullptr if not.
  uint8_t* Locate(uint32_t slot, uint64_t offset, uint64_t length) const;
  // Bytes of the peer's blocks that Buffers of this process still hold (views not yet collected). Changed by
  // the JS thread and by finalizers, which may run elsewhere.
  std::atomic<uint64_t>& live_view_bytes() { return live_view_bytes_; }
  // Bytes of large views released by releaseShared() and already counted back into V8's external memory,
  // which their finalizers (still to run) therefore do not count again.
  std::atomic<int64_t>& recounted_bytes() { return recounted_bytes_; }

 private:
  Mapping(uint8_t* base, size_t size) : base_(base), size_(size) {}
  uint8_t* base_;
  size_t size_;
  std::atomic<uint64_t> live_view_bytes_{0};
  std::atomic<int64_t> recounted_bytes_{0};
};

// The sender's allocator over its own segment. Used on the JS thread of one environment; the mutex only
// covers allocShared Buffers whose finalizers may run late (after the pool was closed).
class Pool {
 public:
  explicit Pool(std::shared_ptr<Mapping> mapping);
  const std::shared_ptr<Mapping>& mapping() const { return mapping_; }

  // A free block of `length` bytes (the slot and the offset of its data), counters and local references
  // at 0, or false when the segment has no room (blocks still held) or no free slot.
  bool Alloc(size_t length, uint32_t* slot, uint32_t* offset);
  // Marks the block at `offset` as held by a Buffer of this process (allocShared) / no longer held.
  void AddLocal(uint32_t offset);
  void DropLocal(uint32_t offset);
  // The block containing [p, p+length), if it lies wholly inside one allocated block of this pool.
  bool Find(const uint8_t* p, size_t length, uint32_t* slot, uint32_t* offset) const;
  // The offset of the block containing [p, p+length) (the key of AddLocal/DropLocal), if one in use does.
  bool BlockOf(const uint8_t* p, size_t length, uint32_t* block_offset) const;
  // One more send of the block in `slot`: the receiver's release subtracts it again.
  void Sent(uint32_t slot) { mapping_->counter(slot)->fetch_add(1, std::memory_order_relaxed); }
  // Blocks not yet reusable, and their bytes (for tests and stats).
  size_t blocks() const;
  size_t bytes_in_use() const;

 private:
  struct Entry {
    uint32_t length;
    uint32_t slot;
    uint32_t local_refs;
  };
  // Frees every block that neither the peer (counter) nor this process (local_refs) holds.
  void Reclaim();
  // With mu_ held: the block in use that contains [p, p+length) and its offset, or blocks_.end().
  std::map<uint32_t, Entry>::const_iterator Containing(const uint8_t* p, size_t length) const;

  std::shared_ptr<Mapping> mapping_;
  mutable std::mutex mu_;
  std::map<uint32_t, Entry> blocks_;  // by offset
  std::vector<bool> slot_used_;
  uint32_t next_slot_ = 0;
};

}  // namespace shm
}  // namespace ipcwire

#endif  // IPCWIRE_SHM_POOL_H_
