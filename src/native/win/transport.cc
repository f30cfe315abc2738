// The Windows transport behind transport.h: named pipes (\\.\pipe\<name>). The TS layer maps bare names to
// that form; here every address is already a full pipe name.
#include "../transport.h"

#include <windows.h>
#include <ntsecapi.h>  // RtlGenRandom

#include <cmath>
#include <cstring>
#include <string>

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

namespace {

HANDLE ToHandle(const Napi::CallbackInfo& info) {
  double d = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  if (!(d > 0 && d <= 0xFFFFFFFF) || d != std::floor(d)) {
    throw Napi::TypeError::New(info.Env(), "a handle must be a positive integer");
  }
  return reinterpret_cast<HANDLE>(static_cast<uintptr_t>(d));
}

// Whether a handle was opened for synchronous I/O (no FILE_FLAG_OVERLAPPED): the connection's I/O thread would
// block in its first ReadFile and never write again. Asked of ntdll (FileModeInformation); where that cannot be
// asked, the handle is taken as it is.
bool OpenedForSynchronousIo(HANDLE h) {
  struct IoStatus {
    union {
      LONG status;
      void* pointer;
    };
    ULONG_PTR information;
  };
  using QueryFn = LONG(WINAPI*)(HANDLE, IoStatus*, void*, ULONG, int);
  HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
  auto query = ntdll ? reinterpret_cast<QueryFn>(reinterpret_cast<void*>(GetProcAddress(ntdll, "NtQueryInformationFile")))
                     : nullptr;
  if (query == nullptr) return false;
  constexpr int kFileModeInformation = 16;
  constexpr ULONG kSynchronousIo = 0x10 | 0x20;  // FILE_SYNCHRONOUS_IO_ALERT | FILE_SYNCHRONOUS_IO_NONALERT
  IoStatus io;
  ULONG mode = 0;
  if (query(h, &io, &mode, sizeof mode, kFileModeInformation) < 0) return false;
  return (mode & kSynchronousIo) != 0;
}

constexpr int kUvEbadf = -4083;     // libuv's EBADF on Windows
constexpr int kUvEinval = -4071;    // libuv's EINVAL on Windows
constexpr int kUvEnotsock = -4050;  // libuv's ENOTSOCK on Windows

// A pipe instance that one CreateFileW of ours connects to: a random name no one can guess in time, one
// instance only, owner-only DACL, local clients only. Returns false with *err to retry on a name clash.
bool ConnectedPipePair(SECURITY_ATTRIBUTES* sa, HANDLE* server, HANDLE* client, DWORD* err) {
  unsigned char rnd[16];
  if (!RtlGenRandom(rnd, sizeof rnd)) {
    *err = GetLastError();
    return false;
  }
  std::wstring text = L"\\\\.\\pipe\\ipcwire-pair-" + std::to_wstring(GetCurrentProcessId()) + L"-";
  for (unsigned char b : rnd) {
    text += L"0123456789abcdef"[b >> 4];
    text += L"0123456789abcdef"[b & 15];
  }
  const wchar_t* name = text.c_str();
  *server = CreateNamedPipeW(name, PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
                             PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS, 1,
                             win::kPipeBuffer, win::kPipeBuffer, 0, sa);
  if (*server == INVALID_HANDLE_VALUE) {
    *err = GetLastError();
    return false;
  }
  *client = CreateFileW(name, GENERIC_READ | GENERIC_WRITE, 0, sa, OPEN_EXISTING,
                        FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION, nullptr);
  if (*client == INVALID_HANDLE_VALUE) {
    *err = GetLastError();
    ::CloseHandle(*server);
    return false;
  }
  // Connected already (ConnectNamedPipe says ERROR_PIPE_CONNECTED). Check that the two ends are each
  // other's: a process that raced us to the name would show up as the other end's process.
  OVERLAPPED ov;
  memset(&ov, 0, sizeof ov);
  ov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  BOOL connected = ov.hEvent != nullptr && ConnectNamedPipe(*server, &ov);
  *err = connected ? 0 : GetLastError();
  if (!connected && *err == ERROR_IO_PENDING) {  // not ours after all: someone else's instance
    CancelIoEx(*server, &ov);
    DWORD ignored;
    GetOverlappedResult(*server, &ov, &ignored, TRUE);
  }
  if (ov.hEvent != nullptr) ::CloseHandle(ov.hEvent);
  ULONG client_pid = 0, server_pid = 0;
  bool ours = (connected || *err == ERROR_PIPE_CONNECTED) && GetNamedPipeClientProcessId(*server, &client_pid) &&
              GetNamedPipeServerProcessId(*client, &server_pid) && client_pid == GetCurrentProcessId() &&
              server_pid == GetCurrentProcessId();
  if (!ours) {
    ::CloseHandle(*client);
    ::CloseHandle(*server);
    *err = ERROR_PIPE_BUSY;
    return false;
  }
  return true;
}

}  // namespace

Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  win::OwnerOnlySecurity security;
  DWORD err = 0;
  if (!security.Build(&err)) ThrowError(env, win::Win32Error(err, "socketpair"));
  // Not inheritable: a child process gets an end only by being sent one.
  security.attributes()->bInheritHandle = FALSE;
  HANDLE server = INVALID_HANDLE_VALUE, client = INVALID_HANDLE_VALUE;
  for (int attempt = 0;; attempt++) {
    if (ConnectedPipePair(security.attributes(), &server, &client, &err)) break;
    // A clash on a random name is as good as impossible; retry a few times, then report it.
    if ((err != ERROR_PIPE_BUSY && err != ERROR_ACCESS_DENIED) || attempt == 4) {
      ThrowError(env, win::Win32Error(err, "socketpair"));
    }
  }
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, static_cast<double>(reinterpret_cast<uintptr_t>(server))));
  out.Set(1u, Napi::Number::New(env, static_cast<double>(reinterpret_cast<uintptr_t>(client))));
  return out;
}

Napi::Value AdoptConnection(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HANDLE h = ToHandle(info);
  // Ownership passed with the call: whatever happens, the handle is ours to close.
  DWORD type = GetFileType(h);
  if (type != FILE_TYPE_PIPE) {
    DWORD err = GetLastError();
    if (type == FILE_TYPE_UNKNOWN && err == ERROR_INVALID_HANDLE) {
      ThrowError(env, ErrorInfo::System(kUvEbadf, "adoptConnection"));
    }
    ::CloseHandle(h);
    ThrowError(env, ErrorInfo::System(kUvEnotsock, "adoptConnection"));
  }
  if (OpenedForSynchronousIo(h)) {
    // An anonymous pipe, or a named pipe opened without FILE_FLAG_OVERLAPPED.
    ::CloseHandle(h);
    ThrowError(env, ErrorInfo::System(kUvEinval, "adoptConnection"));
  }
  DWORD flags = 0;
  if (!GetNamedPipeInfo(h, &flags, nullptr, nullptr, nullptr)) flags = 0;
  return win::PipeConnection::NewInstance(env, h, (flags & PIPE_SERVER_END) != 0, std::string(), true);
}

Napi::Value CloseHandle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HANDLE h = ToHandle(info);
  if (!::CloseHandle(h)) ThrowError(env, ErrorInfo::System(kUvEbadf, "close"));
  return env.Undefined();
}

bool SyncReplyBlobs() { return false; }  // its call() returns the reply frame only
uint32_t MaxPathLength() { return 256; }  // characters of a pipe name, "\\.\pipe\" included

}  // namespace transport
}  // namespace ipcwire
