// Native tests of the large-block pool (pure C++). Each test prints one line; the run ends with
// "block_pool: N passed, N failed". The pool is process-wide, so every test starts from Trim().
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "block_pool.h"
#include "check.h"

using ipcwire::BlockPool;

namespace {


constexpr size_t MiB = 1u << 20;

// A block released at a size is handed out again for a frame of the same size (its pages stay warm).
bool ReusesSameSize() {
  BlockPool& pool = BlockPool::Shared();
  pool.Trim();
  uint8_t* a = pool.Acquire(MiB);
  CHECK(a != nullptr);
  memset(a, 1, MiB);
  pool.Release(a, MiB);
  CHECK(pool.held() == MiB);
  uint8_t* b = pool.Acquire(MiB);
  CHECK(b == a);
  CHECK(pool.held() == 0);
  pool.Release(b, MiB);
  pool.Trim();
  return true;
}

// A kept block is not used for a frame it would waste more than an eighth of, nor for a bigger one.
bool BestFitWithinAnEighth() {
  BlockPool& pool = BlockPool::Shared();
  pool.Trim();
  uint8_t* big = pool.Acquire(4 * MiB);
  pool.Release(big, 4 * MiB);
  uint8_t* small = pool.Acquire(MiB);  // 4 MiB would waste 3/4: a fresh block
  CHECK(small != big);
  uint8_t* bigger = pool.Acquire(5 * MiB);  // too small for it
  CHECK(bigger != big);
  uint8_t* close = pool.Acquire(4 * MiB - 100 * 1024);  // within 1/8: the kept block
  CHECK(close == big);
  pool.Release(small, MiB);
  pool.Release(bigger, 5 * MiB);
  pool.Release(close, 4 * MiB);
  pool.Trim();
  return true;
}

// The pool never holds more than kPoolMaxBytes: the oldest blocks are freed to make room for the newest.
bool BoundedAndEvictsOldest() {
  BlockPool& pool = BlockPool::Shared();
  pool.Trim();
  const size_t n = BlockPool::kPoolMaxBytes / (4 * MiB) + 3;
  std::vector<uint8_t*> blocks;
  for (size_t i = 0; i < n; i++) blocks.push_back(pool.Acquire(4 * MiB));
  for (uint8_t* p : blocks) pool.Release(p, 4 * MiB);
  CHECK(pool.held() <= BlockPool::kPoolMaxBytes);
  CHECK(pool.held() == (BlockPool::kPoolMaxBytes / (4 * MiB)) * 4 * MiB);
  // The last one released is still kept.
  bool found = false;
  std::vector<uint8_t*> again;
  for (size_t i = 0; i < BlockPool::kPoolMaxBytes / (4 * MiB); i++) {
    uint8_t* p = pool.Acquire(4 * MiB);
    if (p == blocks.back()) found = true;
    again.push_back(p);
  }
  CHECK(found);
  for (uint8_t* p : again) pool.Release(p, 4 * MiB);
  pool.Trim();
  CHECK(pool.held() == 0);
  return true;
}

// Small blocks, huge blocks and nullptr are never kept.
bool KeepsOnlyUsefulSizes() {
  BlockPool& pool = BlockPool::Shared();
  pool.Trim();
  pool.Release(static_cast<uint8_t*>(malloc(1024)), 1024);
  pool.Release(nullptr, MiB);
  CHECK(pool.held() == 0);
  uint8_t* huge = pool.Acquire(BlockPool::kPoolMaxBytes + 1);
  CHECK(huge != nullptr);
  pool.Release(huge, BlockPool::kPoolMaxBytes + 1);
  CHECK(pool.held() == 0);
  return true;
}

// Threads acquiring and releasing at once (the Windows transport reads on an I/O thread, finalizers run on
// the JS thread) never get the same block twice.
bool ThreadSafe() {
  BlockPool& pool = BlockPool::Shared();
  pool.Trim();
  bool ok[4] = {true, true, true, true};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([t, &ok, &pool] {
      for (int i = 0; i < 2000; i++) {
        uint8_t* p = pool.Acquire(256 * 1024);
        p[0] = static_cast<uint8_t>(t);
        p[256 * 1024 - 1] = static_cast<uint8_t>(t);
        std::this_thread::yield();
        if (p[0] != t || p[256 * 1024 - 1] != t) ok[t] = false;  // someone else had it
        pool.Release(p, 256 * 1024);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(ok[0] && ok[1] && ok[2] && ok[3]);
  CHECK(pool.held() <= BlockPool::kPoolMaxBytes);
  pool.Trim();
  return true;
}

void Run(const char* name, const std::function<bool()>& fn) { native_test::Run("block_pool", name, fn); }

}  // namespace

int main() {
  Run("reuses-same-size", ReusesSameSize);
  Run("best-fit-within-an-eighth", BestFitWithinAnEighth);
  Run("bounded-evicts-oldest", BoundedAndEvictsOldest);
  Run("keeps-only-useful-sizes", KeepsOnlyUsefulSizes);
  Run("thread-safe", ThreadSafe);
  return native_test::Summary("block_pool");
}
