// The shared-memory limit for ipcwire's large-payload rows: what a per-connection pool of memfd blocks,
// mapped once by both processes, with only {slot, length} on an AF_UNIX socket, costs with no Node in the way.
// The same shape as ipcwire's pool: the sender copies the payload into a free block of its own pool (one copy)
// and writes an 8-byte header; the receiver reads the bytes where they are. Linux only (memfd_create).
//
//   shm_pingpong --size BYTES --iters N --mode latency
//     round trips: the parent copies SIZE bytes into its pool and sends the header; the child copies them from
//     there into its own pool and sends its header back (an echo through shared memory, one copy each way).
//     --zero-copy: no copy at all (the block is filled once; only headers travel), as with allocShared.
//     {"mode":"latency","size":S,"iters":N,"median_us":..,"p99_us":..,"mean_us":..}
//   shm_pingpong --size BYTES --iters N --mode throughput
//     one-way stream: the parent copies each message into the next of 4 blocks and sends its header; the child
//     reads the header, sums one byte per 4 KiB page of the block (it looks at the data, as a consumer would)
//     and gives the block back with a 1-byte ack; the parent reuses a block only after its ack.
//     {"mode":"throughput","size":S,"msgs":N,"mb_per_s":..,"msgs_per_s":..}   (MB = 10^6 payload bytes)
//
// Options: --warmup N (default 100 round trips / min(N,1000) messages).
#include <errno.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_io.h"

namespace {

constexpr int kBlocks = 4;

using bench_io::Die;
using bench_io::NowUs;
using bench_io::ReadAll;
using bench_io::WriteAll;

// A pool: kBlocks blocks of `size` bytes in one memfd, mapped shared and pre-faulted (both processes inherit
// the mapping across fork, as ipcwire's peers each map the other's pool once).
uint8_t* MakePool(size_t size) {
  int fd = static_cast<int>(syscall(SYS_memfd_create, "shm_pingpong", 1u /* MFD_CLOEXEC */));
  if (fd < 0) Die("memfd_create");
  size_t total = size * kBlocks;
  if (ftruncate(fd, static_cast<off_t>(total)) != 0) Die("ftruncate");
  void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) Die("mmap");
  close(fd);
  memset(p, 1, total);
  return static_cast<uint8_t*>(p);
}

struct Header {
  uint32_t block;
  uint32_t length;
};

double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  size_t size = 1 << 20;
  long iters = 1000;
  long warmup = -1;
  bool zero_copy = false;
  std::string mode = "latency";
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        fprintf(stderr, "missing value for %s\n", a.c_str());
        exit(2);
      }
      return argv[++i];
    };
    if (a == "--size") size = strtoull(next(), nullptr, 10);
    else if (a == "--iters") iters = strtol(next(), nullptr, 10);
    else if (a == "--warmup") warmup = strtol(next(), nullptr, 10);
    else if (a == "--mode") mode = next();
    else if (a == "--zero-copy") zero_copy = true;
    else {
      fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (size == 0 || iters <= 0 || (mode != "latency" && mode != "throughput")) {
    fprintf(stderr, "usage: shm_pingpong --size BYTES --iters N --mode latency|throughput [--warmup N] [--zero-copy]\n");
    return 2;
  }
  if (warmup < 0) warmup = mode == "latency" ? 100 : std::min(iters, 1000L);

  uint8_t* parent_pool = MakePool(size);
  uint8_t* child_pool = MakePool(size);
  std::vector<uint8_t> source(size, 7);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) Die("socketpair");
  pid_t pid = fork();
  if (pid < 0) Die("fork");

  if (pid == 0) {
    close(sv[0]);
    int fd = sv[1];
    Header h;
    if (mode == "latency") {
      while (ReadAll(fd, &h, sizeof h)) {
        if (!zero_copy) memcpy(child_pool, parent_pool + static_cast<size_t>(h.block) * size, h.length);
        Header back{0, h.length};
        WriteAll(fd, &back, sizeof back);
      }
    } else {
      volatile uint64_t sink = 0;
      while (ReadAll(fd, &h, sizeof h)) {
        const uint8_t* p = parent_pool + static_cast<size_t>(h.block) * size;
        uint64_t sum = 0;
        for (size_t i = 0; i < h.length; i += 4096) sum += p[i];
        sink = sink + sum;
        uint8_t ack = static_cast<uint8_t>(h.block);
        WriteAll(fd, &ack, 1);
      }
    }
    _exit(0);
  }

  close(sv[1]);
  int fd = sv[0];
  if (mode == "latency") {
    std::vector<double> samples;
    samples.reserve(static_cast<size_t>(iters));
    for (long i = 0; i < warmup + iters; i++) {
      double t0 = NowUs();
      if (!zero_copy) memcpy(parent_pool, source.data(), size);
      Header h{0, static_cast<uint32_t>(size)};
      WriteAll(fd, &h, sizeof h);
      if (!ReadAll(fd, &h, sizeof h)) Die("child went away");
      if (i >= warmup) samples.push_back(NowUs() - t0);
    }
    double sum = 0;
    for (double s : samples) sum += s;
    printf("{\"mode\":\"latency\",\"transport\":\"shm\",\"size\":%zu,\"iters\":%ld,\"zero_copy\":%s,\"median_us\":%.2f,\"p99_us\":%.2f,\"mean_us\":%.2f}\n",
           size, iters, zero_copy ? "true" : "false", Percentile(samples, 0.5), Percentile(samples, 0.99),
           sum / static_cast<double>(samples.size()));
  } else {
    long total = warmup + iters;
    long acked = 0;
    double t0 = 0;
    for (long i = 0; i < total; i++) {
      if (i == warmup) {
        while (acked < i) {
          uint8_t ack;
          if (!ReadAll(fd, &ack, 1)) Die("child went away");
          acked++;
        }
        t0 = NowUs();
      }
      if (i - acked >= kBlocks) {
        uint8_t ack;
        if (!ReadAll(fd, &ack, 1)) Die("child went away");
        acked++;
      }
      uint32_t block = static_cast<uint32_t>(i % kBlocks);
      memcpy(parent_pool + static_cast<size_t>(block) * size, source.data(), size);
      Header h{block, static_cast<uint32_t>(size)};
      WriteAll(fd, &h, sizeof h);
    }
    while (acked < total) {
      uint8_t ack;
      if (!ReadAll(fd, &ack, 1)) Die("child went away");
      acked++;
    }
    double us = NowUs() - t0;
    double mb = static_cast<double>(size) * static_cast<double>(iters) / 1e6;
    printf("{\"mode\":\"throughput\",\"transport\":\"shm\",\"size\":%zu,\"msgs\":%ld,\"mb_per_s\":%.1f,\"msgs_per_s\":%.1f}\n", size,
           iters, mb / (us / 1e6), static_cast<double>(iters) / (us / 1e6));
  }
  close(fd);
  int status = 0;
  waitpid(pid, &status, 0);
  return 0;
}
