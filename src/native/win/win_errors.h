// Win32 error codes → the Node-shaped system errors of errors.h. ErrorInfo::System gets libuv's (negative)
// code directly, which uv_translate_sys_error passes through, because the mapping depends on the call:
// libuv's own table says EPERM for ERROR_ACCESS_DENIED, where a pipe server whose name is taken must say
// EADDRINUSE (as uv_pipe_bind does) and a refused client EACCES.
#ifndef IPCWIRE_WIN_ERRORS_H_
#define IPCWIRE_WIN_ERRORS_H_

#include <windows.h>

#include <string>

#include "../errors.h"

namespace ipcwire {
namespace win {

/** libuv's code on Windows (UV_ENOENT = -4058, …) for a Win32 error met in `syscall`. */
int UvCodeFor(DWORD err, const char* syscall);

/** The error to report: code/errno as node:net has them, plus `winerror` (the Win32 number) for bug reports. */
ErrorInfo Win32Error(DWORD err, const char* syscall, std::string address = std::string());

/** UTF-8 → UTF-16 for the W APIs; empty on invalid UTF-8. */
std::wstring Widen(const std::string& utf8);

}  // namespace win
}  // namespace ipcwire

#endif  // IPCWIRE_WIN_ERRORS_H_
