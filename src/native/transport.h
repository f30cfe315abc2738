// What a platform transport provides to addon.cc. The Unix implementation lives in unix/ (uv_poll on
// AF_UNIX sockets); a Windows one (named pipes) would live in win/ and implement the same functions.
#ifndef IPCWIRE_TRANSPORT_H_
#define IPCWIRE_TRANSPORT_H_

#include <napi.h>

#include <cstdint>

namespace ipcwire {

class Addon;

namespace transport {

// Define the JS classes (Connection, Server) and store their constructors in `addon`.
void Init(Napi::Env env, Addon* addon);
// listen(address, backlog, mode, onConnection, onError) -> Server
Napi::Value Listen(const Napi::CallbackInfo& info);
// connect(address, timeoutMs) -> Connection (not started)
Napi::Value Connect(const Napi::CallbackInfo& info);
// removeStale(socketPath) -> boolean: removes a dead server's socket file and lock file (only when no live
// server holds the lock; never a file that is not a socket). Always false where addresses have no files.
Napi::Value RemoveStale(const Napi::CallbackInfo& info);
// socketpair() -> [a, b]: two connected stream sockets (close-on-exec), for adoptConnection or to hand on.
Napi::Value SocketPair(const Napi::CallbackInfo& info);
// adoptConnection(fd) -> Connection (not started): wraps a connected descriptor; ownership passes, also when
// this throws.
Napi::Value AdoptConnection(const Napi::CallbackInfo& info);
// closeHandle(fd): closes a descriptor JS owns (one from socketpair() or takeHandles()).
Napi::Value CloseHandle(const Napi::CallbackInfo& info);
// Longest address in bytes.
uint32_t MaxPathLength();
// Whether a blocking call() returns the BLOB frames read right before its reply (then [reply, ...blobs]).
bool SyncReplyBlobs();

}  // namespace transport
}  // namespace ipcwire

#endif  // IPCWIRE_TRANSPORT_H_
