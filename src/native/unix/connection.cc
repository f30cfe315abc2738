#include "connection.h"

#include "../block_pool.h"
#include "../warm_heap.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

namespace ipcwire {

namespace {

constexpr uint8_t kKindSync = 4;
constexpr uint8_t kKindSyncReply = 5;
constexpr uint8_t kKindBlob = 8;
constexpr uint8_t kKindHandles = 10;
// The descriptor count of a HANDLES frame held whole (header included): its id.
size_t HeldHandleCount(const Block& b) { return ReadU32LE(b.data() + 5); }
constexpr uint8_t kKindShm = 13;      // Kind.SHM: the peer's shared-memory segment (its descriptor came with it)
constexpr uint8_t kKindShmBlob = 14;  // Kind.SHM_BLOB: a large byte array in that segment, in place of a BLOB
// Fairness: one readable event reads at most this much of small frames (or one large frame).
constexpr size_t kReadBudget = 1024 * 1024;
// Frames up to this size reach JS as ordinary (copied) Buffers; larger ones as external Buffers, no copy.
constexpr size_t kCopyToJsThreshold = 64 * 1024;
// sendSync replies up to this size are copied too (see Call()).
constexpr size_t kCopyReplyThreshold = 16 * 1024 * 1024;
// Inside call(), check the clock and alive() at least this often even while data keeps arriving.
constexpr size_t kCallReadBudget = 4 * 1024 * 1024;
// Small frames are coalesced into Buffers of up to this size.
constexpr size_t kCoalesceMax = 1024 * 1024;
// Below glibc's mmap threshold (128 KiB): a fresh mmap per Buffer would page-fault on every message.
constexpr size_t kCoalesceReserve = 60 * 1024;
// A payload remainder smaller than this is copied when queued; a bigger one is kept by reference.
constexpr size_t kCopyThreshold = 64 * 1024;
// Blocking waits are cut into slices so that worker termination / process.exit are noticed.
constexpr double kSliceMs = 20;
// On close, unread input up to this much is discarded first so the peer sees EOF, not ECONNRESET.
constexpr size_t kCloseDrainBytes = 256 * 1024;
constexpr int kMaxIov = 64;

struct InitArgs {
  int fd;
  sys::Credentials creds;
  bool taken;
};

struct ExternalBlock {
  uint8_t* base;
  size_t size;
};

void FreeExternal(napi_env env, void* /*data*/, void* hint) {
  auto* ext = static_cast<ExternalBlock*>(hint);
  BlockPool::Shared().Release(ext->base, ext->size);
  delete ext;
}

// Bytes of a Uint8Array / Buffer / any TypedArray / DataView / ArrayBuffer; null/undefined = empty.
void GetBytes(Napi::Env env, const Napi::Value& v, const uint8_t** data, size_t* len) {
  *data = nullptr;
  *len = 0;
  if (v.IsUndefined() || v.IsNull()) return;
  void* p = nullptr;
  if (v.IsTypedArray()) {
    napi_typedarray_type type;
    size_t length;
    napi_value ab;
    size_t offset;
    NAPI_THROW_IF_FAILED_VOID(env, napi_get_typedarray_info(env, v, &type, &length, &p, &ab, &offset));
    *len = length * v.As<Napi::TypedArray>().ElementSize();
  } else if (v.IsDataView()) {
    size_t length;
    napi_value ab;
    size_t offset;
    NAPI_THROW_IF_FAILED_VOID(env, napi_get_dataview_info(env, v, &length, &p, &ab, &offset));
    *len = length;
  } else if (v.IsArrayBuffer()) {
    size_t length;
    NAPI_THROW_IF_FAILED_VOID(env, napi_get_arraybuffer_info(env, v, &p, &length));
    *len = length;
  } else {
    throw Napi::TypeError::New(env, "payload must be a Uint8Array or null");
  }
  *data = static_cast<const uint8_t*>(p);
}

uint32_t ToU32(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string(what) + " must be a number");
  return v.As<Napi::Number>().Uint32Value();
}

double ToDouble(const Napi::Value& v, double fallback) {
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
}

void DiscardInputAndClose(int fd) {
  if (fd < 0) return;
  uint8_t buf[16384];
  size_t total = 0;
  while (total < kCloseDrainBytes) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    total += static_cast<size_t>(n);
  }
  sys::CloseFd(fd);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Construction / destruction

Napi::Function Connection::Define(Napi::Env env) {
  return DefineClass(env, "Connection",
                     {
                         InstanceMethod("start", &Connection::Start),
                         InstanceMethod("write", &Connection::Write),
                         InstanceMethod("writeFrames", &Connection::WriteFrames),
                         InstanceMethod("writeHandles", &Connection::WriteHandles),
                         InstanceMethod("takeHandles", &Connection::TakeHandles),
                         InstanceMethod("call", &Connection::Call),
                         InstanceMethod("flush", &Connection::Flush),
                         InstanceMethod("ref", &Connection::Ref),
                         InstanceMethod("unref", &Connection::Unref),
                         InstanceMethod("close", &Connection::Close),
                         InstanceMethod("end", &Connection::End),
                         InstanceAccessor("bufferedAmount", &Connection::GetBufferedAmount, nullptr),
                         InstanceAccessor("credentials", &Connection::GetCredentials, nullptr),
                         InstanceAccessor("maxFrameSize", &Connection::GetMaxFrameSize,
                                          &Connection::SetMaxFrameSize),
                     });
}

Napi::Object Connection::NewInstance(Napi::Env env, int fd, const sys::Credentials& creds) {
  InitArgs args{fd, creds, false};
  Addon* addon = Addon::Get(env);
  addon->construct_args = &args;
  try {
    Napi::Object obj = addon->connection_ctor.New({});
    addon->construct_args = nullptr;
    if (!args.taken) sys::CloseFd(fd);
    return obj;
  } catch (...) {
    addon->construct_args = nullptr;
    if (!args.taken) sys::CloseFd(fd);
    throw;
  }
}

Connection::Connection(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Connection>(info), env_(info.Env()) {
  Addon* addon = Addon::Get(env_);
  auto* init = static_cast<InitArgs*>(addon->construct_args);
  addon->construct_args = nullptr;
  if (init == nullptr) throw Napi::TypeError::New(env_, "Connection objects come from listen() and connect()");
  auto* h = new ConnHandles();
  int r = uv_poll_init(addon->loop(), &h->poll, init->fd);
  if (r != 0) {
    delete h;
    ThrowError(env_, ErrorInfo::System(-r, "uv_poll_init"));
  }
  uv_timer_init(addon->loop(), &h->timer);
  init->taken = true;
  fd_ = init->fd;
  creds_ = init->creds;
  tracker_ = addon->tracker();
  h->poll.data = h;
  h->timer.data = h;
  h->owner = this;
  h->fd = fd_;
  h->tracker = tracker_;
  h->open = 2;
  tracker_->HandleOpened();
  tracker_->HandleOpened();
  handles_ = h;
  tracker_->resources.insert(this);
  UpdateRef();
}

Connection::~Connection() {
  if (tracker_) tracker_->resources.erase(this);
  CloseReceived();
  if (handles_ != nullptr) {
    // Only reachable when the JS object was collected without close(): close the handles; their
    // callbacks must not see this object any more.
    handles_->owner = nullptr;
    if (!closed_) {
      closed_ = true;
      CloseHandlesAndSocket();
    }
    handles_ = nullptr;
  }
}

void Connection::CloseForTeardown() {
  // No JS from here on: OnClosed sees tracker_->tearing_down.
  FinishClose(ErrorInfo());
}

// ---------------------------------------------------------------------------------------------------
// JS methods

Napi::Value Connection::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (started_) throw Napi::Error::New(env, "Connection already started");
  if (closed_) ThrowError(env, ErrorInfo::Ipc(codes::kDisconnected, "The connection is closed"));
  if (!info[0].IsFunction() || !info[1].IsFunction() || !info[2].IsFunction())
    throw Napi::TypeError::New(env, "start(onFrames, onClose, onDrain) expects three functions");
  on_frames_ = Napi::Persistent(info[0].As<Napi::Function>());
  on_close_ = Napi::Persistent(info[1].As<Napi::Function>());
  on_drain_ = Napi::Persistent(info[2].As<Napi::Function>());
  async_context_ = std::make_unique<Napi::AsyncContext>(env, "ipcwire:Connection", Value());
  started_ = true;
  UpdatePoll();
  UpdatePin();
  if (!pending_.empty() || drain_pending_ || peer_gone_) ScheduleDeferred();
  // bufferedAmount is read after every send by code that honours backpressure: a crossing into the addon
  // each time cost as much as the send itself. JS reads this cell instead; the addon keeps it current.
  Napi::ArrayBuffer cell = Napi::ArrayBuffer::New(env, sizeof(double));
  buffered_cell_ = static_cast<double*>(cell.Data());
  buffered_cell_ref_ = Napi::Persistent(cell);
  PublishBuffered();
  return Napi::Float64Array::New(env, 1, cell, 0);
}

Napi::Value Connection::Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t kind = ToU32(env, info[0], "kind");
  uint32_t id = ToU32(env, info[1], "id");
  const uint8_t* data;
  size_t len;
  GetBytes(env, info[2], &data, &len);
  if (kind > 255) throw Napi::RangeError::New(env, "kind must be a byte");
  if (!AcceptsWrite(env)) return Napi::Number::New(env, 0);
  Enqueue(static_cast<uint8_t>(kind), id, data, len, info[2]);
  return Napi::Number::New(env, static_cast<double>(buffered_));
}

