#include "pipe_server.h"

#include <cstring>

#include "pipe_connection.h"
#include "win_errors.h"

namespace ipcwire {
namespace win {

namespace {

constexpr int kWaitingInstances = 4;   // instances in ConnectNamedPipe at once: a burst of clients rarely waits
constexpr DWORD kRetryMs = 100;        // after a failed CreateNamedPipeW (out of resources): shed, then recover
constexpr size_t kMaxPipeName = 256;   // characters, "\\.\pipe\" included

struct ListenArgs {
  std::string address;
  Napi::Function on_connection;
  Napi::Function on_error;
};

}  // namespace

Napi::Function PipeServer::Define(Napi::Env env) {
  return DefineClass(env, "Server",
                     {
                         InstanceMethod("close", &PipeServer::Close),
                         InstanceMethod("ref", &PipeServer::JsRef),
                         InstanceMethod("unref", &PipeServer::JsUnref),
                     });
}

Napi::Value PipeServer::Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[3].IsFunction() || !info[4].IsFunction()) {
    throw Napi::TypeError::New(env, "listen(address, backlog, mode, onConnection, onError): bad arguments");
  }
  // backlog and mode are Unix notions: instances stand in for the backlog, the DACL for the file mode.
  ListenArgs args{info[0].As<Napi::String>().Utf8Value(), info[3].As<Napi::Function>(), info[4].As<Napi::Function>()};
  return Addon::Get(env)->server_ctor.New({Napi::External<ListenArgs>::New(env, &args)});
}

PipeServer::PipeServer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PipeServer>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(env, "Server cannot be constructed from JS; use listen()");
  }
  const ListenArgs* args = info[0].As<Napi::External<ListenArgs>>().Data();
  address_ = args->address;
  wname_ = Widen(address_);
  if (wname_.empty() || _wcsnicmp(wname_.c_str(), L"\\\\.\\pipe\\", 9) != 0 || wname_.size() == 9) {
    ThrowError(env, Win32Error(ERROR_INVALID_NAME, "listen", address_));
  }
  if (wname_.size() > kMaxPipeName) {
    ThrowError(env, ErrorInfo::Ipc(codes::kPathTooLong, "Pipe name is " + std::to_string(wname_.size()) +
                                                           " characters, longer than the 256 Windows allows: " +
                                                           address_)
                        .At(address_));
  }
  DWORD err = 0;
  if (!security_.Build(&err)) ThrowError(env, Win32Error(err, "listen", address_));
  // FILE_FLAG_FIRST_PIPE_INSTANCE makes a name held by another server fail (EADDRINUSE). Wine ignores that
  // flag, so probe first as well: WaitNamedPipeW succeeds or times out only when some server has the name.
  // (Racy on its own; on Windows the flag is the guarantee.)
  if (WaitNamedPipeW(wname_.c_str(), 1) || GetLastError() == ERROR_SEM_TIMEOUT) {
    ThrowError(env, Win32Error(ERROR_ACCESS_DENIED, "listen", address_));
  }
  HANDLE first = CreateInstance(true, &err);
  if (first == INVALID_HANDLE_VALUE) ThrowError(env, Win32Error(err, "listen", address_));
  stop_ = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  napi_threadsafe_function t = nullptr;
  if (stop_ == nullptr ||
      napi_create_threadsafe_function(env, nullptr, nullptr, Napi::String::New(env, "ipcwire.pipe.server"), 0, 1,
                                      this, TsfnFinalize, this, CallJs, &t) != napi_ok) {
    err = GetLastError();
    CloseHandle(first);
    if (stop_) CloseHandle(stop_);
    stop_ = nullptr;
    ThrowError(env, Win32Error(err ? err : ERROR_NOT_ENOUGH_MEMORY, "listen", address_));
  }
  tsfn_ = t;
  on_connection_ = Napi::Persistent(args->on_connection);
  on_error_ = Napi::Persistent(args->on_error);
  // Like net.Server, a listening server keeps the process alive (until unref() or close()).
  Napi::ObjectWrap<PipeServer>::Ref();
  pinned_ = true;
  tracker_ = Addon::Get(env)->tracker();
  tracker_->resources.insert(this);
  thread_ = std::thread([this, first] { AcceptThread(first); });
}

PipeServer::~PipeServer() {
  CloseForTeardown();
  if (stop_) CloseHandle(stop_);
}

