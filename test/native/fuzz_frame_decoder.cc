// Fuzz target for the frame decoder. Invariant: feeding a byte stream whole, or split at points chosen
// from the input itself, yields the same frames and the same error; nothing is allocated for a declared
// length above the maximum (run libFuzzer with -malloc_limit_mb=64 to catch that).
//
// libFuzzer:  clang++ -g -O1 -std=c++17 -fsanitize=fuzzer,address,undefined -Isrc/native
//               test/native/fuzz_frame_decoder.cc src/native/frame_decoder.cc -o fuzz_frame_decoder
//             ./fuzz_frame_decoder -malloc_limit_mb=64 test/native/corpus/
// Replay (g++): build with -DIPCWIRE_FUZZ_REPLAY_MAIN and pass corpus directories or files.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "frame_decoder.h"

namespace {

struct Outcome {
  std::vector<std::vector<uint8_t>> frames;  // whole frames, prefix included
  ipcwire::DecodeStatus error = ipcwire::DecodeStatus::kNeedMore;
  uint64_t error_length = 0;
};

// The maximum is small so that hostile lengths are cheap to reject and valid inputs stay small.
constexpr uint64_t kMax = 1 << 20;

void Drain(ipcwire::FrameDecoder& d, Outcome& o) {
  for (;;) {
    ipcwire::DecodedFrame f;
    ipcwire::DecodeStatus s = d.Next(&f);
    if (s == ipcwire::DecodeStatus::kNeedMore) return;
    if (s != ipcwire::DecodeStatus::kFrame) {
      o.error = s;
      o.error_length = d.error_length();
      return;
    }
    if (f.size < ipcwire::kFrameHeaderBytes || ipcwire::ReadU32LE(f.data) + 4 != f.size) abort();
    o.frames.emplace_back(f.data, f.data + f.size);
    if (f.owned) free(f.data);
  }
}

Outcome Run(const uint8_t* data, size_t size, size_t staging, size_t threshold, uint32_t seed) {
  ipcwire::FrameDecoder d(kMax, staging, threshold);
  Outcome o;
  size_t pos = 0;
  uint32_t x = seed | 1;
  while (pos < size && o.error == ipcwire::DecodeStatus::kNeedMore) {
    size_t piece = size - pos;
    if (seed != 0) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      piece = 1 + x % 97;
      if (piece > size - pos) piece = size - pos;
    }
    size_t end = pos + piece;
    while (pos < end && o.error == ipcwire::DecodeStatus::kNeedMore) {
      size_t n = d.Feed(data + pos, end - pos);
      pos += n;
      Drain(d, o);
      if (n == 0 && o.error == ipcwire::DecodeStatus::kNeedMore) abort();  // stuck without an error
    }
  }
  if (o.error == ipcwire::DecodeStatus::kNeedMore && d.buffered() > kMax + 4) abort();
  return o;
}

bool Same(const Outcome& a, const Outcome& b) {
  return a.frames == b.frames && a.error == b.error && a.error_length == b.error_length;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint32_t seed = size > 0 ? data[0] * 2654435761u + static_cast<uint32_t>(size) : 1;
  Outcome whole = Run(data, size, ipcwire::FrameDecoder::kDefaultStagingCapacity,
                      ipcwire::FrameDecoder::kDefaultLargeThreshold, 0);
  Outcome split = Run(data, size, ipcwire::FrameDecoder::kDefaultStagingCapacity,
                      ipcwire::FrameDecoder::kDefaultLargeThreshold, seed);
  Outcome tiny = Run(data, size, 64, 32, seed + 1);  // tiny staging: every frame > 32 bytes is "large"
  if (!Same(whole, split) || !Same(whole, tiny)) abort();
  return 0;
}

#ifdef IPCWIRE_FUZZ_REPLAY_MAIN
#include <dirent.h>
#include <sys/stat.h>

static int ReplayFile(const std::string& path) {
  FILE* f = fopen(path.c_str(), "rb");
  if (f == nullptr) {
    perror(path.c_str());
    return 1;
  }
  std::vector<uint8_t> buf;
  uint8_t chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) buf.insert(buf.end(), chunk, chunk + n);
  fclose(f);
  LLVMFuzzerTestOneInput(buf.data(), buf.size());  // aborts on a violated invariant
  return 0;
}

int main(int argc, char** argv) {
  int inputs = 0, failed = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      failed++;
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      DIR* dir = opendir(argv[i]);
      while (dirent* e = readdir(dir)) {
        if (e->d_name[0] == '.') continue;
        failed += ReplayFile(std::string(argv[i]) + "/" + e->d_name);
        inputs++;
      }
      closedir(dir);
    } else {
      failed += ReplayFile(argv[i]);
      inputs++;
    }
  }
  printf("fuzz_frame_decoder replay: %d inputs, %d failed\n", inputs, failed);
  return failed == 0 && inputs > 0 ? 0 : 1;
}
#endif