Napi::Value Connection::WriteFrames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t* data;
  size_t len;
  GetBytes(env, info[0], &data, &len);
  if (!AcceptsWrite(env)) return Napi::Number::New(env, 0);
  if (len > 0) EnqueueFrames(data, len);
  return Napi::Number::New(env, static_cast<double>(buffered_));
}

Napi::Value Connection::WriteHandles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "writeHandles expects an array of descriptors");
  Napi::Array list = info[0].As<Napi::Array>();
  uint32_t count = list.Length();
  if (count > sys::kMaxFdsPerMessage)
    throw Napi::RangeError::New(env, "writeHandles takes at most " + std::to_string(sys::kMaxFdsPerMessage) +
                                         " descriptors at once");
  std::vector<int> fds;
  fds.reserve(count);
  for (uint32_t i = 0; i < count; i++) {
    Napi::Value v = list.Get(i);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d <= 0x7fffffff) || d != std::floor(d))
      throw Napi::TypeError::New(env, "writeHandles: every descriptor must be a non-negative integer");
    fds.push_back(static_cast<int>(d));
  }
  if (!AcceptsWrite(env)) return Napi::Number::New(env, 0);
  if (count == 0) return Napi::Number::New(env, static_cast<double>(buffered_));
  // Duplicates travel, so that the caller may close its own at once and a frame still queued never refers to a
  // number the caller reused meanwhile.
  WriteItem it;
  for (int fd : fds) {
    int dup_fd = -1;
    if (int err = sys::DupCloexec(fd, &dup_fd)) ThrowError(env, ErrorInfo::System(err, "dup"));  // it.fds closes the rest
    it.fds.list().push_back(dup_fd);
  }
  WriteU32LE(it.header, static_cast<uint32_t>(kBodyHeaderBytes));
  it.header[4] = kKindHandles;
  WriteU32LE(it.header + 5, count);
  bool was_empty = queue_.empty();
  PushQueued(std::move(it));
  if (was_empty) {
    // Nothing ahead of it: send now (a queued HANDLES frame would wait for the next writable event).
    int err = FlushSome();
    if (err != 0) {
      WriteFailed(err);
    } else if (queue_.empty()) {
      UpdatePoll();
      UpdateRef();
      UpdatePin();
    }
  }
  return Napi::Number::New(env, static_cast<double>(buffered_));
}

