#include "win_errors.h"

#include <cstring>

namespace ipcwire {
namespace win {

int UvCodeFor(DWORD err, const char* syscall) {
  const bool listen = syscall != nullptr && strcmp(syscall, "listen") == 0;
  const bool write = syscall != nullptr && strcmp(syscall, "write") == 0;
  switch (err) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
      return -4058;  // ENOENT
    case ERROR_ACCESS_DENIED:
    case ERROR_PIPE_BUSY:
      // FILE_FLAG_FIRST_PIPE_INSTANCE refused (another server owns the name), or every instance busy.
      if (listen) return -4091;  // EADDRINUSE
      return err == ERROR_PIPE_BUSY ? -4088 /* EAGAIN: the Windows form of a full listen queue */
                                    : -4092 /* EACCES */;
    case ERROR_SEM_TIMEOUT:
      return -4039;  // ETIMEDOUT
    case ERROR_BROKEN_PIPE:
    case ERROR_PIPE_NOT_CONNECTED:
    case ERROR_NO_DATA:
    case ERROR_NETNAME_DELETED:
      return write ? -4047 /* EPIPE */ : -4077 /* ECONNRESET */;
    case ERROR_INVALID_NAME:
    case ERROR_BAD_PATHNAME:
    case ERROR_INVALID_PARAMETER:
      return -4071;  // EINVAL
    case ERROR_FILENAME_EXCED_RANGE:
      return -4064;  // ENAMETOOLONG
    case ERROR_TOO_MANY_OPEN_FILES:
    case ERROR_NO_SYSTEM_RESOURCES:
      return -4066;  // EMFILE
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
      return -4057;  // ENOMEM
    case ERROR_BAD_NETPATH:
    case ERROR_NETWORK_ACCESS_DENIED:
      return -4078;  // ECONNREFUSED (PIPE_REJECT_REMOTE_CLIENTS)
    case ERROR_OPERATION_ABORTED:
      return -4081;  // ECANCELED
    default:
      return -4070;  // EIO
  }
}

ErrorInfo Win32Error(DWORD err, const char* syscall, std::string address) {
  return ErrorInfo::System(UvCodeFor(err, syscall), syscall, std::move(address)).With("winerror", err);
}

std::wstring Widen(const std::string& utf8) {
  if (utf8.empty()) return std::wstring();
  const int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, utf8.data(), static_cast<int>(utf8.size()),
                                    nullptr, 0);
  if (n <= 0) return std::wstring();
  std::wstring out(static_cast<size_t>(n), L'\0');
  MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, utf8.data(), static_cast<int>(utf8.size()), &out[0], n);
  return out;
}

}  // namespace win
}  // namespace ipcwire
