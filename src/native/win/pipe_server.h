// A named-pipe server, the Windows NativeServer of src/ts/native.ts.
//
// Named pipes have no listen queue: a client can connect only while an instance waits in ConnectNamedPipe.
// So an accept thread keeps a few instances waiting at once (overlapped ConnectNamedPipe on each) and creates a
// fresh one as each is taken, handing connected handles to JS through a thread-safe function. Clients that
// find every instance busy retry to their deadline (see Connect in transport.cc).
#ifndef IPCWIRE_WIN_PIPE_SERVER_H_
#define IPCWIRE_WIN_PIPE_SERVER_H_

#include <windows.h>

#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <napi.h>

#include "../addon.h"
#include "../errors.h"

namespace ipcwire {
namespace win {

/**
 * Security attributes that give the current user alone access to a pipe (the default DACL of a pipe also lets
 * Everyone and Anonymous read). Not copyable: the attributes point into the object.
 */
struct OwnerOnlySecurity {
  OwnerOnlySecurity() = default;
  OwnerOnlySecurity(const OwnerOnlySecurity&) = delete;
  OwnerOnlySecurity& operator=(const OwnerOnlySecurity&) = delete;
  /** False with *err set when the token or the ACL could not be read or built. */
  bool Build(DWORD* err);
  SECURITY_ATTRIBUTES* attributes() { return &sa_; }

 private:
  std::vector<uint8_t> token_user_;
  std::vector<uint8_t> acl_;
  SECURITY_DESCRIPTOR sd_;
  SECURITY_ATTRIBUTES sa_;
};

/** Pipe buffer size of every instance (listen() and socketpair()), each direction. */
constexpr DWORD kPipeBuffer = 64 * 1024;

class PipeServer : public Napi::ObjectWrap<PipeServer>, public Resource {
 public:
  static Napi::Function Define(Napi::Env env);
  /** listen(address, backlog, mode, onConnection, onError) → Server. */
  static Napi::Value Listen(const Napi::CallbackInfo& info);

  explicit PipeServer(const Napi::CallbackInfo& info);
  ~PipeServer() override;

  void CloseForTeardown() override;

 private:
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value JsRef(const Napi::CallbackInfo& info);
  Napi::Value JsUnref(const Napi::CallbackInfo& info);

  HANDLE CreateInstance(bool first, DWORD* err);
  void AcceptThread(HANDLE first);
  void NotifyLocked();
  void Deliver(Napi::Env env);
  void Stop();
  static void CallJs(napi_env env, napi_value, void* context, void*);
  static void TsfnFinalize(napi_env env, void* data, void* hint);

  std::shared_ptr<LoopTracker> tracker_;
  std::wstring wname_;
  std::string address_;
  OwnerOnlySecurity security_;  // for every instance: must outlive them all

  HANDLE stop_ = nullptr;  // manual-reset: tells the accept thread to finish
  std::thread thread_;
  Napi::FunctionReference on_connection_, on_error_;
  napi_threadsafe_function tsfn_ = nullptr;  // also read by the accept thread, under mu_
  bool refd_ = true;
  bool pinned_ = false;
  bool closed_ = false;

  std::mutex mu_;
  std::deque<HANDLE> accepted_;  // connected instances not yet handed to JS
  std::vector<ErrorInfo> errors_;
  bool notify_pending_ = false;
};

}  // namespace win
}  // namespace ipcwire

#endif  // IPCWIRE_WIN_PIPE_SERVER_H_
