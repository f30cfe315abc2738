// Keeps the memory of large freed Buffers in the C library's heap, so that the next large copy lands in pages
// this process has already touched. Pure C++: shared by every transport.
//
// A renderer calling sendSync in a loop gets each large reply (up to 16 MiB) as an ordinary Buffer: V8 frees
// those at its next collection without waiting for the event loop, which a synchronous loop never turns.
// glibc, though, returns freed memory to the kernel as soon as the free space at the top of its heap exceeds
// its trim threshold (at first 128 KiB, then twice the largest mmap'd block freed so far), and serves blocks
// above its mmap threshold with fresh mappings. Either way the next reply is copied into fresh pages, at
// 1.5–11 µs per 4 KiB page on the VMs we measure (0.4–2.8 ms per MiB, several times the copy itself): that was
// the slow mode of a 1 MiB sendSync echo (3–5 ms against 0.3 ms).
//
// glibc raises both thresholds itself, up to their ceilings (an mmap threshold of 32 MiB and a trim threshold
// of 64 MiB on 64-bit systems), each time the program frees an mmap'd block below the ceiling. Before the first
// large copy we let it do so once, by freeing one such block: the process then behaves as any process that
// once freed a 32 MiB Buffer does. This touches no tunable, so thresholds the user set (MALLOC_MMAP_THRESHOLD_,
// GLIBC_TUNABLES, mallopt) are left as they are; elsewhere than glibc it does nothing.
#ifndef IPCWIRE_WARM_HEAP_H_
#define IPCWIRE_WARM_HEAP_H_

#include <cstddef>
#include <cstdlib>
#if defined(__GLIBC__)
#include <mutex>
#endif

namespace ipcwire {

// Smallest copy worth it: below it glibc serves blocks from its heap whatever the thresholds.
constexpr size_t kWarmHeapMinCopy = 128 * 1024;

// Call before copying `size` bytes into a new Buffer that a synchronous loop may free and reallocate.
inline void KeepLargeFreesWarm(size_t size) {
#if defined(__GLIBC__)
  if (size < kWarmHeapMinCopy) return;
  // Process-wide on purpose: the heap is the process's (worker threads share it).
  static std::once_flag once;
  std::call_once(once, [] {
    // glibc's ceiling (DEFAULT_MMAP_THRESHOLD_MAX: 4 MiB * sizeof(long)), minus room for the block's header
    // and page rounding, so that the block is mmap'd and counts. Its pages are never touched.
    constexpr size_t kBlock = 4u * 1024 * 1024 * sizeof(long) - 64 * 1024;
    // volatile: the compiler may not drop the pair as a no-op.
    void* volatile block = malloc(kBlock);
    free(block);
  });
#else
  (void)size;
#endif
}

}  // namespace ipcwire

#endif  // IPCWIRE_WARM_HEAP_H_