Napi::Value Connection::TakeHandles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double d = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0) || d != std::floor(d)) throw Napi::TypeError::New(env, "takeHandles expects a count");
  if (d > static_cast<double>(received_.size()))
    ThrowError(env, ErrorInfo::Ipc(codes::kBadFrame, "A HANDLES frame announced " + std::to_string(static_cast<long long>(d)) +
                                                         " descriptors but " + std::to_string(received_.size()) +
                                                         " arrived")
                        .With("expected", d)
                        .With("received", static_cast<double>(received_.size())));
  size_t count = static_cast<size_t>(d);
  Napi::Array out = Napi::Array::New(env, count);
  for (size_t i = 0; i < count; i++) out.Set(static_cast<uint32_t>(i), Napi::Number::New(env, received_[i]));
  // Ownership passes to JS only once the array is complete (making it may throw).
  received_.erase(received_.begin(), received_.begin() + static_cast<std::ptrdiff_t>(count));
  handles_owed_ -= std::min(handles_owed_, count);
  return out;
}

bool Connection::AcceptsWrite(Napi::Env env) {
  if (closed_ || ending_) ThrowError(env, ErrorInfo::Ipc(codes::kDisconnected, "The connection is closed"));
  // The peer is gone but onClose has not run yet (JS cannot know): drop the frame quietly, as a write the
  // kernel refused with EPIPE would be. Throwing here would surface inside a handler of the very frames
  // that arrived just before the EOF.
  return !(peer_gone_ || write_failed_);
}

Napi::Value Connection::Call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t id = ToU32(env, info[0], "id");
  const uint8_t* data;
  size_t len;
  GetBytes(env, info[1], &data, &len);
  double timeout_ms = ToDouble(info[2], 0);
  if (!info[3].IsFunction()) throw Napi::TypeError::New(env, "alive must be a function");
  Napi::Function alive = info[3].As<Napi::Function>();
  // Optional: a reply that fits is copied into this caller-owned buffer and its length returned, instead of a
  // fresh Buffer per call (a backing store, an ArrayBuffer and a view allocated and later collected each time).
  uint8_t* scratch = nullptr;
  size_t scratch_len = 0;
  if (info.Length() > 4 && info[4].IsTypedArray()) {
    Napi::TypedArray t = info[4].As<Napi::TypedArray>();
    if (t.TypedArrayType() == napi_uint8_array) {
      Napi::Uint8Array u = t.As<Napi::Uint8Array>();
      scratch = u.Data();
      scratch_len = u.ByteLength();
    }
  }
  if (in_call_) ThrowError(env, ErrorInfo::Ipc(codes::kBusy, "A blocking call is already in progress"));
  if (closed_ || peer_gone_ || ending_ || write_failed_)
    ThrowError(env, ErrorInfo::Ipc(codes::kDisconnected, "The connection is closed"));

  double start = sys::NowMs();
  double deadline = timeout_ms > 0 ? start + timeout_ms : 0;
  Enqueue(kKindSync, id, data, len, info[1], /*coalesce=*/false);  // the blocked caller flushes at once

  CallMatch match;
  match.id = id;
  in_call_ = true;
  WaitEnd end;
  try {
    end = WaitLoop(&match, deadline, &alive);
  } catch (...) {
    in_call_ = false;
    ReleaseHeldBlobs(&match);
    throw;
  }
  in_call_ = false;
  // No reply: BLOB frames read last belong to whatever comes next (a late reply is dropped by JS with them).
  if (end != WaitEnd::kDone) ReleaseHeldBlobs(&match);

  // Frames that arrived meanwhile are handed to onFrames later, from the event loop, never from here.
  if (!closed_) {
    if (!pending_.empty() || drain_pending_ || peer_gone_) ScheduleDeferred();
    UpdatePoll();
    UpdateRef();
    UpdatePin();
  }

  switch (end) {
    case WaitEnd::kDone:
      // A reply is copied into an ordinary Buffer up to kCopyReplyThreshold: V8 frees those on GC, while an
      // external block waits for its finalizer, which runs only when the event loop turns — so a loop of
      // sendSync calls would hold every reply and land each new one in fresh pages.
      // With BLOB frames (a renderer that said syncBlobs in its hello gets large byte arrays out of band), the
      // result is [reply, ...blobs], the blobs copied the same way.
      // When shared-memory frames are among them, every held frame is returned whole (header included, so
      // that JS sees its kind) and the array is marked `frames: true`.
      if (match.blobs.empty()) {
        const size_t size = match.frame.size();
        if (scratch != nullptr && size >= kFrameHeaderBytes && size - kFrameHeaderBytes <= scratch_len) {
          const size_t body = size - kFrameHeaderBytes;
          if (body > 0) memcpy(scratch, match.frame.data() + kFrameHeaderBytes, body);
          return Napi::Number::New(env, static_cast<double>(body));
        }
        return ToBuffer(env, std::move(match.frame), kFrameHeaderBytes, kCopyReplyThreshold);
      }
      {
        // The descriptors of the held HANDLES frames: right after those owed to frames JS has yet to see.
        size_t held = 0;
        for (const Block& b : match.blobs) {
          if (b.size() >= kFrameHeaderBytes && b.data()[4] == kKindHandles) held += HeldHandleCount(b);
        }
        bool whole = false;
        for (const Block& b : match.blobs) whole = whole || (b.size() > 4 && b.data()[4] != kKindBlob);
        size_t skip = whole ? 0 : kFrameHeaderBytes;
        Napi::Array out = Napi::Array::New(env, match.blobs.size() + 1);
        out.Set(0u, ToBuffer(env, std::move(match.frame), kFrameHeaderBytes, kCopyReplyThreshold));
        for (size_t i = 0; i < match.blobs.size(); i++)
          out.Set(static_cast<uint32_t>(i + 1), ToBuffer(env, std::move(match.blobs[i]), skip, kCopyReplyThreshold));
        if (whole) out.Set("frames", Napi::Boolean::New(env, true));
        if (held > 0) {
          if (received_.size() < handles_owed_ + held)
            ThrowError(env, ErrorInfo::Ipc(codes::kBadFrame, "A HANDLES frame before a reply came without its descriptors"));
          Napi::Array fds = Napi::Array::New(env, held);
          auto first = received_.begin() + static_cast<std::ptrdiff_t>(handles_owed_);
          for (size_t i = 0; i < held; i++) fds.Set(static_cast<uint32_t>(i), Napi::Number::New(env, first[static_cast<std::ptrdiff_t>(i)]));
          out.Set("handles", fds);
          received_.erase(first, first + static_cast<std::ptrdiff_t>(held));
        }
        return out;
      }
    case WaitEnd::kTimeout:
      ThrowError(env, ErrorInfo::Ipc(codes::kTimeout,
                                     "No reply to the synchronous call within " +
                                         std::to_string(static_cast<long long>(timeout_ms)) + " ms")
                          .With("timeout", timeout_ms));
    case WaitEnd::kInterrupted:
      ThrowError(env, ErrorInfo::Ipc(codes::kInterrupted,
                                     "The synchronous call was interrupted: the environment is terminating"));
    case WaitEnd::kException:
      return Napi::Value();  // alive() threw: its exception is pending and propagates
    case WaitEnd::kGone:
    case WaitEnd::kClosed:
      break;
  }
  ThrowError(env, ErrorInfo::Ipc(codes::kDisconnected, "The connection closed before the reply arrived"));
}

