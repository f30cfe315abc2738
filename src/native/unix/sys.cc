#include "sys.h"

#include <errno.h>
#include <fcntl.h>
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

[[maybe_unused]] static int SetFlags(int fd) {
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

int NewSocket(int* out) {
#if defined(SOCK_CLOEXEC) && defined(SOCK_NONBLOCK)
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return errno;
#else
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return errno;
  if (int err = SetFlags(fd)) {
    close(fd);
    return err;
  }
#endif
  if (int err = NoSigPipe(fd)) {
    close(fd);
    return err;
  }
  *out = fd;
  return 0;
}

int Accept(int listen_fd, int* out) {
#if defined(__linux__)
  int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return errno;
#else
  int fd = accept(listen_fd, nullptr, nullptr);
  if (fd < 0) return errno;
  if (int err = SetFlags(fd)) {
    close(fd);
    return err;
  }
#endif
  if (int err = NoSigPipe(fd)) {
    close(fd);
    return err;
  }
  *out = fd;
  return 0;
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

ssize_t WriteV(int fd, const iovec* iov, int iovcnt) {
#if defined(MSG_NOSIGNAL)
  msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = iovcnt;
  return sendmsg(fd, &msg, MSG_NOSIGNAL);
#else
  return writev(fd, iov, iovcnt);  // SO_NOSIGPIPE is set on every socket we make
#endif
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
