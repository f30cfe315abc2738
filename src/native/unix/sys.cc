#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

namespace ipcwire {
namespace sys {

int FillAddress(const std::string& path, sockaddr_un* addr, socklen_t* len) {
  if (path.size() > kMaxPathLength || path.empty()) return path.empty() ? EINVAL : ENAMETOOLONG;
  memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  memcpy(addr->sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (path[0] == '\0' ? 0 : 1));
  return 0;
}

static int SetFlags(int fd) {
  int fl = fcntl(fd, F_GETFD);
  if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0) return errno;
  fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return errno;
  return 0;
}

static int NoSigPipe(int fd) {
#ifdef SO_NOSIGPIPE
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one)) < 0) return errno;
#else
  (void)fd;
#endif
  return 0;
}

// The rest of setting up a socket just made (fd >= 0) or the errno of the call that failed to make it (fd < 0):
// close-on-exec and non-blocking unless the call set them, no SIGPIPE where the platform needs the option.
// Closes the fd on failure.
static int Finish(int fd, bool set_flags, int* out) {
  if (fd < 0) return errno;
  int err = set_flags ? SetFlags(fd) : 0;
  if (err == 0) err = NoSigPipe(fd);
  if (err != 0) {
    close(fd);
    return err;
  }
  *out = fd;
  return 0;
}

int NewSocket(int* out) {
#if defined(SOCK_CLOEXEC) && defined(SOCK_NONBLOCK)
  return Finish(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), false, out);
#else
  return Finish(socket(AF_UNIX, SOCK_STREAM, 0), true, out);
#endif
}

int Accept(int listen_fd, int* out) {
#if defined(__linux__)
  return Finish(accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK), false, out);
#else
  return Finish(accept(listen_fd, nullptr, nullptr), true, out);
#endif
}

Credentials PeerCredentials(int fd) {
  Credentials c;
#if defined(SO_PEERCRED)
  struct ucred uc;
  socklen_t len = sizeof(uc);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == 0) {
    c.pid = uc.pid;
    c.uid = uc.uid;
    c.gid = uc.gid;
  }
#elif defined(__APPLE__)
  uid_t uid;
  gid_t gid;
  if (getpeereid(fd, &uid, &gid) == 0) {
    c.uid = uid;
    c.gid = gid;
  }
#if defined(LOCAL_PEERPID)
  pid_t pid;
  socklen_t len = sizeof(pid);
  if (getsockopt(fd, SOL_LOCAL, LOCAL_PEERPID, &pid, &len) == 0) c.pid = pid;
#endif
#else
  (void)fd;
#endif
  return c;
}

namespace {

// Whether `fd` is still the file found at `path` (not one unlinked and replaced meanwhile).
bool IsFileAt(int fd, const std::string& path) {
  struct stat held, at_path;
  return fstat(fd, &held) == 0 && lstat(path.c_str(), &at_path) == 0 && held.st_dev == at_path.st_dev &&
         held.st_ino == at_path.st_ino;
}

}  // namespace

int LockPath(const std::string& lock_path, int* out) {
  // Each retry means another holder released (and unlinked) the file between our open and our flock; a
  // hundred in a row would take a hundred servers coming and going on this one path meanwhile.
  int busy_retries = 2;
  for (int attempt = 0; attempt < 100; ++attempt) {
    int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    int r;
    do {
      r = flock(fd, LOCK_EX | LOCK_NB);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EWOULDBLOCK || errno == EAGAIN) && busy_retries > 0) {
      // Possibly a renderer's momentary shared lock (LockHeld), not a server: look again shortly.
      --busy_retries;
      close(fd);
      SleepMs(1);
      continue;
    }
    if (r < 0) {
      int err = errno;
      close(fd);
      return (err == EWOULDBLOCK || err == EAGAIN) ? EADDRINUSE : err;
    }
    if (IsFileAt(fd, lock_path)) {
      *out = fd;
      return 0;
    }
    close(fd);
  }
  return EADDRINUSE;
}

void UnlockPath(const std::string& lock_path, int fd) {
  if (fd < 0) return;
  // Unlink before closing: whoever opened this file meanwhile finds it gone once the lock is theirs, and
  // retries on a fresh one (LockPath).
  if (IsFileAt(fd, lock_path)) unlink(lock_path.c_str());
  close(fd);
}

int RemoveStaleSocket(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) < 0) return errno == ENOENT ? 0 : errno;
  if (!S_ISSOCK(st.st_mode)) return 0;
  sockaddr_un addr;
  socklen_t addr_len;
  if (int err = FillAddress(path, &addr, &addr_len)) return err;
  int probe;
  if (int err = NewSocket(&probe)) return err;
  int err = 0;
  if (connect(probe, reinterpret_cast<sockaddr*>(&addr), addr_len) < 0) err = errno;
  close(probe);
  // Connected, in progress or a full queue (EAGAIN on Linux): someone accepts there.
  if (err != ECONNREFUSED && err != ENOENT) return EADDRINUSE;
  if (unlink(path.c_str()) < 0 && errno != ENOENT) return errno;
  return 0;
}