Napi::Value Connection::Flush(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double timeout_ms = ToDouble(info[0], 0);
  if (closed_ || queue_.empty() || in_call_) return Napi::Number::New(env, static_cast<double>(buffered_));
  in_call_ = true;
  WaitLoop(nullptr, sys::NowMs() + std::max(0.0, timeout_ms), nullptr);
  in_call_ = false;
  if (!closed_) {
    if (queue_.empty() && ending_) {
      shutdown(fd_, SHUT_WR);
      FinishClose(ErrorInfo());
    } else {
      if (!pending_.empty() || drain_pending_ || peer_gone_) ScheduleDeferred();
      UpdatePoll();
      UpdateRef();
      UpdatePin();
    }
  }
  return Napi::Number::New(env, static_cast<double>(buffered_));
}

Napi::Value Connection::Ref(const Napi::CallbackInfo& info) {
  user_ref_ = true;
  UpdateRef();
  return info.Env().Undefined();
}

Napi::Value Connection::Unref(const Napi::CallbackInfo& info) {
  user_ref_ = false;
  UpdateRef();
  return info.Env().Undefined();
}

Napi::Value Connection::Close(const Napi::CallbackInfo& info) {
  FinishClose(ErrorInfo());
  return info.Env().Undefined();
}

Napi::Value Connection::End(const Napi::CallbackInfo& info) {
  if (!closed_) {
    if (queue_.empty() || peer_gone_ || write_failed_) {
      if (!peer_gone_) shutdown(fd_, SHUT_WR);
      FinishClose(ErrorInfo());
    } else {
      ending_ = true;  // OnWritable closes once the queue is empty
      UpdatePoll();
    }
  }
  return info.Env().Undefined();
}

Napi::Value Connection::GetBufferedAmount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(buffered_));
}

Napi::Value Connection::GetCredentials(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("pid", creds_.pid);
  o.Set("uid", creds_.uid);
  o.Set("gid", creds_.gid);
  return o;
}

Napi::Value Connection::GetMaxFrameSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(decoder_.max_body()));
}

void Connection::SetMaxFrameSize(const Napi::CallbackInfo& info, const Napi::Value& value) {
  if (!value.IsNumber()) throw Napi::TypeError::New(info.Env(), "maxFrameSize must be a number");
  double v = value.As<Napi::Number>().DoubleValue();
  if (!(v >= 0)) throw Napi::RangeError::New(info.Env(), "maxFrameSize must be >= 0");
  decoder_.set_max_body(v >= static_cast<double>(kMaxBodyLength) ? kMaxBodyLength : static_cast<uint64_t>(v));
}

// ---------------------------------------------------------------------------------------------------
// libuv callbacks

void Connection::OnPoll(uv_poll_t* handle, int status, int events) {
  auto* h = static_cast<ConnHandles*>(handle->data);
  Connection* self = h->owner;
  if (self == nullptr || self->closed_) return;
  self->wrote_direct_ = false;  // a new turn: the next frame may go straight to the kernel again
  try {  // see OnTimer: no Napi::Error may leave a libuv callback
    Napi::HandleScope scope(self->env_);
    if (status < 0) {
      // libuv stopped the handle (POLLERR): read to learn what happened (data first, then EOF/error).
      self->poll_events_ = 0;
      self->OnReadable(status);
      return;
    }
    if (events & UV_WRITABLE) {
      self->OnWritable();
      if (self->closed_) return;
    }
    if (events & (UV_READABLE | UV_DISCONNECT)) self->OnReadable(0);
  } catch (const Napi::Error&) {
    self->OnJsUnavailable();
  }
}

void Connection::OnJsUnavailable() {
  // JS can no longer be called (the environment is terminating): stop reading; the cleanup hook closes the rest.
  if (closed_) return;
  started_ = false;
  pending_.clear();
  UpdatePoll();
}

void Connection::OnTimer(uv_timer_t* handle) {
  auto* h = static_cast<ConnHandles*>(handle->data);
  Connection* self = h->owner;
  if (self == nullptr || self->closed_) return;
  // A libuv callback is no N-API boundary: a Napi::Error thrown here (making a Buffer or an array fails once
  // the environment is terminating, e.g. worker.terminate() right after an interrupted call) must not escape.
  try {
    Napi::HandleScope scope(self->env_);
    self->OnDeferred();
  } catch (const Napi::Error&) {
    self->OnJsUnavailable();
  }
}

