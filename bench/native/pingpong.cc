// Native baseline for ipcwire's benchmarks: the cost of the transport alone, with no Node in the way.
// Two processes (fork) over an AF_UNIX stream socket (socketpair, or a socket path with --path),
// blocking I/O, each message a 4-byte little-endian length prefix plus SIZE bytes.
//
//   pingpong --size BYTES --iters N --mode latency
//     round trips: parent sends, child echoes the same message back.
//     {"mode":"latency","size":S,"iters":N,"median_us":..,"p99_us":..,"mean_us":..}
//   pingpong --size BYTES --iters N --mode throughput
//     one-way stream of N messages; the child acks once at the end (the clock stops at the ack).
//     {"mode":"throughput","size":S,"msgs":N,"mb_per_s":..,"msgs_per_s":..}   (MB = 10^6 payload bytes)
//   pingpong --size BYTES --mode scale --clients N --duration-ms D
//     N client processes, each doing blocking round trips back to back against one server process that
//     poll()s all N sockets and echoes (the shape of N renderers calling sendSync against one main). After
//     --warmup round trips each, all start together and run for D ms; latencies pooled over every call.
//     {"mode":"scale","size":S,"clients":N,"calls":..,"calls_per_s":..,"median_us":..,"p99_us":..,"max_us":..,
//      "failures":..,"touch_pages":K,"client_cpu_us_per_call":..}  (--touch-pages K: see RunScale)
//
// Options: --warmup N (default 100 round trips / min(N,1000) messages), --path /socket/path.
#include <errno.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
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

using bench_io::Die;
using bench_io::NowUs;
using bench_io::ReadAll;
using bench_io::WriteAll;

// One message: prefix and payload in a single buffer, written with one write().
void SendMsg(int fd, std::vector<uint8_t>& buf, size_t size) {
  uint32_t len = static_cast<uint32_t>(size);
  memcpy(buf.data(), &len, 4);  // little-endian hosts (x86_64, arm64)
  WriteAll(fd, buf.data(), size + 4);
}

bool RecvMsg(int fd, std::vector<uint8_t>& buf) {
  uint32_t len;
  if (!ReadAll(fd, reinterpret_cast<uint8_t*>(&len), 4)) return false;
  if (buf.size() < len + 4u) buf.resize(len + 4u);
  memcpy(buf.data(), &len, 4);
  return ReadAll(fd, buf.data() + 4, len);
}

void Usage() {
  fprintf(stderr,
          "usage: pingpong --size BYTES --iters N --mode latency|throughput [--warmup N] [--path P]\n"
          "       pingpong --size BYTES --mode scale --clients N --duration-ms D [--warmup N] [--touch-pages K]\n");
  exit(2);
}

