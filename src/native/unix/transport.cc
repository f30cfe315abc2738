// The Unix transport: listen / connect over AF_UNIX stream sockets.
#include "../transport.h"

#include <errno.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "../addon.h"
#include "../errors.h"
#include "connection.h"
#include "server.h"
#include "sys.h"

namespace ipcwire {
namespace transport {

namespace {

ErrorInfo PathTooLong(const std::string& address) {
  return ErrorInfo::Ipc(codes::kPathTooLong, "Socket path is " + std::to_string(address.size()) +
                                                 " bytes, longer than the " + std::to_string(sys::kMaxPathLength) +
                                                 " this platform allows: " + address)
      .At(address)
      .With("length", static_cast<double>(address.size()))
      .With("maxLength", static_cast<double>(sys::kMaxPathLength));
}

std::string ToAddress(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "address must be a string");
  std::string address = info[0].As<Napi::String>().Utf8Value();
  if (address.empty()) throw Napi::TypeError::New(info.Env(), "address must not be empty");
  if (address.size() > sys::kMaxPathLength) ThrowError(info.Env(), PathTooLong(address));
  return address;
}

// Waits for a connect() in progress (EINPROGRESS on some systems). 0 or errno.
int WaitConnected(int fd, double deadline) {
  for (;;) {
    double left = deadline - sys::NowMs();
    if (left <= 0) return ETIMEDOUT;
    pollfd p{fd, POLLOUT, 0};
    int r = poll(&p, 1, static_cast<int>(std::ceil(std::min(left, 50.0))));
    if (r < 0 && errno != EINTR) return errno;
    if (r > 0) {
      int err = 0;
      socklen_t len = sizeof(err);
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return errno;
      return err;
    }
  }
}

// Undoes what listen() claimed so far, then throws. Node reports failures to take a pipe server's path as
// 'listen' errors (EADDRINUSE, EACCES).
[[noreturn]] void FailListen(Napi::Env env, const std::string& address, PathClaim* claim, int err,
                             const char* syscall) {
  ReleaseClaim(address, claim);
  ThrowError(env, ErrorInfo::System(err, syscall, address));
}

}  // namespace

void Init(Napi::Env env, Addon* addon) {
  addon->connection_ctor = Napi::Persistent(Connection::Define(env));
  addon->server_ctor = Napi::Persistent(Server::Define(env));
}

uint32_t MaxPathLength() { return static_cast<uint32_t>(sys::kMaxPathLength); }
bool SyncReplyBlobs() { return true; }

Napi::Value Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string address = ToAddress(info);
  int backlog = info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 511;
  if (!info[2].IsNumber()) throw Napi::TypeError::New(env, "mode must be a number");
  mode_t mode = static_cast<mode_t>(info[2].As<Napi::Number>().Uint32Value() & 07777);
  if (!info[3].IsFunction() || !info[4].IsFunction())
    throw Napi::TypeError::New(env, "listen expects onConnection and onError functions");

  sockaddr_un addr;
  socklen_t addr_len;
  if (int err = sys::FillAddress(address, &addr, &addr_len)) ThrowError(env, ErrorInfo::System(err, "listen", address));
  bool has_file = address[0] != '\0';  // Linux abstract names have no file and are claimed by bind() itself
  PathClaim claim;
  auto fail = [&](int err, const char* syscall) { FailListen(env, address, &claim, err, syscall); };
  if (has_file) {
    // Claiming the path is atomic: whoever holds the lock owns the path; anyone else gets EADDRINUSE. With
    // the lock held, a socket file at the path is a dead server's and is replaced.
    claim.lock_path = address + ".lock";
    if (int err = sys::LockPath(claim.lock_path, &claim.lock_fd)) fail(err, "listen");
    if (int err = sys::RemoveStaleSocket(address)) fail(err, "listen");
  }
  int fd = -1;
  if (int err = sys::NewSocket(&fd)) fail(err, "listen");
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) < 0) {
    int err = errno;
    sys::CloseFd(fd);
    fail(err, "listen");
  }
  if (has_file) claim.has_socket = sys::FileId(address, &claim.dev, &claim.ino);
  // Permissions are set before listen(): no peer can connect while the file still has umask's mode.
  if (has_file && chmod(address.c_str(), mode) < 0) {
    int err = errno;
    sys::CloseFd(fd);
    fail(err, "chmod");
  }
  if (listen(fd, backlog) < 0) {
    int err = errno;
    sys::CloseFd(fd);
    fail(err, "listen");
  }
  return Server::NewInstance(env, fd, claim, address, info[3].As<Napi::Function>(), info[4].As<Napi::Function>());
}