void Connection::OnHandleClosed(uv_handle_t* handle) {
  auto* h = static_cast<ConnHandles*>(handle->data);
  std::shared_ptr<LoopTracker> tracker = h->tracker;
  if (--h->open == 0) {
    DiscardInputAndClose(h->fd);  // normally already closed (-1) by FinishClose
    Connection* owner = h->owner;
    delete h;
    if (owner != nullptr) owner->OnClosed();
  }
  tracker->HandleClosed();
}

void Connection::OnReadable(int poll_status) {
  int err = 0;
  ReadEnd end = ReadAvailable(kReadBudget, nullptr, &err, /*stop_on_short=*/poll_status >= 0);
  switch (end) {
    case ReadEnd::kEof:
      PeerGone(EndOfStream(decoder_.buffered()));
      break;
    case ReadEnd::kError:
      PeerGone(ErrorInfo::System(err, "read"));
      break;
    case ReadEnd::kDecodeError:
      PeerGone(DecodeError());
      break;
    case ReadEnd::kHandleError:
      PeerGone(std::move(handle_err_));
      break;
    case ReadEnd::kAgain:
      if (poll_status < 0) {
        int so_err = 0;
        socklen_t len = sizeof(so_err);
        if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &so_err, &len) < 0 || so_err == 0) so_err = ECONNRESET;
        PeerGone(ErrorInfo::System(so_err, "read"));
      }
      break;
    case ReadEnd::kBudget:
    case ReadEnd::kReply:
      break;
  }
  DeliverPending();
  if (closed_) return;
  MaybeFinishPeerGone();
}

void Connection::OnWritable() {
  if (queue_.empty()) {
    UpdatePoll();
    return;
  }
  int err = FlushSome();
  if (err != 0) {
    WriteFailed(err);
    return;
  }
  if (!queue_.empty()) return;
  UpdatePoll();
  UpdatePin();
  if (ending_) {
    shutdown(fd_, SHUT_WR);
    FinishClose(ErrorInfo());
    return;
  }
  if (started_ && !on_drain_.IsEmpty()) {
    drain_pending_ = false;
    CallIntoJs(env_, *async_context_, Value(), on_drain_.Value(), 0, nullptr);
  }
}

void Connection::OnDeferred() {
  if (!started_) return;
  DeliverPending();
  if (closed_) return;
  if (drain_pending_) {
    drain_pending_ = false;
    if (!tracker_->tearing_down) CallIntoJs(env_, *async_context_, Value(), on_drain_.Value(), 0, nullptr);
    if (closed_) return;
  }
  MaybeFinishPeerGone();
}

void Connection::OnClosed() {
  handles_ = nullptr;
  fd_ = -1;
  if (started_ && !close_delivered_ && !tracker_->tearing_down) {
    close_delivered_ = true;
    Napi::HandleScope scope(env_);
    Napi::Value err = close_err_ ? MakeError(env_, close_err_) : env_.Null();
    napi_value argv[1] = {err.IsEmpty() ? static_cast<napi_value>(env_.Null()) : static_cast<napi_value>(err)};
    CallIntoJs(env_, *async_context_, Value(), on_close_.Value(), 1, argv);
  }
  on_frames_.Reset();
  on_close_.Reset();
  on_drain_.Reset();
  async_context_.reset();
  UpdatePin();
}

// ---------------------------------------------------------------------------------------------------
// Reading

Connection::ReadEnd Connection::ReadAvailable(size_t budget, CallMatch* match, int* err, bool stop_on_short) {
  size_t total = 0;
  for (;;) {
    ReadTarget t = decoder_.Prepare();
    if (t.size == 0) return ReadEnd::kDecodeError;
    // recvmsg, not read: descriptors (SCM_RIGHTS) come with the bytes they were sent with, which precede the
    // end of their HANDLES frame, so they are in received_ before that frame reaches JS.
    bool lost = false;
    std::vector<int> fds;
    ssize_t n = sys::RecvWithFds(fd_, t.data, t.size, &fds, &lost);
    if (!fds.empty() || lost) {
      received_.insert(received_.end(), fds.begin(), fds.end());
      if (lost || received_.size() > kMaxUntakenHandles) {
        handle_err_ = lost ? ErrorInfo::Ipc(codes::kBadFrame, "Descriptors sent by the peer were lost (control message "
                                                              "truncated: too many at once, or out of descriptors)")
                           : ErrorInfo::Ipc(codes::kBadFrame, "The peer sent more than " +
                                                                  std::to_string(kMaxUntakenHandles) +
                                                                  " descriptors that were not taken")
                                 .With("received", static_cast<double>(received_.size()));
        CloseReceived();
        return ReadEnd::kHandleError;
      }
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return ReadEnd::kAgain;
      *err = errno;
      return ReadEnd::kError;
    }
    if (n == 0) return ReadEnd::kEof;
    decoder_.Commit(static_cast<size_t>(n));
    total += static_cast<size_t>(n);
    // Decode right away: no complete frame is ever left behind in the decoder, so nothing depends on
    // another readable event to be delivered.
    if (!DrainDecoder(match)) return ReadEnd::kDecodeError;
    if (match != nullptr && match->found) return ReadEnd::kReply;
    if (total >= budget && !decoder_.in_large_frame()) return ReadEnd::kBudget;
    // A short read drained the socket: skip the read() that would only say EAGAIN (a syscall per message on
    // the small-message path). The poll is level-triggered, so anything that arrives later is reported again.
    if (stop_on_short && static_cast<size_t>(n) < t.size && !decoder_.in_large_frame()) return ReadEnd::kBudget;
  }
}

