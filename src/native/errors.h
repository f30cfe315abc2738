// The one place errors are made. An ErrorInfo describes an error as plain data (it can be recorded on a
// libuv callback or inside a blocking call and turned into a JS Error later, when JS may run).
#ifndef IPCWIRE_ERRORS_H_
#define IPCWIRE_ERRORS_H_

#include <napi.h>

#include <string>
#include <utility>
#include <vector>

namespace ipcwire {

struct ErrorInfo {
  enum class Type { kNone, kSystem, kIpc };
  Type type = Type::kNone;
  int errnum = 0;        // kSystem: positive errno
  std::string syscall;   // kSystem
  std::string address;   // both (optional)
  std::string code;      // kIpc: ERR_IPC_*
  std::string message;   // kIpc
  std::vector<std::pair<std::string, double>> numbers;  // extra numeric properties

  static ErrorInfo System(int errnum, const char* syscall, std::string address = std::string());
  static ErrorInfo Ipc(const char* code, std::string message);
  ErrorInfo&& With(const char* key, double value) && {
    numbers.emplace_back(key, value);
    return std::move(*this);
  }
  ErrorInfo&& At(std::string addr) && {
    address = std::move(addr);
    return std::move(*this);
  }
  explicit operator bool() const { return type != Type::kNone; }
};

// Error codes of the library's own errors.
namespace codes {
constexpr const char* kDisconnected = "ERR_IPC_DISCONNECTED";
constexpr const char* kTimeout = "ERR_IPC_TIMEOUT";
constexpr const char* kInterrupted = "ERR_IPC_INTERRUPTED";
constexpr const char* kFrameTooLarge = "ERR_IPC_FRAME_TOO_LARGE";
constexpr const char* kBadFrame = "ERR_IPC_BAD_FRAME";
constexpr const char* kTruncated = "ERR_IPC_TRUNCATED";
constexpr const char* kPathTooLong = "ERR_IPC_PATH_TOO_LONG";
constexpr const char* kBusy = "ERR_IPC_BUSY";
}  // namespace codes

// The close reason when the peer's end of the stream arrives: a clean close (none) unless `held` bytes of an
// unfinished frame were received, which the peer cut off (it crashed, or wrote part of a frame and closed).
ErrorInfo EndOfStream(size_t held);

// Builds the JS Error. System errors are Node-shaped: code ('ECONNREFUSED'), errno (negative libuv code),
// syscall, address, and Node's message ("connect ENOENT /path", "listen EADDRINUSE: address already in
// use /path"). ERR_IPC_* errors come from the JS factory given to setErrorFactory (a plain Error with
// .code before that). Returns an empty value only if no error can be made (the environment is
// terminating).
Napi::Value MakeError(Napi::Env env, const ErrorInfo& info);

// Throws (as a C++ Napi::Error, turned into a JS exception by node-addon-api).
[[noreturn]] void ThrowError(Napi::Env env, const ErrorInfo& info);

}  // namespace ipcwire

#endif  // IPCWIRE_ERRORS_H_
