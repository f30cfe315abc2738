// Thin POSIX wrappers for AF_UNIX stream sockets (Linux and macOS). Every function returns 0 or a
// positive errno; nothing here touches Node.
#ifndef IPCWIRE_UNIX_SYS_H_
#define IPCWIRE_UNIX_SYS_H_

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

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
// The lock that makes claiming a socket path atomic: `<socket>.lock` (0600), held with flock(LOCK_EX) by the
// server for its whole life. The kernel releases it when the holder dies, however it dies, so "lock free"
// means "no live server", whatever the socket file (or a refused connect) suggests.
//
// Takes the lock without waiting. 0 with *fd set (close-on-exec), EADDRINUSE when a live server holds it, or
// another errno (EACCES, ELOOP for a symlink, ...). The holder unlinks the file when it lets go, so a lock
// won on a file that is no longer the one at the path is worth nothing: it is retried on the current file.
int LockPath(const std::string& lock_path, int* fd);
// Unlinks the lock file (if it is still the one `fd` holds) and closes `fd`, releasing the lock.
void UnlockPath(const std::string& lock_path, int fd);
// With the path's lock held: removes a socket file nobody serves, so that bind() can take the path.
// Other files are left for bind() to refuse (EADDRINUSE). A socket that still accepts connections belongs to
// a program that takes no lock (an older ipcwire, another server): EADDRINUSE, it is never removed.
int RemoveStaleSocket(const std::string& path);
// Whether a live server holds the lock of the socket at `path` (its `<path>.lock`), probed with a shared lock
// that is dropped at once. false when there is no lock file or it cannot be opened.
bool LockHeld(const std::string& lock_path);
// Whether a failed connect() to `path` is worth retrying until the deadline: a full listen queue (EAGAIN on
// Linux), or a refusal while the path's lock shows a live server. BSD and macOS refuse connections to a live
// server whose queue is full, and any system refuses them in the instant between its bind() and listen().
bool RetryConnect(int err, const std::string& path);
// The identity of a file (lstat), to remove only what we made. false if it does not exist.
bool FileId(const std::string& path, dev_t* dev, ino_t* ino);
// Most descriptors one sendmsg may carry (Linux's SCM_MAX_FD); the receive buffer has room for this many.
constexpr size_t kMaxFdsPerMessage = 253;
// Two connected stream sockets, non-blocking, close-on-exec, without SIGPIPE.
int SocketPair(int fds[2]);
// Makes a descriptor handed in from outside usable as a connection: EBADF if it is not open, ENOTSOCK if it is
// not an AF_UNIX stream socket; then non-blocking, close-on-exec, without SIGPIPE.
int PrepareAdopted(int fd);
// A close-on-exec duplicate of `fd` in *out.
int DupCloexec(int fd, int* out);
// sendmsg of `iov` with `nfds` descriptors attached as SCM_RIGHTS (nfds may be 0), without SIGPIPE.
// Returns bytes written or -1 with errno set; once any byte is written the descriptors went with it.
ssize_t SendWithFds(int fd, const iovec* iov, int iovcnt, const int* fds, size_t nfds);
// recvmsg into `buf`: descriptors that came with the bytes are appended to `fds` (close-on-exec). *lost is set
// when the kernel dropped some (MSG_CTRUNC: more than fit, or this process is out of descriptors). Returns
// bytes read (0 = EOF) or -1 with errno set.
ssize_t RecvWithFds(int fd, void* buf, size_t len, std::vector<int>* fds, bool* lost);
// writev without SIGPIPE. Returns bytes written or -1 with errno set.
ssize_t WriteV(int fd, const iovec* iov, int iovcnt);
// Monotonic clock in milliseconds.
double NowMs();
void SleepMs(double ms);
void CloseFd(int fd);

}  // namespace sys
}  // namespace ipcwire

#endif  // IPCWIRE_UNIX_SYS_H_