bool Connection::DrainDecoder(CallMatch* match) {
  for (;;) {
    DecodedFrame f;
    DecodeStatus s = decoder_.Next(&f);
    if (s == DecodeStatus::kNeedMore) return true;
    if (s != DecodeStatus::kFrame) return false;
    if (match != nullptr && !match->found) {
      if (f.kind == kKindBlob || f.kind == kKindShm || f.kind == kKindShmBlob || f.kind == kKindHandles) {
        // Maybe the reply's: main writes a value's large byte arrays as BLOB (or SHM_BLOB) frames right before it.
        Block b;
        if (f.owned) {
          b = Block(f.data, f.size);
        } else {
          b.Reserve(f.size);
          b.Append(f.data, f.size);
        }
        match->blobs.push_back(std::move(b));
        continue;
      }
      if (f.kind == kKindSyncReply && f.id == match->id) {
        match->found = true;
        if (f.owned) {
          match->frame = Block(f.data, f.size);
        } else {
          match->frame.Reserve(f.size);
          match->frame.Append(f.data, f.size);
        }
        continue;
      }
      ReleaseHeldBlobs(match);
    }
    AppendPending(f);
  }
}

void Connection::ReleaseHeldBlobs(CallMatch* match) {
  for (Block& b : match->blobs) {
    if (b.size() >= kFrameHeaderBytes && b.data()[4] == kKindHandles) handles_owed_ += HeldHandleCount(b);
    if (!pending_.empty()) pending_.back().seal();
    b.seal();
    pending_.push_back(std::move(b));
  }
  match->blobs.clear();
}

void Connection::AppendPending(const DecodedFrame& f) {
  if (f.kind == kKindHandles) handles_owed_ += f.id;
  if (f.owned) {
    if (!pending_.empty()) pending_.back().seal();
    Block b(f.data, f.size);
    b.seal();
    pending_.push_back(std::move(b));
    return;
  }
  if (pending_.empty() || pending_.back().sealed() || pending_.back().size() + f.size > kCoalesceMax) {
    pending_.emplace_back();
    // Room for what one read brings, so coalescing does not realloc-and-copy as it grows.
    pending_.back().Reserve(std::max(f.size, kCoalesceReserve));
  }
  pending_.back().Append(f.data, f.size);
}

ErrorInfo Connection::DecodeError() const {
  uint64_t n = decoder_.error_length();
  switch (decoder_.error()) {
    case DecodeStatus::kTooLarge:
      return ErrorInfo::Ipc(codes::kFrameTooLarge, "Frame of " + std::to_string(n) +
                                                       " bytes exceeds the maximum frame size of " +
                                                       std::to_string(decoder_.max_body()) + " bytes")
          .With("size", static_cast<double>(n))
          .With("maxFrameSize", static_cast<double>(decoder_.max_body()));
    case DecodeStatus::kBadFrame:
      return ErrorInfo::Ipc(codes::kBadFrame, "Malformed frame: declared body length " + std::to_string(n) +
                                                  " is shorter than the 5-byte frame header")
          .With("size", static_cast<double>(n));
    default:
      return ErrorInfo::System(ENOMEM, "read");
  }
}

void Connection::DeliverPending() {
  if (pending_.empty() || !started_ || closed_ || tracker_->tearing_down) return;
  // Swap out first: onFrames may call call(), which appends to a fresh pending_ (delivered later).
  std::vector<Block> batch;
  batch.swap(pending_);
  Napi::Array chunks = Napi::Array::New(env_, batch.size());
  for (size_t i = 0; i < batch.size(); i++) chunks.Set(static_cast<uint32_t>(i), ToBuffer(env_, std::move(batch[i]), 0, kCopyToJsThreshold));
  napi_value argv[1] = {chunks};
  CallIntoJs(env_, *async_context_, Value(), on_frames_.Value(), 1, argv);
}

Napi::Value Connection::ToBuffer(Napi::Env env, Block&& block, size_t offset, size_t copy_up_to) {
  size_t size = block.size();
  uint8_t* base = block.Release();
  if (base == nullptr || size <= offset) {
    free(base);
    return Napi::Buffer<uint8_t>::New(env, 0);
  }
  if (size - offset <= copy_up_to) {
    // Small frames are copied into an ordinary Buffer: an external one costs a weak handle, a finalizer and an
    // external-memory adjustment per message, and keeps its block until the event loop turns (a loop of
    // sendSync calls would otherwise hold every reply).
    KeepLargeFreesWarm(size - offset);
    Napi::Value copy = Napi::Buffer<uint8_t>::Copy(env, base + offset, size - offset);
    BlockPool::Shared().Release(base, size);
    return copy;
  }
  // No napi_adjust_external_memory: V8 already counts an external buffer's backing store towards its GC
  // heuristics; reporting it a second time doubled the pressure and made a stream of 1 MiB messages spend
  // a fifth of the receiver's time in major GCs.
  return Addon::Get(env)->NewBuffer(env, base + offset, size - offset, FreeExternal, new ExternalBlock{base, size});
}

// ---------------------------------------------------------------------------------------------------
// Writing

template <typename Fill>
ssize_t Connection::WriteNow(size_t total, Fill fill) {
  size_t done = 0;
  while (done < total) {
    iovec iov[2];
    int n = fill(done, iov);
    ssize_t w = sys::WriteV(fd_, iov, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      WriteFailed(errno);
      return -1;
    }
    done += static_cast<size_t>(w);
  }
  return static_cast<ssize_t>(done);
}

