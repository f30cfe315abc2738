// A listening AF_UNIX socket. Accepts on the event loop (uv_poll) and hands each connection, with the
// kernel's peer credentials, to onConnection. Sheds connections under fd exhaustion (reserved-fd trick).
#ifndef IPCWIRE_UNIX_SERVER_H_
#define IPCWIRE_UNIX_SERVER_H_

#include <napi.h>
#include <uv.h>

#include <memory>
#include <string>

#include "../addon.h"

namespace ipcwire {

class Server;

// What a server holds on its socket path besides the listening fd: the path's lock and the identity of the
// socket file it bound, so that closing removes exactly that file (never a successor's) and then the lock.
struct PathClaim {
  int lock_fd = -1;
  std::string lock_path;
  bool has_socket = false;
  dev_t dev = 0;
  ino_t ino = 0;
};

// Removes the socket file at `address` if it is still the one the claim bound, then releases the lock.
// Idempotent.
void ReleaseClaim(const std::string& address, PathClaim* claim);

struct ServerHandles {
  uv_poll_t poll;
  uv_timer_t backoff;  // resumes accepting after a pause (fd exhaustion without a spare fd, accept errors)
  Server* owner = nullptr;
  int fd = -1;
  int spare_fd = -1;
  int open = 0;
  std::shared_ptr<LoopTracker> tracker;
};

class Server : public Napi::ObjectWrap<Server>, public Resource {
 public:
  static Napi::Function Define(Napi::Env env);
  // Wraps a listening fd and its path claim (ownership of both passes to the Server, also when this throws)
  // and starts accepting.
  static Napi::Object NewInstance(Napi::Env env, int fd, const PathClaim& claim, const std::string& address,
                                  Napi::Function on_connection, Napi::Function on_error);

  explicit Server(const Napi::CallbackInfo& info);
  ~Server() override;
  void CloseForTeardown() override;

 private:
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);

  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnBackoff(uv_timer_t* handle);
  static void OnHandleClosed(uv_handle_t* handle);

  void AcceptLoop();
  void Shed();
  void Pause(uint64_t ms);
  void Resume();
  void DoClose();
  void OnClosed();
  void ReportError(int errnum);
  void UpdateRef();
  void CloseFiles();
  // Stops and closes both libuv handles (their close callbacks free them) and closes the listening and spare
  // sockets at once.
  void CloseHandlesAndSockets();

  Napi::Env env_;
  std::shared_ptr<LoopTracker> tracker_;
  ServerHandles* handles_ = nullptr;
  int fd_ = -1;
  std::string address_;
  PathClaim claim_;
  Napi::FunctionReference on_connection_, on_error_;
  std::unique_ptr<Napi::AsyncContext> async_context_;
  bool user_ref_ = true;  // like net.Server: a listening server keeps the process alive
  bool closed_ = false;
  // accept() is failing for lack of descriptors: reported once when it starts, again only after it recovered.
  bool fd_exhausted_ = false;
  bool pinned_ = false;
};

}  // namespace ipcwire

#endif  // IPCWIRE_UNIX_SERVER_H_
