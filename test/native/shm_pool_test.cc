// Native tests of the shared-memory segment and its sender's pool (pure C++). Each test prints one line; the run
// ends with "shm_pool: N passed, N failed". The references tested here are what a hostile peer controls: a
// {slot, offset, length} on the socket, the counters in the segment's header, and the size and seals of the
// descriptor it passes.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#ifndef _WIN32
#include <unistd.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#include "check.h"
#include "shm_pool.h"

using ipcwire::shm::kAlign;
using ipcwire::shm::kHeaderBytes;
using ipcwire::shm::kSlots;
using ipcwire::shm::Mapping;
using ipcwire::shm::Pool;

namespace {

constexpr size_t kSegment = 64 * 1024;

struct Segment {
  std::shared_ptr<Mapping> mapping;
  int fd = -1;
  ~Segment() {
#ifndef _WIN32
    if (fd >= 0) close(fd);
#endif
  }
};

bool MakeSegment(Segment* s, size_t size = kSegment) {
  std::string err;
  int err_no = 0;
  s->mapping = Mapping::Create(size, &s->fd, &err, &err_no);
  if (!s->mapping) printf("  (Mapping::Create: %s, errno %d)\n", err.c_str(), err_no);
  return s->mapping != nullptr;
}

// A segment must hold more than its header and fit u32 offsets.
bool CreateRefusesImpossibleSizes() {
  std::string err;
  int err_no = 0;
  int fd = 123;
  CHECK(Mapping::Create(kHeaderBytes, &fd, &err, &err_no) == nullptr);
  CHECK(err == "size");
  CHECK(fd == -1);
  CHECK(Mapping::Create(0x100000000ull, &fd, &err, &err_no) == nullptr);
  return true;
}

// What a peer names: a slot in range and bytes wholly inside the data area, whatever the numbers (no overflow).
bool LocateChecksEveryEdge() {
  Segment s;
  CHECK(MakeSegment(&s));
  const Mapping& m = *s.mapping;
  const uint64_t size = m.size();
  CHECK(m.Locate(0, kHeaderBytes, size - kHeaderBytes) == m.base() + kHeaderBytes);  // the whole data area
  CHECK(m.Locate(kSlots - 1, size - 1, 1) == m.base() + size - 1);                    // its last byte
  CHECK(m.Locate(kSlots, kHeaderBytes, 1) == nullptr);                                // no such slot
  CHECK(m.Locate(0, kHeaderBytes - 1, 1) == nullptr);                                 // inside the header
  CHECK(m.Locate(0, 0, 1) == nullptr);
  CHECK(m.Locate(0, kHeaderBytes, size - kHeaderBytes + 1) == nullptr);               // one byte past the end
  CHECK(m.Locate(0, size - 1, 2) == nullptr);
  CHECK(m.Locate(0, size, 0) == nullptr);                                             // empty, at the very end
  CHECK(m.Locate(0, size, 1) == nullptr);
  CHECK(m.Locate(0, UINT64_MAX, 1) == nullptr);                                       // offset + length wraps
  CHECK(m.Locate(0, kHeaderBytes, UINT64_MAX) == nullptr);
  CHECK(m.Locate(0, UINT64_MAX - 10, 20) == nullptr);
  return true;
}

// The same test for bytes in this process's memory (views handed back by the user).
bool InDataAreaForPointers() {
  Segment s;
  CHECK(MakeSegment(&s));
  const Mapping& m = *s.mapping;
  const uint8_t* base = m.base();
  CHECK(m.InDataArea(base + kHeaderBytes, m.size() - kHeaderBytes));
  CHECK(m.InDataArea(base + m.size() - 1, 1));
  CHECK(!m.InDataArea(base, 1));
  CHECK(!m.InDataArea(base + kHeaderBytes - 1, 2));
  CHECK(!m.InDataArea(base + m.size(), 0));
  CHECK(!m.InDataArea(base + m.size() - 1, 2));
  uint8_t elsewhere[16];
  CHECK(!m.InDataArea(elsewhere, sizeof elsewhere));
  CHECK(!m.InDataArea(base + kHeaderBytes, SIZE_MAX));
  return true;
}

// Find and BlockOf answer only for bytes inside one block in use: not across two blocks, not in the alignment
// gap after one, not in free space.
bool FindOnlyInsideOneBlock() {
  Segment s;
  CHECK(MakeSegment(&s));
  Pool pool(s.mapping);
  uint32_t slot_a = 0, off_a = 0, slot_b = 0, off_b = 0;
  // Each is sent (its counter at 1): a block that neither side holds is free again at the next Alloc.
  CHECK(pool.Alloc(1000, &slot_a, &off_a));
  pool.Sent(slot_a);
  CHECK(pool.Alloc(2000, &slot_b, &off_b));
  pool.Sent(slot_b);
  CHECK(off_a == kHeaderBytes);
  CHECK(off_b == kHeaderBytes + ((1000 + kAlign - 1) / kAlign) * kAlign);
  CHECK(slot_a != slot_b);
  const uint8_t* base = s.mapping->base();
  uint32_t slot = 0, offset = 0, block = 0;
  CHECK(pool.Find(base + off_a, 1000, &slot, &offset) && slot == slot_a && offset == off_a);
  CHECK(pool.Find(base + off_a + 10, 20, &slot, &offset) && slot == slot_a && offset == off_a + 10);
  CHECK(pool.Find(base + off_a + 999, 1, &slot, &offset) && offset == off_a + 999);
  CHECK(pool.BlockOf(base + off_b + 1999, 1, &block) && block == off_b);
  CHECK(!pool.Find(base + off_a + 999, 2, &slot, &offset));    // runs into the alignment gap
  CHECK(!pool.Find(base + off_a + 1000, 1, &slot, &offset));   // inside the gap
  CHECK(!pool.Find(base + off_a, off_b - off_a + 1, &slot, &offset));  // across both blocks
  CHECK(!pool.Find(base + off_b + 2000, 1, &slot, &offset));   // free space after the last block
  CHECK(!pool.BlockOf(base + kHeaderBytes - 1, 1, &block));     // the header
  CHECK(!pool.BlockOf(base + s.mapping->size(), 0, &block));    // the very end
  uint8_t elsewhere[8];
  CHECK(!pool.Find(elsewhere, sizeof elsewhere, &slot, &offset));
  CHECK(pool.blocks() == 2);
  CHECK(pool.bytes_in_use() == 3000);
  return true;
}

// A block comes back when the receiver's counter and this process's own references are both at zero; the
// lowest free offset is reused first.
bool BlocksComeBackThroughCounters() {
  Segment s;
  CHECK(MakeSegment(&s));
  Pool pool(s.mapping);
  const size_t whole = s.mapping->size() - kHeaderBytes;
  uint32_t slot = 0, off = 0, slot2 = 0, off2 = 0;
  CHECK(pool.Alloc(whole, &slot, &off));
  CHECK(!pool.Alloc(whole + 1, &slot2, &off2));  // larger than the data area
  pool.Sent(slot);
  pool.Sent(slot);
  CHECK(s.mapping->counter(slot)->load() == 2);
  CHECK(!pool.Alloc(1, &slot2, &off2));  // full: held by the receiver
  s.mapping->counter(slot)->fetch_sub(1);
  CHECK(!pool.Alloc(1, &slot2, &off2));  // one release of two
  pool.AddLocal(off);
  s.mapping->counter(slot)->fetch_sub(1);
  CHECK(!pool.Alloc(1, &slot2, &off2));  // the receiver let go, an allocShared Buffer still holds it
  pool.DropLocal(off);
  pool.DropLocal(off);  // one drop too many is ignored
  CHECK(pool.Alloc(100, &slot2, &off2));
  CHECK(off2 == kHeaderBytes);
  pool.Sent(slot2);
  CHECK(pool.blocks() == 1);
  CHECK(pool.bytes_in_use() == 100);
  return true;
}

// Counters are the peer's to write: garbage left in a free slot does not hold the next block that uses it, and
// a counter the peer drives below zero (wrapping) only keeps that one block.
bool HostileCountersStayContained() {
  Segment s;
  CHECK(MakeSegment(&s));
  Pool pool(s.mapping);
  for (uint32_t i = 0; i < kSlots; i++) s.mapping->counter(i)->store(0xdeadbeef);
  uint32_t slot = 0, off = 0;
  CHECK(pool.Alloc(4096, &slot, &off));
  CHECK(s.mapping->counter(slot)->load() == 0);
  s.mapping->counter(slot)->fetch_sub(1);  // a release of a block never sent
  uint32_t slot2 = 0, off2 = 0;
  CHECK(pool.Alloc(4096, &slot2, &off2));
  CHECK(off2 == off + 4096);  // the first block stays held
  s.mapping->counter(slot)->store(0);
  s.mapping->counter(slot2)->store(0);
  CHECK(pool.Alloc(8192, &slot, &off));
  CHECK(off == kHeaderBytes);
  return true;
}

// A block per slot at most: with every slot in use the pool says full, even with bytes to spare.
bool SlotsBoundTheBlocks() {
  Segment s;
  CHECK(MakeSegment(&s, kHeaderBytes + (kSlots + 1) * kAlign));
  Pool pool(s.mapping);
  uint32_t slot = 0, off = 0;
  for (uint32_t i = 0; i < kSlots; i++) {
    CHECK(pool.Alloc(1, &slot, &off));
    pool.Sent(slot);
  }
  CHECK(!pool.Alloc(1, &slot, &off));
  s.mapping->counter(0)->store(0);
  CHECK(pool.Alloc(1, &slot, &off));
  CHECK(slot == 0);
  return true;
}

#ifndef _WIN32
// The peer's mapping of the same descriptor sees the same bytes and counters at the same offsets.
bool AdoptedMappingSharesBytes() {
  Segment s;
  CHECK(MakeSegment(&s));
  Pool pool(s.mapping);
  uint32_t slot = 0, off = 0;
  CHECK(pool.Alloc(300, &slot, &off));
  memset(s.mapping->base() + off, 0x5a, 300);
  pool.Sent(slot);
  std::string err;
  int copy = dup(s.fd);
  CHECK(copy >= 0);
  std::shared_ptr<Mapping> peer = Mapping::Adopt(copy, &err);
  close(copy);  // the mapping outlives the descriptor
  CHECK(peer != nullptr);
  CHECK(peer->size() == s.mapping->size());
  CHECK(peer->base() != s.mapping->base());
  uint8_t* bytes = peer->Locate(slot, off, 300);
  CHECK(bytes != nullptr);
  CHECK(bytes[0] == 0x5a && bytes[299] == 0x5a);
  CHECK(peer->counter(slot)->load() == 1);
  peer->counter(slot)->fetch_sub(1);  // the receiver's release, seen by the sender
  uint32_t slot2 = 0, off2 = 0;
  CHECK(pool.Alloc(300, &slot2, &off2) && off2 == off);
  return true;
}
#endif

#if defined(__linux__)
// A descriptor that could shrink under the receiver (reads would raise SIGBUS) or has an impossible size is
// refused before anything is mapped.
bool AdoptRefusesUnsafeDescriptors() {
  std::string err;
  int fd = static_cast<int>(syscall(SYS_memfd_create, "ipcwire-test", 0u));
  CHECK(fd >= 0);
  CHECK(ftruncate(fd, kSegment) == 0);
  CHECK(Mapping::Adopt(fd, &err) == nullptr);
  CHECK(err.find("not sealed") != std::string::npos);
  CHECK(ftruncate(fd, kHeaderBytes) == 0);
  err.clear();
  CHECK(Mapping::Adopt(fd, &err) == nullptr);
  CHECK(err.find("impossible size") != std::string::npos);
  close(fd);
  return true;
}
#endif

}  // namespace

int main() {
  using native_test::Run;
  if (!ipcwire::shm::Supported()) {
    printf("shm_pool: shared memory is not supported by this build\n");
    return native_test::Summary("shm_pool");
  }
  Run("shm", "create-refuses-impossible-sizes", CreateRefusesImpossibleSizes);
  Run("shm", "locate-checks-every-edge", LocateChecksEveryEdge);
  Run("shm", "in-data-area-for-pointers", InDataAreaForPointers);
  Run("shm", "find-only-inside-one-block", FindOnlyInsideOneBlock);
  Run("shm", "blocks-come-back-through-counters", BlocksComeBackThroughCounters);
  Run("shm", "hostile-counters-stay-contained", HostileCountersStayContained);
  Run("shm", "slots-bound-the-blocks", SlotsBoundTheBlocks);
#ifndef _WIN32
  Run("shm", "adopted-mapping-shares-bytes", AdoptedMappingSharesBytes);
#endif
#if defined(__linux__)
  Run("shm", "adopt-refuses-unsafe-descriptors", AdoptRefusesUnsafeDescriptors);
#endif
  return native_test::Summary("shm_pool");
}