void Connection::Enqueue(uint8_t kind, uint32_t id, const uint8_t* data, size_t len, Napi::Value owner,
                         bool coalesce) {
  if (len > kMaxBodyLength - kBodyHeaderBytes)
    ThrowError(env_, ErrorInfo::Ipc(codes::kFrameTooLarge, "A frame body is limited to 4 GiB")
                         .With("size", static_cast<double>(len)));
  WriteItem it;
  WriteU32LE(it.header, static_cast<uint32_t>(len + kBodyHeaderBytes));
  it.header[4] = kind;
  WriteU32LE(it.header + 5, id);
  size_t total = kFrameHeaderBytes + len;
  if (queue_.empty() && !(coalesce && wrote_direct_)) {
    // Fast path: nothing queued, so the frame may go straight to the kernel, header and payload in one
    // writev, with no copy. Loops because one writev moves at most ~2 GiB. Only the first frame of a turn
    // takes it: a burst of sends in one turn costs one writev for the rest instead of one each.
    ssize_t written = WriteNow(total, [&](size_t done, iovec* iov) {
      int n = 0;
      if (done < kFrameHeaderBytes) iov[n++] = {it.header + done, kFrameHeaderBytes - done};
      size_t poff = done > kFrameHeaderBytes ? done - kFrameHeaderBytes : 0;
      if (poff < len) iov[n++] = {const_cast<uint8_t*>(data + poff), len - poff};
      return n;
    });
    if (written < 0) return;
    size_t done = static_cast<size_t>(written);
    if (done == total) {
      if (coalesce) wrote_direct_ = true;
      return;
    }
    it.header_off = std::min(done, kFrameHeaderBytes);
    it.off = done > kFrameHeaderBytes ? done - kFrameHeaderBytes : 0;
  }
  size_t rest = len - it.off;
  if (rest < kCopyThreshold || owner.IsEmpty() || !owner.IsObject()) {
    it.copy.assign(data + it.off, data + len);
    it.data = it.copy.data();
    it.len = it.copy.size();
    it.off = 0;
  } else {
    // Big payloads are not copied: the queue holds a reference to their owner until written.
    it.data = data;
    it.len = len;
    it.keep = Napi::Reference<Napi::Value>::New(owner, 1);
  }
  PushQueued(std::move(it));
}

void Connection::EnqueueFrames(const uint8_t* data, size_t len) {
  size_t done = 0;
  if (queue_.empty()) {
    // A batch is already one large write: it goes straight to the kernel whatever the turn has written.
    ssize_t written = WriteNow(len, [&](size_t off, iovec* iov) {
      iov[0] = {const_cast<uint8_t*>(data + off), len - off};
      return 1;
    });
    if (written < 0) return;
    done = static_cast<size_t>(written);
    if (done == len) return;
  }
  WriteItem it;
  it.header_off = kFrameHeaderBytes;  // no header of its own: the bytes carry theirs
  it.copy.assign(data + done, data + len);
  it.data = it.copy.data();
  it.len = it.copy.size();
  PushQueued(std::move(it));
}

void Connection::PushQueued(WriteItem&& it) {
  buffered_ += it.remaining();
  PublishBuffered();
  queue_.push_back(std::move(it));
  UpdatePoll();
  UpdateRef();
  UpdatePin();
}

int Connection::FlushSome() {
  while (!queue_.empty()) {
    iovec iov[kMaxIov];
    int n = 0;
    // Descriptors go with the first byte of their HANDLES frame: a batch stops before a frame that still
    // carries some, and such a frame starts a batch of its own with them attached. Once any byte of that
    // sendmsg is written they are sent (and our duplicates closed), so a partial write never sends them twice.
    WriteItem& first = queue_.front();
    for (auto& it : queue_) {
      if (n + 2 > kMaxIov) break;
      if (&it != &first && !it.fds.empty()) break;
      if (it.header_off < kFrameHeaderBytes)
        iov[n++] = {it.header + it.header_off, kFrameHeaderBytes - it.header_off};
      if (it.off < it.len) iov[n++] = {const_cast<uint8_t*>(it.data + it.off), it.len - it.off};
    }
    ssize_t w = first.fds.empty() ? sys::WriteV(fd_, iov, n)
                                  : sys::SendWithFds(fd_, iov, n, first.fds.list().data(), first.fds.size());
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return errno;
    }
    if (w > 0) first.fds.CloseAll();
    Consume(static_cast<size_t>(w));
  }
  return 0;
}

void Connection::Consume(size_t n) {
  buffered_ -= n;
  PublishBuffered();
  while (!queue_.empty()) {
    WriteItem& it = queue_.front();
    size_t h = std::min(n, kFrameHeaderBytes - it.header_off);
    it.header_off += h;
    n -= h;
    size_t p = std::min(n, it.len - it.off);
    it.off += p;
    n -= p;
    if (it.remaining() != 0) break;
    queue_.pop_front();
  }
}

// ---------------------------------------------------------------------------------------------------
// Blocking wait (call / flush)

Connection::WaitEnd Connection::CallAlive(const Napi::Function& alive) {
  napi_value undefined, result;
  napi_get_undefined(env_, &undefined);
  napi_status s = napi_call_function(env_, undefined, alive, 0, nullptr, &result);
  if (s == napi_ok) return closed_ ? WaitEnd::kClosed : WaitEnd::kDone;
  bool pending = false;
  napi_is_exception_pending(env_, &pending);
  // A pending exception (thrown by alive, or the termination itself) propagates as is; with none, the
  // environment refused to run JS at all: it is shutting down.
  return pending ? WaitEnd::kException : WaitEnd::kInterrupted;
}

