// Thin POSIX wrappers for AF_UNIX stream sockets (Linux and macOS). Every function returns 0 or a
// positive errno; nothing here touches Node.
#ifndef IPCWIRE_UNIX_SYS_H_
#define IPCWIRE_UNIX_SYS_H_

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace ipcwire {
namespace sys {

struct Credentials {
  double pid = -1;
  double uid = -1;
  double gid = -1;
};

constexpr size_t kMaxPathLength = sizeof(sockaddr_un::sun_path) - 1;

// ENAMETOOLONG if `path` does not fit (never truncates).
int FillAddress(const std::string& path, sockaddr_un* addr, socklen_t* len);
// A non-blocking, close-on-exec stream socket that never raises SIGPIPE.
int NewSocket(int* fd);
// accept() returning a non-blocking, close-on-exec fd.
int Accept(int listen_fd, int* fd);
// Kernel-reported credentials of the peer (SO_PEERCRED; getpeereid + LOCAL_PEERPID on macOS).
Credentials PeerCredentials(int fd);
// writev without SIGPIPE. Returns bytes written or -1 with errno set.
ssize_t WriteV(int fd, const iovec* iov, int iovcnt);
// Monotonic clock in milliseconds.
double NowMs();
void SleepMs(double ms);
void CloseFd(int fd);

}  // namespace sys
}  // namespace ipcwire

#endif  // IPCWIRE_UNIX_SYS_H_