Napi::Value RemoveStale(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string address = ToAddress(info);
  if (address[0] == '\0') return Napi::Boolean::New(env, false);
  std::string lock_path = address + ".lock";
  int lock_fd;
  if (sys::LockPath(lock_path, &lock_fd) != 0) return Napi::Boolean::New(env, false);  // live, or not ours
  // With the lock held, nobody serves here. A lock file nobody holds is worth nothing, whoever made it.
  struct stat st;
  bool removed;
  if (lstat(address.c_str(), &st) < 0) {
    removed = errno == ENOENT;  // a lock file alone
  } else {
    removed = S_ISSOCK(st.st_mode) && sys::RemoveStaleSocket(address) == 0;
  }
  sys::UnlockPath(lock_path, lock_fd);
  return Napi::Boolean::New(env, removed);
}

Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string address = ToAddress(info);
  double timeout_ms = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 0;
  double deadline = sys::NowMs() + std::max(0.0, timeout_ms);

  sockaddr_un addr;
  socklen_t addr_len;
  if (int err = sys::FillAddress(address, &addr, &addr_len)) ThrowError(env, ErrorInfo::System(err, "connect", address));

  double backoff_ms = 1;
  int fd = -1;
  for (;;) {
    if (int err = sys::NewSocket(&fd)) ThrowError(env, ErrorInfo::System(err, "connect", address));
    int err = 0;
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) < 0) {
      err = errno;
      if (err == EINPROGRESS || err == EINTR) err = WaitConnected(fd, deadline);
    }
    if (err == 0) break;
    sys::CloseFd(fd);
    fd = -1;
    // A full listen queue fails a non-blocking AF_UNIX connect at once (EAGAIN on Linux, ECONNREFUSED on
    // macOS and the BSDs, where only the lock tells a busy server from a dead one): retry with backoff (1 ms
    // doubling to 50 ms) until the deadline.
    double left = deadline - sys::NowMs();
    if (left > 0 && sys::RetryConnect(err, address)) {
      sys::SleepMs(std::min(backoff_ms, left));
      backoff_ms = std::min(backoff_ms * 2, 50.0);
      continue;
    }
    ThrowError(env, ErrorInfo::System(err, "connect", address));
  }
  return Connection::NewInstance(env, fd, sys::PeerCredentials(fd));
}

namespace {

int ToFd(const Napi::CallbackInfo& info) {
  double d = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d <= 0x7fffffff) || d != std::floor(d))
    throw Napi::TypeError::New(info.Env(), "a descriptor must be a non-negative integer");
  return static_cast<int>(d);
}

}  // namespace

Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fds[2];
  if (int err = sys::SocketPair(fds)) ThrowError(env, ErrorInfo::System(err, "socketpair"));
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, fds[0]));
  out.Set(1u, Napi::Number::New(env, fds[1]));
  return out;
}

Napi::Value AdoptConnection(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ToFd(info);
  if (int err = sys::PrepareAdopted(fd)) {
    if (err != EBADF) sys::CloseFd(fd);  // ownership passed with the call
    ThrowError(env, ErrorInfo::System(err, "adoptConnection"));
  }
  return Connection::NewInstance(env, fd, sys::PeerCredentials(fd));
}

Napi::Value CloseHandle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ToFd(info);
  if (close(fd) < 0 && errno == EBADF) ThrowError(env, ErrorInfo::System(EBADF, "close"));
  return env.Undefined();
}

}  // namespace transport
}  // namespace ipcwire