Connection::WaitEnd Connection::WaitLoop(CallMatch* match, double deadline, const Napi::Function* alive) {
  double last_alive = sys::NowMs();
  // Right after the request is written its reply cannot be there yet: poll before the first read instead of
  // paying a read that says EAGAIN (frames main sent earlier make the poll return at once).
  bool poll_first = match != nullptr;
  for (;;) {
    if (closed_) return WaitEnd::kClosed;
    if (!queue_.empty() && !write_failed_) {
      int err = FlushSome();
      if (err != 0) {
        WriteFailed(err);
      } else if (queue_.empty()) {
        drain_pending_ = true;
      }
    }
    if (match == nullptr && (queue_.empty() || write_failed_)) return WaitEnd::kDone;
    if (peer_gone_) return WaitEnd::kGone;

    int err = 0;
    ReadEnd read_end = ReadEnd::kAgain;
    if (poll_first) {
      poll_first = false;
    } else {
      read_end = ReadAvailable(kCallReadBudget, match, &err);
    }
    switch (read_end) {
      case ReadEnd::kReply:
        return WaitEnd::kDone;
      case ReadEnd::kEof:
        PeerGone(EndOfStream(decoder_.buffered()));
        return WaitEnd::kGone;
      case ReadEnd::kError:
        PeerGone(ErrorInfo::System(err, "read"));
        return WaitEnd::kGone;
      case ReadEnd::kDecodeError:
        PeerGone(DecodeError());
        return WaitEnd::kGone;
      case ReadEnd::kHandleError:
        PeerGone(std::move(handle_err_));
        return WaitEnd::kGone;
      case ReadEnd::kAgain:
      case ReadEnd::kBudget:
        break;
    }

    double now = sys::NowMs();
    if (deadline > 0 && now >= deadline) return WaitEnd::kTimeout;
    if (alive != nullptr && now - last_alive >= kSliceMs) {
      WaitEnd r = CallAlive(*alive);
      if (r != WaitEnd::kDone) return r;
      last_alive = sys::NowMs();
      continue;
    }
    double wait = kSliceMs - (alive != nullptr ? now - last_alive : 0);
    if (deadline > 0) wait = std::min(wait, deadline - now);
    if (wait < 0) wait = 0;
    pollfd p;
    p.fd = fd_;
    p.events = POLLIN;
    if (!queue_.empty() && !write_failed_) p.events |= POLLOUT;
    p.revents = 0;
    int r = poll(&p, 1, static_cast<int>(std::ceil(wait)));
    if (r < 0 && errno != EINTR && errno != EAGAIN) {
      PeerGone(ErrorInfo::System(errno, "poll"));
      return WaitEnd::kGone;
    }
    if (r > 0 && (p.revents & POLLNVAL)) {
      PeerGone(ErrorInfo::System(EBADF, "poll"));
      return WaitEnd::kGone;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// State

void Connection::WriteFailed(int errnum) {
  if (write_failed_ || closed_) return;
  write_failed_ = true;
  // The peer is gone: what was queued can never arrive. Reading continues until EOF, so whatever the peer
  // sent before it went away is still delivered. The EPIPE itself is not the close reason: a peer that
  // closed in an orderly way (we then read EOF) gives onClose(null) whether or not we happened to write
  // after its close; reporting EPIPE would make the outcome depend on that race. A read error (ECONNRESET)
  // is still reported.
  write_err_ = ErrorInfo::System(errnum, "write");
  queue_.clear();
  buffered_ = 0;
  PublishBuffered();
  UpdatePoll();
  UpdateRef();
  UpdatePin();
  if (!started_ || in_call_) return;
  ScheduleDeferred();
}

void Connection::PeerGone(ErrorInfo err) {
  if (peer_gone_ || closed_) return;
  peer_gone_ = true;
  if (!close_err_) close_err_ = std::move(err);
  queue_.clear();
  buffered_ = 0;
  PublishBuffered();
  UpdatePoll();
  UpdateRef();
  UpdatePin();
}

void Connection::MaybeFinishPeerGone() {
  if (closed_) return;
  if (!peer_gone_) {
    // After a write error the fd is readable (EOF) soon; if reading is not armed, go through the timer.
    if (write_failed_ && started_ && pending_.empty() && poll_events_ == 0) FinishClose(write_err_);
    return;
  }
  if (!pending_.empty() || in_call_ || !started_) {
    if (started_) ScheduleDeferred();
    return;
  }
  FinishClose(ErrorInfo());
}

void Connection::FinishClose(ErrorInfo err) {
  if (closed_) return;
  closed_ = true;
  if (!close_err_) close_err_ = std::move(err);
  tracker_->resources.erase(this);
  queue_.clear();
  buffered_ = 0;
  PublishBuffered();
  pending_.clear();
  CloseReceived();
  drain_pending_ = false;
  poll_events_ = 0;
  if (handles_ != nullptr) {
    CloseHandlesAndSocket();
    fd_ = -1;
  }
  UpdatePin();
}

void Connection::CloseHandlesAndSocket() {
  // Stop watching first; libuv documents that the fd may be closed right after uv_poll_stop/uv_close.
  // Closing it now (not in the close callback) makes close() take effect at once, as net.Socket's
  // does: the peer sees EOF immediately.
  uv_poll_stop(&handles_->poll);
  uv_timer_stop(&handles_->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&handles_->poll), OnHandleClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&handles_->timer), OnHandleClosed);
  handles_->fd = -1;
  DiscardInputAndClose(fd_);
}

void Connection::ScheduleDeferred() {
  if (handles_ == nullptr || closed_) return;
  uv_timer_start(&handles_->timer, OnTimer, 0, 0);
}

void Connection::UpdatePoll() {
  if (handles_ == nullptr || closed_) return;
  int want = 0;
  if (started_ && !peer_gone_) want |= UV_READABLE;
  if (!queue_.empty() && !peer_gone_ && !write_failed_) want |= UV_WRITABLE;
  if (want == poll_events_) return;
  if (want == 0) {
    uv_poll_stop(&handles_->poll);
  } else {
    int r = uv_poll_start(&handles_->poll, want, OnPoll);
    if (r != 0) {
      poll_events_ = 0;
      PeerGone(ErrorInfo::System(-r, "poll"));
      return;
    }
  }
  poll_events_ = want;
  UpdateRef();
}

void Connection::UpdateRef() {
  if (handles_ == nullptr || closed_) return;
  // Queued writes keep the loop alive until flushed (like net.Socket); otherwise only a user ref does.
  if (user_ref_ || !queue_.empty()) {
    uv_ref(reinterpret_cast<uv_handle_t*>(&handles_->poll));
  } else {
    uv_unref(reinterpret_cast<uv_handle_t*>(&handles_->poll));
  }
  if (user_ref_) {
    uv_ref(reinterpret_cast<uv_handle_t*>(&handles_->timer));
  } else {
    uv_unref(reinterpret_cast<uv_handle_t*>(&handles_->timer));
  }
}

void Connection::UpdatePin() {
  // The JS object must stay alive while libuv may call back into it: while reading (started) or while
  // writes are queued, until the handles are closed.
  bool want = handles_ != nullptr && (started_ || !queue_.empty());
  if (want == pinned_) return;
  pinned_ = want;
  if (want) {
    Napi::ObjectWrap<Connection>::Ref();
  } else {
    Napi::ObjectWrap<Connection>::Unref();
  }
}

}  // namespace ipcwire
