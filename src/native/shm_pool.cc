#include "shm_pool.h"

#include <cerrno>
#include <cstring>

#ifdef _WIN32
#include <windows.h>
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#endif
#if defined(__APPLE__)
#include <atomic>
#include <cstdio>
#endif

// Old C libraries (the glibc 2.17 floor of the prebuilt binaries) have neither memfd_create() nor these
// constants; the kernel has had the system call since 3.17.
#if defined(__linux__)
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#endif
#ifndef F_SEAL_SEAL
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#endif
#endif

namespace ipcwire {
namespace shm {

namespace {
size_t AlignUp(size_t n) { return (n + kAlign - 1) & ~(kAlign - 1); }
}  // namespace

#ifdef _WIN32

// A section backed by the paging file: unnamed and not inheritable, so only handles (ours, and the one
// duplicated into the peer) reach it. Sections cannot shrink, so the receiver's view stays valid.
bool Supported() { return true; }

std::shared_ptr<Mapping> Mapping::Create(size_t size, int* fd_out, std::string* err, int* err_no) {
  *fd_out = -1;
  if (size <= kHeaderBytes || size > kMaxSegmentBytes) {
    *err = "size";
    *err_no = ERROR_INVALID_PARAMETER;
    return nullptr;
  }
  const uint64_t wide = size;
  HANDLE h = CreateFileMappingW(INVALID_HANDLE_VALUE, nullptr, PAGE_READWRITE | SEC_COMMIT,
                                static_cast<DWORD>(wide >> 32), static_cast<DWORD>(wide), nullptr);
  if (h == nullptr) {
    *err = "CreateFileMapping";
    *err_no = static_cast<int>(GetLastError());
    return nullptr;
  }
  void* p = MapViewOfFile(h, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, size);
  if (p == nullptr) {
    *err = "MapViewOfFile";
    *err_no = static_cast<int>(GetLastError());
    CloseHandle(h);
    return nullptr;
  }
  // Handle values are small multiples of 4: they fit the int the pool reports as its descriptor.
  *fd_out = static_cast<int>(reinterpret_cast<intptr_t>(h));
  return std::shared_ptr<Mapping>(new Mapping(static_cast<uint8_t*>(p), size));
}

std::shared_ptr<Mapping> Mapping::Adopt(int fd, std::string* err) {
  HANDLE h = reinterpret_cast<HANDLE>(static_cast<intptr_t>(fd));
  // Read-write, as on Unix: a Buffer over a read-only view kills the process on its first JS write.
  void* p = MapViewOfFile(h, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, 0);
  if (p == nullptr) {
    *err = "MapViewOfFile failed: Windows error " + std::to_string(GetLastError());
    return nullptr;
  }
  MEMORY_BASIC_INFORMATION info;
  if (VirtualQuery(p, &info, sizeof info) != sizeof info || info.RegionSize <= kHeaderBytes ||
      info.RegionSize > kMaxSegmentBytes) {
    UnmapViewOfFile(p);
    *err = "the shared segment has an impossible size";
    return nullptr;
  }
  // The view of a whole section: its size rounded up to a page, all of it backed.
  return std::shared_ptr<Mapping>(new Mapping(static_cast<uint8_t*>(p), info.RegionSize));
}

Mapping::~Mapping() { UnmapViewOfFile(base_); }

#else

bool Supported() { return true; }

std::shared_ptr<Mapping> Mapping::Create(size_t size, int* fd_out, std::string* err, int* err_no) {
  *fd_out = -1;
  if (size <= kHeaderBytes || size > kMaxSegmentBytes) {
    *err = "size";
    *err_no = EINVAL;
    return nullptr;
  }
#if defined(__linux__)
  int fd = static_cast<int>(syscall(SYS_memfd_create, "ipcwire", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (fd < 0) {
    *err = "memfd_create";
    *err_no = errno;
    return nullptr;
  }
#else
  // No memfd: a POSIX shared-memory object, created exclusively with mode 0600 and unlinked at once, so that
  // only descriptors (ours, and the one passed to the peer) reach it.
  static std::atomic<unsigned> counter{0};
  char name[64];
  int fd = -1;
  for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
    snprintf(name, sizeof name, "/ipcwire.%d.%u.%u", static_cast<int>(getpid()), counter.fetch_add(1),
             static_cast<unsigned>(arc4random()));
    fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    *err = "shm_open";
    *err_no = errno;
    return nullptr;
  }
  shm_unlink(name);
  fcntl(fd, F_SETFD, FD_CLOEXEC);
#endif
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    *err = "ftruncate";
    *err_no = errno;
    close(fd);
    return nullptr;
  }
#if defined(__linux__)
  // The receiver maps the whole file: if it could shrink, reading a block would raise SIGBUS there.
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    *err = "fcntl";
    *err_no = errno;
    close(fd);
    return nullptr;
  }
#endif
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    *err = "mmap";
    *err_no = errno;
    close(fd);
    return nullptr;
  }
  *fd_out = fd;
  return std::shared_ptr<Mapping>(new Mapping(static_cast<uint8_t*>(p), size));
}