// Scale mode (see the top of the file). Clients record into one shared anonymous mapping made before fork.
// touch_pages: after each round trip a client reads every cache line of that many 4 KiB pages of its own
// (touched before the start): a stand-in for a bigger program's working set per call (a Node renderer runs
// through code, heap and stack all over), to show what N processes sharing the caches cost per call.
int RunScale(size_t size, long clients, long duration_ms, long warmup, long touch_pages) {
  constexpr uint32_t kMaxSamples = 1u << 17;  // per client; calls beyond are counted, not recorded
  struct Slot {
    double start, end;
    double cpu_us;  // the client's user + system CPU over its timed window
    uint32_t n, recorded;
    float us[kMaxSamples];
  };
  size_t bytes = sizeof(Slot) * static_cast<size_t>(clients);
  void* shm = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shm == MAP_FAILED) Die("mmap");
  Slot* slots = static_cast<Slot*>(shm);
  int go[2];
  if (pipe(go) < 0) Die("pipe");
  std::vector<int> server_fds;
  std::vector<pid_t> pids;
  for (long c = 0; c < clients; c++) {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0) Die("socketpair");
    pid_t pid = fork();
    if (pid < 0) Die("fork");
    if (pid == 0) {
      close(fds[0]);
      close(go[1]);
      for (int f : server_fds) close(f);
      int fd = fds[1];
      std::vector<uint8_t> buf(size + 4, 0xAB);
      std::vector<uint8_t> pages(static_cast<size_t>(touch_pages) * 4096 + 1, 1);
      volatile uint8_t sink = 0;
      auto touch = [&]() {
        uint8_t acc = 0;
        for (size_t k = 0; k < static_cast<size_t>(touch_pages) * 4096; k += 64) acc = static_cast<uint8_t>(acc + pages[k]);
        sink = acc;
      };
      for (long i = 0; i < warmup; i++) {
        SendMsg(fd, buf, size);
        if (!RecvMsg(fd, buf)) _exit(1);
      }
      uint8_t b;
      if (read(go[0], &b, 1) != 1) _exit(1);
      Slot& s = slots[c];
      rusage ru0, ru1;
      getrusage(RUSAGE_SELF, &ru0);
      double start = NowUs(), end = start + duration_ms * 1000.0, t = start;
      uint32_t n = 0;
      while (t < end) {
        double t0 = NowUs();
        SendMsg(fd, buf, size);
        if (!RecvMsg(fd, buf)) _exit(1);
        if (touch_pages > 0) touch();
        t = NowUs();
        if (n < kMaxSamples) s.us[n] = static_cast<float>(t - t0);
        n++;
      }
      getrusage(RUSAGE_SELF, &ru1);
      auto tv = [](const timeval& x) { return x.tv_sec * 1e6 + x.tv_usec; };
      s.cpu_us = tv(ru1.ru_utime) - tv(ru0.ru_utime) + tv(ru1.ru_stime) - tv(ru0.ru_stime);
      s.start = start;
      s.end = t;
      s.n = n;
      s.recorded = std::min(n, kMaxSamples);
      _exit(0);
    }
    close(fds[1]);
    server_fds.push_back(fds[0]);
    pids.push_back(pid);
  }
  close(go[0]);
  // The server: echo whatever arrives on any socket; release the start once every warm-up call is served.
  std::vector<pollfd> pfds;
  for (int f : server_fds) pfds.push_back({f, POLLIN, 0});
  long open_fds = clients;
  long long served = 0;
  bool released = false;
  std::vector<uint8_t> buf(size + 4);
  while (open_fds > 0) {
    if (!released && served >= static_cast<long long>(warmup) * clients) {
      std::vector<uint8_t> all(static_cast<size_t>(clients), 1);
      WriteAll(go[1], all.data(), all.size());
      released = true;
    }
    if (poll(pfds.data(), pfds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      Die("poll");
    }
    for (auto& p : pfds) {
      if (p.fd < 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
      if (!RecvMsg(p.fd, buf)) {
        close(p.fd);
        p.fd = -1;
        open_fds--;
        continue;
      }
      uint32_t len;
      memcpy(&len, buf.data(), 4);
      SendMsg(p.fd, buf, len);
      served++;
    }
  }
  close(go[1]);
  int failures = 0;
  for (pid_t pid : pids) {
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failures++;
  }
  std::vector<float> pooled;
  long long calls = 0;
  double start = 1e300, end = 0, client_cpu_us = 0;
  for (long c = 0; c < clients; c++) {
    const Slot& s = slots[c];
    if (s.n == 0) continue;
    calls += s.n;
    client_cpu_us += s.cpu_us;
    start = std::min(start, s.start);
    end = std::max(end, s.end);
    pooled.insert(pooled.end(), s.us, s.us + s.recorded);
  }
  munmap(shm, bytes);
  if (pooled.empty()) Die("scale: no samples");
  std::sort(pooled.begin(), pooled.end());
  auto pct = [&](double p) { return pooled[std::min(pooled.size() - 1, static_cast<size_t>(p * pooled.size()))]; };
  printf("{\"mode\":\"scale\",\"size\":%zu,\"clients\":%ld,\"calls\":%lld,\"calls_per_s\":%.0f,\"median_us\":%.2f,"
         "\"p99_us\":%.2f,\"max_us\":%.2f,\"failures\":%d,\"touch_pages\":%ld,\"client_cpu_us_per_call\":%.1f}\n",
         size, clients, calls, calls / ((end - start) / 1e6), pct(0.5), pct(0.99), pooled.back(), failures, touch_pages,
         calls ? client_cpu_us / calls : 0.0);
  return failures == 0 ? 0 : 1;
}

void Pair(const std::string& path, int fds[2]) {
  if (path.empty()) {
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0) Die("socketpair");
    return;
  }
  sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) Usage();
  memcpy(addr.sun_path, path.c_str(), path.size());
  unlink(path.c_str());
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  if (l < 0 || bind(l, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0 || listen(l, 1) < 0) Die("listen");
  fds[0] = socket(AF_UNIX, SOCK_STREAM, 0);
  if (connect(fds[0], reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) Die("connect");
  fds[1] = accept(l, nullptr, nullptr);
  if (fds[1] < 0) Die("accept");
  close(l);
  unlink(path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  size_t size = 64;
  long iters = 10000;
  long warmup = -1;
  std::string mode = "latency", path;
  long clients = 1, duration_ms = 2000, touch_pages = 0;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (i + 1 >= argc) Usage();
    if (a == "--size") size = strtoull(argv[++i], nullptr, 10);
    else if (a == "--iters") iters = strtol(argv[++i], nullptr, 10);
    else if (a == "--mode") mode = argv[++i];
    else if (a == "--warmup") warmup = strtol(argv[++i], nullptr, 10);
    else if (a == "--path") path = argv[++i];
    else if (a == "--clients") clients = strtol(argv[++i], nullptr, 10);
    else if (a == "--touch-pages") touch_pages = strtol(argv[++i], nullptr, 10);
    else if (a == "--duration-ms") duration_ms = strtol(argv[++i], nullptr, 10);
    else Usage();
  }
  if (mode == "scale") {
    if (clients <= 0 || duration_ms <= 0 || size > 0xFFFFFFFBu) Usage();
    return RunScale(size, clients, duration_ms, warmup < 0 ? 300 : warmup, touch_pages);
  }
  if (iters <= 0 || (mode != "latency" && mode != "throughput") || size > 0xFFFFFFFBu) Usage();
  bool latency = mode == "latency";
  if (warmup < 0) warmup = latency ? 100 : std::min<long>(iters, 1000);

  int fds[2];
  Pair(path, fds);
  pid_t child = fork();
  if (child < 0) Die("fork");
  std::vector<uint8_t> buf(size + 4, 0xAB);
  if (child == 0) {
    close(fds[0]);
    int fd = fds[1];
    if (latency) {
      while (RecvMsg(fd, buf)) {
        uint32_t len;
        memcpy(&len, buf.data(), 4);
        SendMsg(fd, buf, len);
      }
    } else {
      for (long round = 0; round < 2; round++) {
        long n = round == 0 ? warmup : iters;
        for (long i = 0; i < n; i++)
          if (!RecvMsg(fd, buf)) _exit(1);
        uint8_t ack = 1;
        WriteAll(fd, &ack, 1);
      }
    }
    _exit(0);
  }
  close(fds[1]);
  int fd = fds[0];
  if (latency) {
    std::vector<double> samples;
    samples.reserve(static_cast<size_t>(iters));
    for (long i = 0; i < warmup + iters; i++) {
      double t0 = NowUs();
      SendMsg(fd, buf, size);
      if (!RecvMsg(fd, buf)) Die("echo");
      if (i >= warmup) samples.push_back(NowUs() - t0);
    }
    std::vector<double> sorted = samples;
    std::sort(sorted.begin(), sorted.end());
    double sum = 0;
    for (double s : samples) sum += s;
    auto pct = [&](double p) { return sorted[std::min(sorted.size() - 1, static_cast<size_t>(p * sorted.size()))]; };
    printf("{\"mode\":\"latency\",\"size\":%zu,\"iters\":%ld,\"median_us\":%.2f,\"p99_us\":%.2f,\"mean_us\":%.2f}\n",
           size, iters, pct(0.5), pct(0.99), sum / samples.size());
  } else {
    uint8_t ack;
    for (long i = 0; i < warmup; i++) SendMsg(fd, buf, size);
    if (!ReadAll(fd, &ack, 1)) Die("ack");
    double t0 = NowUs();
    for (long i = 0; i < iters; i++) SendMsg(fd, buf, size);
    if (!ReadAll(fd, &ack, 1)) Die("ack");
    double secs = (NowUs() - t0) / 1e6;
    printf("{\"mode\":\"throughput\",\"size\":%zu,\"msgs\":%ld,\"mb_per_s\":%.2f,\"msgs_per_s\":%.0f}\n", size, iters,
           static_cast<double>(size) * iters / 1e6 / secs, iters / secs);
  }
  close(fd);
  int status;
  waitpid(child, &status, 0);
  return 0;
}
