#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "../errors.h"
#include "connection.h"
#include "sys.h"

namespace ipcwire {

namespace {

struct ServerInit {
  int fd;
  const PathClaim* claim;
  const std::string* address;
  bool taken;
};

constexpr uint64_t kExhaustedPauseMs = 100;
constexpr uint64_t kErrorPauseMs = 50;

int OpenSpare() {
#ifdef O_CLOEXEC
  return open("/", O_RDONLY | O_CLOEXEC);
#else
  int fd = open("/", O_RDONLY);
  if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
#endif
}

}  // namespace

void ReleaseClaim(const std::string& address, PathClaim* claim) {
  if (claim->has_socket) {
    claim->has_socket = false;
    dev_t dev;
    ino_t ino;
    if (sys::FileId(address, &dev, &ino) && dev == claim->dev && ino == claim->ino) unlink(address.c_str());
  }
  if (claim->lock_fd >= 0) {
    sys::UnlockPath(claim->lock_path, claim->lock_fd);
    claim->lock_fd = -1;
  }
}

Napi::Function Server::Define(Napi::Env env) {
  return DefineClass(env, "Server",
                     {
                         InstanceMethod("close", &Server::Close),
                         InstanceMethod("ref", &Server::Ref),
                         InstanceMethod("unref", &Server::Unref),
                     });
}

Napi::Object Server::NewInstance(Napi::Env env, int fd, const PathClaim& claim, const std::string& address,
                                 Napi::Function on_connection, Napi::Function on_error) {
  ServerInit init{fd, &claim, &address, false};
  Addon* addon = Addon::Get(env);
  Napi::Object obj;
  addon->construct_args = &init;
  try {
    obj = addon->server_ctor.New({});
    addon->construct_args = nullptr;
  } catch (...) {
    addon->construct_args = nullptr;
    if (!init.taken) {
      sys::CloseFd(fd);
      PathClaim unused = claim;
      ReleaseClaim(address, &unused);
    }
    throw;
  }
  Server* self = Server::Unwrap(obj);
  self->on_connection_ = Napi::Persistent(on_connection);
  self->on_error_ = Napi::Persistent(on_error);
  self->async_context_ = std::make_unique<Napi::AsyncContext>(env, "ipcwire:Server", obj);
  return obj;
}

Server::Server(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Server>(info), env_(info.Env()) {
  Addon* addon = Addon::Get(env_);
  auto* init = static_cast<ServerInit*>(addon->construct_args);
  addon->construct_args = nullptr;
  if (init == nullptr) throw Napi::TypeError::New(env_, "Server objects come from listen()");
  auto* h = new ServerHandles();
  int r = uv_poll_init(addon->loop(), &h->poll, init->fd);
  if (r != 0) {
    delete h;
    ThrowError(env_, ErrorInfo::System(-r, "listen", *init->address));
  }
  r = uv_poll_start(&h->poll, UV_READABLE, OnPoll);
  if (r != 0) {
    // An initialized handle must go through uv_close before its memory is freed.
    uv_close(reinterpret_cast<uv_handle_t*>(&h->poll),
             [](uv_handle_t* handle) { delete static_cast<ServerHandles*>(handle->data); });
    h->poll.data = h;
    ThrowError(env_, ErrorInfo::System(-r, "listen", *init->address));
  }
  uv_timer_init(addon->loop(), &h->backoff);
  init->taken = true;
  fd_ = init->fd;
  address_ = *init->address;
  claim_ = *init->claim;
  tracker_ = addon->tracker();
  h->poll.data = h;
  h->backoff.data = h;
  h->owner = this;
  h->fd = fd_;
  h->spare_fd = OpenSpare();
  h->tracker = tracker_;
  h->open = 2;
  tracker_->HandleOpened();
  tracker_->HandleOpened();
  handles_ = h;
  tracker_->resources.insert(this);
  UpdateRef();
  // While listening, libuv holds callbacks into this object: keep it alive until closed.
  Napi::ObjectWrap<Server>::Ref();
  pinned_ = true;
}

Server::~Server() {
  if (tracker_) tracker_->resources.erase(this);
  if (handles_ != nullptr) {
    handles_->owner = nullptr;
    if (!closed_) {
      closed_ = true;
      CloseHandlesAndSockets();
      CloseFiles();
    }
    handles_ = nullptr;
  }
}

void Server::CloseFiles() { ReleaseClaim(address_, &claim_); }

void Server::CloseForTeardown() { DoClose(); }

Napi::Value Server::Close(const Napi::CallbackInfo& info) {
  DoClose();
  return info.Env().Undefined();
}

Napi::Value Server::Ref(const Napi::CallbackInfo& info) {
  user_ref_ = true;
  UpdateRef();
  return info.Env().Undefined();
}

Napi::Value Server::Unref(const Napi::CallbackInfo& info) {
  user_ref_ = false;
  UpdateRef();
  return info.Env().Undefined();
}

void Server::UpdateRef() {
  if (handles_ == nullptr || closed_) return;
  if (user_ref_) {
    uv_ref(reinterpret_cast<uv_handle_t*>(&handles_->poll));
    uv_ref(reinterpret_cast<uv_handle_t*>(&handles_->backoff));
  } else {
    uv_unref(reinterpret_cast<uv_handle_t*>(&handles_->poll));
    uv_unref(reinterpret_cast<uv_handle_t*>(&handles_->backoff));
  }
}

void Server::DoClose() {
  if (closed_) return;
  closed_ = true;
  tracker_->resources.erase(this);
  if (handles_ != nullptr) {
    CloseHandlesAndSockets();
    fd_ = -1;
  }
  // The socket file goes before the lock: once the lock is free, a new server may bind the path at once.
  CloseFiles();
}

void Server::CloseHandlesAndSockets() {
  uv_poll_stop(&handles_->poll);
  uv_timer_stop(&handles_->backoff);
  uv_close(reinterpret_cast<uv_handle_t*>(&handles_->poll), OnHandleClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&handles_->backoff), OnHandleClosed);
  // Safe right after uv_close (libuv docs); closing now means no connection is accepted by the
  // kernel after close() returns, as with net.Server.
  sys::CloseFd(handles_->fd);
  sys::CloseFd(handles_->spare_fd);
  handles_->fd = handles_->spare_fd = -1;
}

void Server::OnHandleClosed(uv_handle_t* handle) {
  auto* h = static_cast<ServerHandles*>(handle->data);
  std::shared_ptr<LoopTracker> tracker = h->tracker;
  if (--h->open == 0) {
    sys::CloseFd(h->fd);
    sys::CloseFd(h->spare_fd);
    Server* owner = h->owner;
    delete h;
    if (owner != nullptr) owner->OnClosed();
  }
  tracker->HandleClosed();
}

void Server::OnClosed() {
  handles_ = nullptr;
  fd_ = -1;
  on_connection_.Reset();
  on_error_.Reset();
  async_context_.reset();
  if (pinned_) {
    pinned_ = false;
    Napi::ObjectWrap<Server>::Unref();
  }
}

void Server::OnPoll(uv_poll_t* handle, int status, int /*events*/) {
  auto* h = static_cast<ServerHandles*>(handle->data);
  Server* self = h->owner;
  if (self == nullptr || self->closed_) return;
  Napi::HandleScope scope(self->env_);
  if (status < 0) {
    // libuv stopped the handle; report and try again a little later.
    self->ReportError(-status);
    if (!self->closed_) self->Pause(kErrorPauseMs);
    return;
  }
  self->AcceptLoop();
}

void Server::OnBackoff(uv_timer_t* handle) {
  auto* h = static_cast<ServerHandles*>(handle->data);
  Server* self = h->owner;
  if (self == nullptr || self->closed_) return;
  self->Resume();
}

void Server::Pause(uint64_t ms) {
  if (handles_ == nullptr || closed_) return;
  uv_poll_stop(&handles_->poll);
  uv_timer_start(&handles_->backoff, OnBackoff, ms, 0);
}

void Server::Resume() {
  if (handles_ == nullptr || closed_) return;
  int r = uv_poll_start(&handles_->poll, UV_READABLE, OnPoll);
  if (r != 0) {
    Napi::HandleScope scope(env_);
    ReportError(-r);
    if (!closed_) Pause(kErrorPauseMs);
  }
}

void Server::ReportError(int errnum) {
  if (tracker_->tearing_down || on_error_.IsEmpty()) return;
  Napi::Value err = MakeError(env_, ErrorInfo::System(errnum, "accept", address_));
  if (err.IsEmpty()) return;
  napi_value argv[1] = {err};
  CallIntoJs(env_, *async_context_, Value(), on_error_.Value(), 1, argv);
}

void Server::Shed() {
  // The reserved-fd trick (as libuv does for net.Server): with the spare fd released there is one fd to
  // accept into; accept and close everything pending so clients see a closed connection rather than
  // waiting, then take the spare back.
  if (handles_->spare_fd >= 0) {
    sys::CloseFd(handles_->spare_fd);
    handles_->spare_fd = -1;
    for (;;) {
      int fd;
      int err = sys::Accept(fd_, &fd);
      if (err == EINTR || err == ECONNABORTED) continue;
      if (err != 0) break;
      sys::CloseFd(fd);
    }
    handles_->spare_fd = OpenSpare();
  }
  // Without a spare the listening fd stays readable: pause instead of spinning on EMFILE.
  if (handles_->spare_fd < 0) Pause(kExhaustedPauseMs);
}

void Server::AcceptLoop() {
  while (!closed_) {
    int fd;
    int err = sys::Accept(fd_, &fd);
    if (err != 0) {
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      if (err == EMFILE || err == ENFILE) {
        // Connections are shed (closed at once) until descriptors are free again; main keeps serving those it
        // has. Reported once per episode: a busy server would otherwise report every pending connect.
        if (!fd_exhausted_) {
          fd_exhausted_ = true;
          ReportError(err);
          if (closed_) return;
        }
        Shed();
        return;
      }
      ReportError(err);
      if (!closed_) Pause(kErrorPauseMs);
      return;
    }
    fd_exhausted_ = false;
    Napi::HandleScope scope(env_);
    napi_value conn;
    try {
      conn = Connection::NewInstance(env_, fd, sys::PeerCredentials(fd));
    } catch (const Napi::Error& e) {
      // NewInstance closed the fd. Surface the failure like any callback error.
      napi_value v = e.Value();
      if (v != nullptr && !tracker_->tearing_down) napi_fatal_exception(env_, v);
      continue;
    }
    napi_value argv[1] = {conn};
    CallIntoJs(env_, *async_context_, Value(), on_connection_.Value(), 1, argv);
  }
}

}  // namespace ipcwire