bool OwnerOnlySecurity::Build(DWORD* err) {
  HANDLE token = nullptr;
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token)) {
    *err = GetLastError();
    return false;
  }
  DWORD len = 0;
  GetTokenInformation(token, TokenUser, nullptr, 0, &len);
  token_user_.resize(len ? len : 1);
  BOOL ok = GetTokenInformation(token, TokenUser, token_user_.data(), len, &len);
  *err = ok ? 0 : GetLastError();
  CloseHandle(token);
  if (!ok) return false;
  PSID sid = reinterpret_cast<TOKEN_USER*>(token_user_.data())->User.Sid;
  DWORD acl_size = sizeof(ACL) + sizeof(ACCESS_ALLOWED_ACE) - sizeof(DWORD) + GetLengthSid(sid);
  acl_.resize(acl_size);
  PACL acl = reinterpret_cast<PACL>(acl_.data());
  // The owner only: no Everyone/Anonymous read access (the default DACL of a pipe grants them).
  if (!InitializeAcl(acl, acl_size, ACL_REVISION) || !AddAccessAllowedAce(acl, ACL_REVISION, GENERIC_ALL, sid) ||
      !InitializeSecurityDescriptor(&sd_, SECURITY_DESCRIPTOR_REVISION) ||
      !SetSecurityDescriptorDacl(&sd_, TRUE, acl, FALSE)) {
    *err = GetLastError();
    return false;
  }
  sa_.nLength = sizeof sa_;
  sa_.lpSecurityDescriptor = &sd_;
  sa_.bInheritHandle = FALSE;
  return true;
}

HANDLE PipeServer::CreateInstance(bool first, DWORD* err) {
  DWORD open_mode = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | (first ? FILE_FLAG_FIRST_PIPE_INSTANCE : 0);
  DWORD pipe_mode = PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS;
  HANDLE h = CreateNamedPipeW(wname_.c_str(), open_mode, pipe_mode, PIPE_UNLIMITED_INSTANCES, kPipeBuffer,
                              kPipeBuffer, 0, security_.attributes());
  if (h == INVALID_HANDLE_VALUE) *err = GetLastError();
  return h;
}

void PipeServer::AcceptThread(HANDLE first) {
  struct Slot {
    HANDLE pipe = INVALID_HANDLE_VALUE;
    OVERLAPPED ov;
    bool waiting = false;  // a ConnectNamedPipe is in flight on ov
  };
  Slot slots[kWaitingInstances];
  bool ok_events = true;
  for (Slot& s : slots) {
    memset(&s.ov, 0, sizeof s.ov);
    s.ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
    if (s.ov.hEvent == nullptr) ok_events = false;
  }
  slots[0].pipe = first;

  auto hand_off = [this](HANDLE h) {
    std::lock_guard<std::mutex> lk(mu_);
    accepted_.push_back(h);
    NotifyLocked();
  };
  auto report = [this](DWORD err, const char* syscall) {
    std::lock_guard<std::mutex> lk(mu_);
    errors_.push_back(Win32Error(err, syscall, address_));
    NotifyLocked();
  };
  // Puts a slot's instance in ConnectNamedPipe, creating the instance first if needed. False if it could not
  // (the slot stays empty and is retried after kRetryMs).
  // While instances cannot be created (out of resources) the error is reported once, not every retry.
  bool failing = false;
  auto arm = [&](Slot& s) -> bool {
    // An empty slot's event must not stay signaled from its last completion (the wait would spin).
    ResetEvent(s.ov.hEvent);
    for (;;) {
      if (s.pipe == INVALID_HANDLE_VALUE) {
        DWORD err = 0;
        s.pipe = CreateInstance(false, &err);
        if (s.pipe == INVALID_HANDLE_VALUE) {
          if (!failing) report(err, "accept");
          failing = true;
          return false;
        }
        failing = false;
      }
      ResetEvent(s.ov.hEvent);
      if (ConnectNamedPipe(s.pipe, &s.ov)) {
        // Completed at once: the event is set and the completion is handled like an asynchronous one.
        s.waiting = true;
        return true;
      }
      DWORD err = GetLastError();
      if (err == ERROR_IO_PENDING) {
        s.waiting = true;
        return true;
      }
      if (err == ERROR_PIPE_CONNECTED) {  // a client got in between CreateNamedPipeW and ConnectNamedPipe
        hand_off(s.pipe);
        s.pipe = INVALID_HANDLE_VALUE;
        continue;
      }
      if (err == ERROR_NO_DATA) {  // it connected and left already: recycle the instance
        DisconnectNamedPipe(s.pipe);
        continue;
      }
      if (!failing) report(err, "accept");
      failing = true;
      CloseHandle(s.pipe);
      s.pipe = INVALID_HANDLE_VALUE;
      ResetEvent(s.ov.hEvent);
      return false;
    }
  };

  if (!ok_events) report(GetLastError(), "accept");
  bool all_armed = ok_events;
  if (ok_events) {
    for (Slot& s : slots) all_armed = arm(s) && all_armed;
  }
  while (ok_events) {
    HANDLE hs[1 + kWaitingInstances];
    hs[0] = stop_;
    for (int i = 0; i < kWaitingInstances; i++) hs[1 + i] = slots[i].ov.hEvent;
    DWORD w = WaitForMultipleObjects(1 + kWaitingInstances, hs, FALSE, all_armed ? INFINITE : kRetryMs);
    if (w == WAIT_OBJECT_0 || w == WAIT_FAILED) break;
    for (Slot& s : slots) {
      if (!s.waiting || WaitForSingleObject(s.ov.hEvent, 0) != WAIT_OBJECT_0) continue;
      s.waiting = false;
      DWORD n = 0;
      if (GetOverlappedResult(s.pipe, &s.ov, &n, FALSE) || GetLastError() == ERROR_PIPE_CONNECTED) {
        hand_off(s.pipe);
        s.pipe = INVALID_HANDLE_VALUE;
      } else {
        // The client left before we saw it (ERROR_NO_DATA / ERROR_BROKEN_PIPE): recycle the instance.
        DisconnectNamedPipe(s.pipe);
      }
    }
    all_armed = true;
    for (Slot& s : slots) {
      if (!s.waiting) all_armed = arm(s) && all_armed;
    }
  }
  for (Slot& s : slots) {
    if (s.waiting) {
      CancelIoEx(s.pipe, &s.ov);
      DWORD n;
      GetOverlappedResult(s.pipe, &s.ov, &n, TRUE);
    }
    if (s.pipe != INVALID_HANDLE_VALUE) CloseHandle(s.pipe);
    if (s.ov.hEvent) CloseHandle(s.ov.hEvent);
  }
}

