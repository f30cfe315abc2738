// The Windows transport behind transport.h: named pipes (\\.\pipe\<name>). The TS layer maps bare names to
// that form; here every address is already a full pipe name.
#include "../transport.h"

#include <windows.h>

#include "../addon.h"
#include "../errors.h"
#include "pipe_connection.h"
#include "pipe_server.h"
#include "win_errors.h"

namespace ipcwire {
namespace transport {

void Init(Napi::Env env, Addon* addon) {
  addon->connection_ctor = Napi::Persistent(win::PipeConnection::Define(env));
  addon->server_ctor = Napi::Persistent(win::PipeServer::Define(env));
}

Napi::Value Listen(const Napi::CallbackInfo& info) { return win::PipeServer::Listen(info); }

Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "connect(address, timeoutMs): address must be a string");
  const std::string address = info[0].As<Napi::String>().Utf8Value();
  const double timeout_ms = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 0;
  const std::wstring name = win::Widen(address);
  if (name.empty()) ThrowError(env, win::Win32Error(ERROR_INVALID_NAME, "connect", address));
  if (name.size() > MaxPathLength()) {
    // Windows would only answer ENOENT: say what is wrong, as listen does.
    ThrowError(env, ErrorInfo::Ipc(codes::kPathTooLong, "Pipe name is " + std::to_string(name.size()) +
                                                           " characters, longer than the 256 Windows allows: " +
                                                           address)
                        .At(address));
  }
  const ULONGLONG deadline = GetTickCount64() + static_cast<ULONGLONG>(timeout_ms > 0 ? timeout_ms : 0);
  for (;;) {
    // SECURITY_IDENTIFICATION: the server may learn who we are, never act as us.
    HANDLE h = CreateFileW(name.c_str(), GENERIC_READ | GENERIC_WRITE, 0, nullptr, OPEN_EXISTING,
                           FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION, nullptr);
    if (h != INVALID_HANDLE_VALUE) return win::PipeConnection::NewInstance(env, h, false, address);
    DWORD err = GetLastError();
    ULONGLONG now = GetTickCount64();
    if (err != ERROR_PIPE_BUSY || now >= deadline) ThrowError(env, win::Win32Error(err, "connect", address));
    // Every instance is taken (the server is between instances). WaitNamedPipeW's own answer is not
    // trusted (under wine it fails with error 676 when the server recycles its last instance): wait, then
    // retry CreateFileW until the deadline.
    DWORD wait = static_cast<DWORD>(deadline - now < 50 ? deadline - now : 50);
    ULONGLONG before = GetTickCount64();
    if (!WaitNamedPipeW(name.c_str(), wait) && GetTickCount64() - before < 2) Sleep(wait < 5 ? wait : 5);
  }
}

Napi::Value RemoveStale(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), false);  // a named pipe goes with its server: nothing is left behind
}

// Handle passing over named pipes is not implemented yet on Windows.
Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  throw Napi::Error::New(info.Env(), "socketpair() is not available on Windows yet");
}
Napi::Value AdoptConnection(const Napi::CallbackInfo& info) {
  throw Napi::Error::New(info.Env(), "adoptConnection() is not available on Windows yet");
}
Napi::Value CloseHandle(const Napi::CallbackInfo& info) {
  throw Napi::Error::New(info.Env(), "closeHandle() is not available on Windows yet");
}

bool SyncReplyBlobs() { return false; }  // its call() returns the reply frame only
uint32_t MaxPathLength() { return 256; }  // characters of a pipe name, "\\.\pipe\" included

}  // namespace transport
}  // namespace ipcwire
