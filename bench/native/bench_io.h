// What both C ping-pong programs (pingpong.cc, shm_pingpong.cc) need around their sockets: a monotonic clock in
// microseconds, dying with errno's text, and whole reads and writes that retry after a signal.
#ifndef IPCWIRE_BENCH_NATIVE_BENCH_IO_H_
#define IPCWIRE_BENCH_NATIVE_BENCH_IO_H_

#include <errno.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace bench_io {

inline double NowUs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

[[noreturn]] inline void Die(const char* what) {
  perror(what);
  exit(2);
}

inline void WriteAll(int fd, const void* p, size_t n) {
  auto* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    ssize_t w = write(fd, b, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      Die("write");
    }
    b += w;
    n -= static_cast<size_t>(w);
  }
}

// False when the peer closed before `n` bytes arrived.
inline bool ReadAll(int fd, void* p, size_t n) {
  auto* b = static_cast<uint8_t*>(p);
  while (n > 0) {
    ssize_t r = read(fd, b, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      Die("read");
    }
    if (r == 0) return false;
    b += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

}  // namespace bench_io

#endif  // IPCWIRE_BENCH_NATIVE_BENCH_IO_H_
