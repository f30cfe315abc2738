// Per-environment state of the addon. Every worker thread (and the main thread) loads its own instance;
// nothing here is static.
#ifndef IPCWIRE_ADDON_H_
#define IPCWIRE_ADDON_H_

#include <napi.h>
#include <uv.h>

#include <memory>
#include <unordered_set>
#include <vector>

namespace ipcwire {

namespace shm {
class Mapping;
}

// Anything that owns an OS resource and libuv handles. Closed without calling into JS when the
// environment is torn down.
class Resource {
 public:
  virtual ~Resource() = default;
  virtual void CloseForTeardown() = 0;
};

// Outlives the Addon and every Resource (shared ownership): libuv close callbacks and ObjectWrap
// finalizers run in an order we do not control at teardown, so they only touch this, never the Addon.
struct LoopTracker {
  uv_loop_t* loop = nullptr;
  int open_handles = 0;
  bool tearing_down = false;
  // Set while teardown waits for our handles' close callbacks (napi_add_async_cleanup_hook): Node keeps
  // running the loop until it is removed, so no handle outlives the loop (a worker's loop is closed with
  // CheckedUvLoopClose, which aborts on open handles).
  napi_async_cleanup_hook_handle teardown_hook = nullptr;
  std::unordered_set<Resource*> resources;

  void HandleOpened() { ++open_handles; }
  void HandleClosed() {
    if (--open_handles == 0) MaybeFinishTeardown();
  }
  void MaybeFinishTeardown() {
    if (open_handles == 0 && teardown_hook != nullptr) {
      napi_async_cleanup_hook_handle h = teardown_hook;
      teardown_hook = nullptr;
      napi_remove_async_cleanup_hook(h);
    }
  }
};

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports);
  ~Addon();

  static Addon* Get(Napi::Env env) { return env.GetInstanceData<Addon>(); }

  const std::shared_ptr<LoopTracker>& tracker() const { return tracker_; }
  uv_loop_t* loop() const { return tracker_->loop; }
  bool tearing_down() const { return tracker_->tearing_down; }

  // ERR_IPC_* errors are made by this JS function once setErrorFactory() ran.
  Napi::FunctionReference error_factory;
  // Constructors of the transport's JS classes (set by the transport's Init).
  Napi::FunctionReference connection_ctor;
  Napi::FunctionReference server_ctor;
  // Set by the transport just around `new Connection()/new Server()` from C++: the constructors take
  // their native arguments from here (JS cannot construct them). An External would do, but each one
  // leaves a finalizer record behind until GC, which LeakSanitizer reports at exit.
  void* construct_args = nullptr;

  // Large received frames reach JS as external Buffers over their receive block (no copy) unless this
  // environment cannot have them: Electron's V8 sandbox refuses them (napi_no_external_buffers_allowed), and
  // the first refusal switches this environment to copying for good. IPCWIRE_COPY_BUFFERS=1 forces copying
  // from the start; IPCWIRE_COPY_BUFFERS=sandbox makes every external Buffer fail as in the sandbox, so that
  // the detection itself can be tested on Node.
  enum class BufferMode { kExternal, kSimulateSandbox, kCopy };
  BufferMode buffer_mode = BufferMode::kExternal;
  // An external Buffer over `data` (released by `finalize(env, data, hint)` once JS drops it), or, where the
  // environment refuses external Buffers, an ordinary Buffer holding a copy (then `finalize` runs at once).
  Napi::Value NewBuffer(Napi::Env env, uint8_t* data, size_t length, napi_finalize finalize, void* hint);

  // The peers' segments mapped in this environment, for releaseShared() to tell a view of one of their blocks
  // (which it may detach) from any other Buffer (which it must not). Expired entries are dropped as found.
  std::vector<std::weak_ptr<shm::Mapping>> peer_mappings;

 private:
  static void OnTeardown(napi_async_cleanup_hook_handle handle, void* arg);

  Napi::Value SetErrorFactory(const Napi::CallbackInfo& info);
  Napi::Value Listen(const Napi::CallbackInfo& info);
  Napi::Value Connect(const Napi::CallbackInfo& info);
  Napi::Value RemoveStale(const Napi::CallbackInfo& info);
  Napi::Value SocketPair(const Napi::CallbackInfo& info);
  Napi::Value AdoptConnection(const Napi::CallbackInfo& info);
  Napi::Value CloseHandle(const Napi::CallbackInfo& info);
  Napi::Value GetMaxPathLength(const Napi::CallbackInfo& info);
  Napi::Value GetSyncReplyBlobs(const Napi::CallbackInfo& info);
  Napi::Value GetBufferMode(const Napi::CallbackInfo& info);

  std::shared_ptr<LoopTracker> tracker_;
  napi_async_cleanup_hook_handle cleanup_handle_ = nullptr;
};

// Calls a JS callback from a libuv callback: napi_make_callback with the resource's async context, so
// promise jobs and nextTicks queued by the callback run when it returns. An exception thrown by the
// callback becomes an 'uncaughtException', as for any Node event callback. Needs an open HandleScope.
void CallIntoJs(napi_env env, napi_async_context context, napi_value recv, napi_value fn, size_t argc,
                const napi_value* argv);

}  // namespace ipcwire

#endif  // IPCWIRE_ADDON_H_