void PipeServer::NotifyLocked() {
  if (notify_pending_ || tsfn_ == nullptr) return;
  if (napi_call_threadsafe_function(tsfn_, nullptr, napi_tsfn_nonblocking) == napi_ok) notify_pending_ = true;
}

void PipeServer::CallJs(napi_env env, napi_value, void* context, void*) {
  if (env == nullptr) return;
  try {
    static_cast<PipeServer*>(context)->Deliver(Napi::Env(env));
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();  // a C callback: leave as a JS exception (uncaught for Node)
  } catch (const std::exception& e) {
    Napi::Error::New(Napi::Env(env), e.what()).ThrowAsJavaScriptException();
  }
}

void PipeServer::TsfnFinalize(napi_env, void* data, void*) {
  auto* self = static_cast<PipeServer*>(data);
  {
    std::lock_guard<std::mutex> lk(self->mu_);
    self->tsfn_ = nullptr;
  }
  if (self->pinned_) {
    self->pinned_ = false;
    // A C callback, possibly during environment teardown, where napi_reference_unref may fail: a C++
    // exception must not escape from here.
    try {
      self->Napi::ObjectWrap<PipeServer>::Unref();
    } catch (...) {
    }
  }
}

void PipeServer::Deliver(Napi::Env env) {
  Napi::HandleScope scope(env);
  std::deque<HANDLE> conns;
  std::vector<ErrorInfo> errs;
  {
    std::lock_guard<std::mutex> lk(mu_);
    notify_pending_ = false;
    conns.swap(accepted_);
    errs.swap(errors_);
  }
  while (!conns.empty()) {
    HANDLE h = conns.front();
    conns.pop_front();
    if (closed_) {
      CloseHandle(h);
      continue;
    }
    try {
      Napi::Object conn = PipeConnection::NewInstance(env, h, true, address_);
      on_connection_.Call({conn});
    } catch (...) {
      // The listener threw: the rest wait for the next turn (the exception is Node's uncaught exception).
      std::lock_guard<std::mutex> lk(mu_);
      accepted_.insert(accepted_.begin(), conns.begin(), conns.end());
      errors_.insert(errors_.begin(), errs.begin(), errs.end());
      NotifyLocked();
      throw;
    }
  }
  for (const ErrorInfo& e : errs) {
    if (closed_) break;
    Napi::Value err = MakeError(env, e);
    if (!err.IsEmpty()) on_error_.Call({err});
  }
}

void PipeServer::Stop() {
  if (stop_) SetEvent(stop_);
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lk(mu_);
  for (HANDLE h : accepted_) CloseHandle(h);
  accepted_.clear();
  errors_.clear();
}

void PipeServer::CloseForTeardown() {
  closed_ = true;
  {
    std::lock_guard<std::mutex> lk(mu_);
    tsfn_ = nullptr;  // Node finalizes it at teardown
  }
  Stop();
  if (tracker_) tracker_->resources.erase(this);
}

Napi::Value PipeServer::Close(const Napi::CallbackInfo& info) {
  if (closed_) return info.Env().Undefined();
  closed_ = true;
  Stop();
  napi_threadsafe_function t;
  {
    std::lock_guard<std::mutex> lk(mu_);
    t = tsfn_;
    tsfn_ = nullptr;
  }
  if (t != nullptr) napi_release_threadsafe_function(t, napi_tsfn_release);
  on_connection_.Reset();
  on_error_.Reset();
  tracker_->resources.erase(this);
  return info.Env().Undefined();
}

Napi::Value PipeServer::JsRef(const Napi::CallbackInfo& info) {
  if (!closed_ && tsfn_ != nullptr && !refd_) napi_ref_threadsafe_function(info.Env(), tsfn_);
  refd_ = true;
  return info.Env().Undefined();
}

Napi::Value PipeServer::JsUnref(const Napi::CallbackInfo& info) {
  if (!closed_ && tsfn_ != nullptr && refd_) napi_unref_threadsafe_function(info.Env(), tsfn_);
  refd_ = false;
  return info.Env().Undefined();
}

}  // namespace win
}  // namespace ipcwire
