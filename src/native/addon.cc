#include "addon.h"

#include <cstdlib>
#include <cstring>
#include <vector>

#include "errors.h"
#include "shm_napi.h"
#include "transport.h"

namespace ipcwire {

Addon::Addon(Napi::Env env, Napi::Object exports) : tracker_(std::make_shared<LoopTracker>()) {
  uv_loop_t* loop = nullptr;
  NAPI_THROW_IF_FAILED_VOID(env, napi_get_uv_event_loop(env, &loop));
  tracker_->loop = loop;
  // One async cleanup hook per environment: it closes what JS left open, without calling into JS, and
  // holds teardown until the handles' close callbacks ran.
  NAPI_THROW_IF_FAILED_VOID(env, napi_add_async_cleanup_hook(env, OnTeardown, this, &cleanup_handle_));
  const char* copy = getenv("IPCWIRE_COPY_BUFFERS");
  if (copy != nullptr && strcmp(copy, "1") == 0) buffer_mode = BufferMode::kCopy;
  if (copy != nullptr && strcmp(copy, "sandbox") == 0) buffer_mode = BufferMode::kSimulateSandbox;
  transport::Init(env, this);
  DefineAddon(exports, {
                           InstanceMethod("listen", &Addon::Listen, napi_enumerable),
                           InstanceMethod("connect", &Addon::Connect, napi_enumerable),
                           InstanceMethod("removeStale", &Addon::RemoveStale, napi_enumerable),
                           InstanceMethod("socketpair", &Addon::SocketPair, napi_enumerable),
                           InstanceMethod("adoptConnection", &Addon::AdoptConnection, napi_enumerable),
                           InstanceMethod("closeHandle", &Addon::CloseHandle, napi_enumerable),
                           InstanceMethod("setErrorFactory", &Addon::SetErrorFactory, napi_enumerable),
                           InstanceAccessor("maxPathLength", &Addon::GetMaxPathLength, nullptr, napi_enumerable),
                           InstanceAccessor("syncReplyBlobs", &Addon::GetSyncReplyBlobs, nullptr, napi_enumerable),
                           InstanceAccessor("bufferMode", &Addon::GetBufferMode, nullptr, napi_enumerable),
                       });
  InitShm(env, exports);
}

Addon::~Addon() {
  // Normally the hook already ran (teardown); removing it here covers an addon dropped earlier.
  if (cleanup_handle_ != nullptr && !tracker_->tearing_down) napi_remove_async_cleanup_hook(cleanup_handle_);
}

void Addon::OnTeardown(napi_async_cleanup_hook_handle handle, void* arg) {
  auto* self = static_cast<Addon*>(arg);
  std::shared_ptr<LoopTracker> tracker = self->tracker_;
  tracker->tearing_down = true;
  tracker->teardown_hook = handle;
  self->cleanup_handle_ = nullptr;
  // Closing removes each resource from the set: iterate over a copy.
  std::vector<Resource*> open(tracker->resources.begin(), tracker->resources.end());
  for (Resource* r : open) r->CloseForTeardown();
  tracker->MaybeFinishTeardown();
}

Napi::Value Addon::SetErrorFactory(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "setErrorFactory expects a function");
  error_factory = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Value Addon::Listen(const Napi::CallbackInfo& info) { return transport::Listen(info); }

Napi::Value Addon::Connect(const Napi::CallbackInfo& info) { return transport::Connect(info); }

Napi::Value Addon::RemoveStale(const Napi::CallbackInfo& info) { return transport::RemoveStale(info); }

Napi::Value Addon::SocketPair(const Napi::CallbackInfo& info) { return transport::SocketPair(info); }

Napi::Value Addon::AdoptConnection(const Napi::CallbackInfo& info) { return transport::AdoptConnection(info); }

Napi::Value Addon::CloseHandle(const Napi::CallbackInfo& info) { return transport::CloseHandle(info); }

Napi::Value Addon::GetSyncReplyBlobs(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), transport::SyncReplyBlobs());
}

Napi::Value Addon::GetBufferMode(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), buffer_mode == BufferMode::kCopy ? "copy" : "external");
}

Napi::Value Addon::NewBuffer(Napi::Env env, uint8_t* data, size_t length, napi_finalize finalize, void* hint) {
  napi_value value;
  napi_status s = napi_ok;
  if (buffer_mode != BufferMode::kCopy) {
    s = buffer_mode == BufferMode::kSimulateSandbox
            ? static_cast<napi_status>(Napi::details::napi_no_external_buffers_allowed)
            : napi_create_external_buffer(env, length, data, finalize, hint, &value);
    if (s == napi_ok) return Napi::Value(env, value);
    // Every later attempt in this environment would be refused as well.
    if (s == static_cast<napi_status>(Napi::details::napi_no_external_buffers_allowed)) buffer_mode = BufferMode::kCopy;
  }
  Napi::Value copy;
  if (buffer_mode == BufferMode::kCopy) copy = Napi::Buffer<uint8_t>::Copy(env, data, length);
  finalize(env, data, hint);
  if (copy.IsEmpty()) NAPI_THROW_IF_FAILED(env, s, Napi::Value());
  return copy;
}

Napi::Value Addon::GetMaxPathLength(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), transport::MaxPathLength());
}

void CallIntoJs(napi_env env, napi_async_context context, napi_value recv, napi_value fn, size_t argc,
                const napi_value* argv) {
  napi_value result;
  if (napi_make_callback(env, context, recv, fn, argc, argv, &result) == napi_ok) return;
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) return;  // the environment is terminating: nothing to report
  napi_value exception;
  if (napi_get_and_clear_last_exception(env, &exception) == napi_ok) napi_fatal_exception(env, exception);
}

}  // namespace ipcwire

// The macro pastes the class name into an identifier: it needs an unqualified name.
using IpcwireAddon = ipcwire::Addon;
NODE_API_ADDON(IpcwireAddon)