bool LockHeld(const std::string& lock_path) {
  int fd = open(lock_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;
  int r;
  do {
    r = flock(fd, LOCK_SH | LOCK_NB);
  } while (r < 0 && errno == EINTR);
  bool held = r < 0 && (errno == EWOULDBLOCK || errno == EAGAIN);
  close(fd);  // also drops the shared lock if we got it
  return held;
}

bool RetryConnect(int err, const std::string& path) {
  if (err == EAGAIN || err == EWOULDBLOCK) return true;
  return err == ECONNREFUSED && path[0] != '\0' && LockHeld(path + ".lock");
}

bool FileId(const std::string& path, dev_t* dev, ino_t* ino) {
  struct stat st;
  if (lstat(path.c_str(), &st) < 0) return false;
  *dev = st.st_dev;
  *ino = st.st_ino;
  return true;
}

ssize_t WriteV(int fd, const iovec* iov, int iovcnt) {
  // Linux and macOS (whose SDK defines MSG_NOSIGNAL too) take the sendmsg branch; SO_NOSIGPIPE, set on every
  // socket where it exists (macOS, the BSDs), covers both branches. The writev branch is for systems with
  // neither, where only Node's own ignoring of SIGPIPE protects the process.
#if defined(MSG_NOSIGNAL)
  msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = iovcnt;
  return sendmsg(fd, &msg, MSG_NOSIGNAL);
#else
  return writev(fd, iov, iovcnt);
#endif
}

int SocketPair(int fds[2]) {
#if defined(SOCK_CLOEXEC) && defined(SOCK_NONBLOCK)
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) < 0) return errno;
#else
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0) return errno;
#endif
  for (int i = 0; i < 2; i++) {
#if !(defined(SOCK_CLOEXEC) && defined(SOCK_NONBLOCK))
    int err = SetFlags(fds[i]);
#else
    int err = 0;
#endif
    if (err == 0) err = NoSigPipe(fds[i]);
    if (err != 0) {
      close(fds[0]);
      close(fds[1]);
      return err;
    }
  }
  return 0;
}

int PrepareAdopted(int fd) {
  if (fd < 0 || fcntl(fd, F_GETFD) < 0) return EBADF;
  int type = 0;
  socklen_t len = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) return errno == EBADF ? EBADF : ENOTSOCK;
  sockaddr_storage addr;
  socklen_t alen = sizeof(addr);
  memset(&addr, 0, sizeof(addr));
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) < 0) return errno;
  if (type != SOCK_STREAM || addr.ss_family != AF_UNIX) return ENOTSOCK;
  if (int err = SetFlags(fd)) return err;
  return NoSigPipe(fd);
}

int DupCloexec(int fd, int* out) {
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) return errno;
  *out = d;
  return 0;
}

ssize_t SendWithFds(int fd, const iovec* iov, int iovcnt, const int* fds, size_t nfds) {
  if (nfds == 0) return WriteV(fd, iov, iovcnt);
  if (nfds > kMaxFdsPerMessage) {
    errno = EINVAL;
    return -1;
  }
  alignas(cmsghdr) char control[CMSG_SPACE(kMaxFdsPerMessage * sizeof(int))];
  memset(control, 0, sizeof(control));
  msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = iovcnt;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
  memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
#if defined(MSG_NOSIGNAL)
  return sendmsg(fd, &msg, MSG_NOSIGNAL);
#else
  return sendmsg(fd, &msg, 0);
#endif
}

ssize_t RecvWithFds(int fd, void* buf, size_t len, std::vector<int>* fds, bool* lost) {
  alignas(cmsghdr) char control[CMSG_SPACE(kMaxFdsPerMessage * sizeof(int))];
  iovec iov = {buf, len};
  msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
#if defined(MSG_CMSG_CLOEXEC)
  ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
#else
  ssize_t n = recvmsg(fd, &msg, 0);
#endif
  if (n < 0) return n;
  if (msg.msg_flags & MSG_CTRUNC) *lost = true;
  if (msg.msg_controllen == 0) return n;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* data = CMSG_DATA(c);
    for (size_t i = 0; i < count; i++) {
      int received;
      memcpy(&received, data + i * sizeof(int), sizeof(int));
#if !defined(MSG_CMSG_CLOEXEC)
      // No atomic close-on-exec here (macOS): a fork+exec on another thread in between could inherit it.
      fcntl(received, F_SETFD, FD_CLOEXEC);
#endif
      fds->push_back(received);
    }
  }
  return n;
}

double NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

void SleepMs(double ms) {
  if (ms <= 0) return;
  timespec ts;
  ts.tv_sec = static_cast<time_t>(ms / 1000);
  ts.tv_nsec = static_cast<long>((ms - static_cast<double>(ts.tv_sec) * 1000) * 1e6);
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

void CloseFd(int fd) {
  if (fd < 0) return;
  // POSIX leaves the fd state unspecified after EINTR; on Linux and macOS it is closed: never retry.
  close(fd);
}

}  // namespace sys
}  // namespace ipcwire