std::shared_ptr<Mapping> Mapping::Adopt(int fd, std::string* err) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    *err = std::string("fstat failed: ") + strerror(errno);
    return nullptr;
  }
  if (st.st_size <= static_cast<off_t>(kHeaderBytes) || static_cast<uint64_t>(st.st_size) > kMaxSegmentBytes) {
    *err = "the shared segment has an impossible size (" + std::to_string(static_cast<long long>(st.st_size)) + ")";
    return nullptr;
  }
#if defined(__linux__)
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) {
    *err = "the shared segment is not sealed against shrinking";
    return nullptr;
  }
#endif
  size_t size = static_cast<size_t>(st.st_size);
  // Read-write: a Buffer over a read-only mapping kills the process on its first JS write. Writes through
  // it only change bytes of a block the peer handed over (and could write itself anyway).
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    *err = std::string("mmap failed: ") + strerror(errno);
    return nullptr;
  }
  return std::shared_ptr<Mapping>(new Mapping(static_cast<uint8_t*>(p), size));
}

Mapping::~Mapping() { munmap(base_, size_); }

#endif

uint8_t* Mapping::Locate(uint32_t slot, uint64_t offset, uint64_t length) const {
  if (slot >= kSlots || !InDataArea(offset, length)) return nullptr;
  return base_ + offset;
}

Pool::Pool(std::shared_ptr<Mapping> mapping) : mapping_(std::move(mapping)), slot_used_(kSlots, false) {}

void Pool::Reclaim() {
  for (auto it = blocks_.begin(); it != blocks_.end();) {
    Entry& e = it->second;
    if (e.local_refs == 0 && mapping_->counter(e.slot)->load(std::memory_order_acquire) == 0) {
      slot_used_[e.slot] = false;
      it = blocks_.erase(it);
    } else {
      ++it;
    }
  }
}

bool Pool::Alloc(size_t length, uint32_t* slot, uint32_t* offset) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t need = AlignUp(length == 0 ? 1 : length);
  if (need > mapping_->size() - kHeaderBytes) return false;
  Reclaim();
  if (blocks_.size() >= kSlots) return false;
  // First fit from the start: blocks released promptly are reused at the same low offsets, whose pages are
  // already faulted in, so a steady stream touches no new memory.
  size_t at = kHeaderBytes;
  bool found = false;
  for (const auto& [off, e] : blocks_) {
    if (off >= at + need) {
      found = true;
      break;
    }
    at = AlignUp(static_cast<size_t>(off) + e.length);
  }
  if (!found && at + need > mapping_->size()) return false;
  uint32_t s = next_slot_;
  while (slot_used_[s]) s = (s + 1) % kSlots;
  next_slot_ = (s + 1) % kSlots;
  slot_used_[s] = true;
  // The previous user of the slot may have left garbage there (a hostile receiver); this block starts clean.
  mapping_->counter(s)->store(0, std::memory_order_relaxed);
  blocks_[static_cast<uint32_t>(at)] = Entry{static_cast<uint32_t>(length), s, 0};
  *slot = s;
  *offset = static_cast<uint32_t>(at);
  return true;
}

void Pool::AddLocal(uint32_t offset) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blocks_.find(offset);
  if (it != blocks_.end()) it->second.local_refs++;
}

void Pool::DropLocal(uint32_t offset) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blocks_.find(offset);
  if (it != blocks_.end() && it->second.local_refs > 0) it->second.local_refs--;
}

std::map<uint32_t, Pool::Entry>::const_iterator Pool::Containing(const uint8_t* p, size_t length) const {
  if (!mapping_->InDataArea(p, length)) return blocks_.end();
  size_t at = static_cast<size_t>(p - mapping_->base());
  auto it = blocks_.upper_bound(static_cast<uint32_t>(at));
  if (it == blocks_.begin()) return blocks_.end();
  --it;
  if (at + length > static_cast<size_t>(it->first) + it->second.length) return blocks_.end();
  return it;
}

bool Pool::Find(const uint8_t* p, size_t length, uint32_t* slot, uint32_t* offset) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = Containing(p, length);
  if (it == blocks_.end()) return false;
  *slot = it->second.slot;
  *offset = static_cast<uint32_t>(p - mapping_->base());
  return true;
}

bool Pool::BlockOf(const uint8_t* p, size_t length, uint32_t* block_offset) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = Containing(p, length);
  if (it == blocks_.end()) return false;
  *block_offset = it->first;
  return true;
}

size_t Pool::blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  const_cast<Pool*>(this)->Reclaim();
  return blocks_.size();
}

size_t Pool::bytes_in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  const_cast<Pool*>(this)->Reclaim();
  size_t n = 0;
  for (const auto& kv : blocks_) n += kv.second.length;
  return n;
}

}  // namespace shm
}  // namespace ipcwire
