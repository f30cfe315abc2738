#include "pipe_connection.h"

#include "../block_pool.h"

#include <algorithm>
#include <cstring>

#include "win_errors.h"

namespace ipcwire {
namespace win {

namespace {

struct BlockSpan {
  uint8_t* base;
  size_t size;
};

void FreeBlock(napi_env /*env*/, void* /*data*/, void* hint) {
  auto* span = static_cast<BlockSpan*>(hint);
  BlockPool::Shared().Release(span->base, span->size);
  delete span;
}

constexpr uint8_t kSync = 4;         // Kind.SYNC in src/ts/native.ts
constexpr uint8_t kSyncReply = 5;    // Kind.SYNC_REPLY
constexpr DWORD kSliceMs = 20;       // call() notices termination within one slice
constexpr size_t kWriteChunk = 1 << 20;  // one WriteFile moves at most this much (huge frames go in pieces)
constexpr size_t kBatchBytes = 64 * 1024;  // small frames are coalesced into chunks up to this size
constexpr uint64_t kMaxUndelivered = 1 << 20;  // see pending_bytes_

struct Handoff {
  HANDLE pipe;
  bool server_side;
  const std::string* address;
};

}  // namespace

Napi::Function PipeConnection::Define(Napi::Env env) {
  return DefineClass(env, "Connection",
                     {
                         InstanceMethod("start", &PipeConnection::Start),
                         InstanceMethod("write", &PipeConnection::Write),
                         InstanceMethod("writeFrames", &PipeConnection::WriteFrames),
                         InstanceMethod("call", &PipeConnection::Call),
                         InstanceMethod("flush", &PipeConnection::Flush),
                         InstanceMethod("ref", &PipeConnection::JsRef),
                         InstanceMethod("unref", &PipeConnection::JsUnref),
                         InstanceMethod("close", &PipeConnection::Close),
                         InstanceMethod("end", &PipeConnection::End),
                         InstanceAccessor("bufferedAmount", &PipeConnection::GetBufferedAmount, nullptr),
                         InstanceAccessor("credentials", &PipeConnection::GetCredentials, nullptr),
                         InstanceAccessor("maxFrameSize", &PipeConnection::GetMaxFrameSize,
                                          &PipeConnection::SetMaxFrameSize),
                     });
}

Napi::Object PipeConnection::NewInstance(Napi::Env env, HANDLE pipe, bool server_side, const std::string& address) {
  Handoff h{pipe, server_side, &address};
  Addon* addon = Addon::Get(env);
  return addon->connection_ctor.New({Napi::External<Handoff>::New(env, &h)});
}

PipeConnection::PipeConnection(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PipeConnection>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(env, "Connection cannot be constructed from JS; use connect() or listen()");
  }
  const Handoff* h = info[0].As<Napi::External<Handoff>>().Data();
  Addon* addon = Addon::Get(env);
  tracker_ = addon->tracker();
  pipe_ = h->pipe;
  server_side_ = h->server_side;
  address_ = *h->address;
  ULONG pid = 0;
  if (server_side_ ? GetNamedPipeClientProcessId(pipe_, &pid) : GetNamedPipeServerProcessId(pipe_, &pid)) {
    peer_pid_ = pid;
  }
  wake_ = CreateEventW(nullptr, FALSE, FALSE, nullptr);
  call_event_ = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  if (wake_ == nullptr || call_event_ == nullptr) {
    DWORD err = GetLastError();
    if (wake_) CloseHandle(wake_);
    if (call_event_) CloseHandle(call_event_);
    wake_ = call_event_ = nullptr;
    CloseHandle(pipe_);
    pipe_ = INVALID_HANDLE_VALUE;
    ThrowError(env, Win32Error(err, "connect", address_));
  }
  tracker_->resources.insert(this);
  // Writes may be queued before start() (the handshake); reads wait for start().
  io_ = std::thread([this] { IoThread(); });
}

PipeConnection::~PipeConnection() {
  CloseForTeardown();
  if (wake_) CloseHandle(wake_);
  if (call_event_) CloseHandle(call_event_);
}

void PipeConnection::CloseForTeardown() {
  // No JS from here: the environment may be going away. The thread-safe function is finalized by Node itself.
  torn_down_ = true;
  {
    std::lock_guard<std::mutex> lk(mu_);
    tsfn_ = nullptr;
  }
  StopThread();
  if (pipe_ != INVALID_HANDLE_VALUE) {
    CloseHandle(pipe_);
    pipe_ = INVALID_HANDLE_VALUE;
  }
  if (tracker_) tracker_->resources.erase(this);
}

void PipeConnection::StopThread() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    closing_ = true;
  }
  if (wake_) SetEvent(wake_);
  if (io_.joinable()) io_.join();
}

// ---- the I/O thread ------------------------------------------------------------------------------------------------

void PipeConnection::IoThread() {
  OVERLAPPED rov, wov;
  memset(&rov, 0, sizeof rov);
  memset(&wov, 0, sizeof wov);
  rov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  wov.hEvent = CreateEventW(nullptr, TRUE, FALSE, nullptr);
  bool reading = false, writing = false;
  std::vector<uint8_t> wcur;  // the frame being written; the OVERLAPPED write points into it
  size_t woff = 0;

  std::unique_lock<std::mutex> lk(mu_);
  if (rov.hEvent == nullptr || wov.hEvent == nullptr) FinishLocked(Win32Error(GetLastError(), "read", address_));
  while (!closing_ && !finished_) {
    // Start a write: the head of the queue, in pieces of at most kWriteChunk.
    if (!writing) {
      if (woff >= wcur.size() && !out_.empty()) {
        wcur = std::move(out_.front());
        out_.pop_front();
        woff = 0;
      }
      if (woff < wcur.size()) {
        DWORD len = static_cast<DWORD>(std::min(kWriteChunk, wcur.size() - woff));
        // (WriteFile/ReadFile reset the OVERLAPPED's event themselves: no ResetEvent, one syscall fewer,
        // which under wine is one wineserver round trip fewer.)
        if (!WriteFile(pipe_, wcur.data() + woff, len, nullptr, &wov) && GetLastError() != ERROR_IO_PENDING) {
          FinishLocked(Win32Error(GetLastError(), "write", address_));
          break;
        }
        writing = true;
      } else if (ending_) {
        // end(): everything queued went out. Named pipes have no half-close, so the pipe closes now.
        FinishLocked(ErrorInfo());
        break;
      }
    }
    // Reads: ours unless call() asked for the pipe.
    bool cancel = false;
    if (read_mode_ == ReadMode::kPauseRequested) {
      if (reading) {
        cancel = true;
      } else {
        read_mode_ = ReadMode::kPaused;
        cv_.notify_all();
      }
    } else if (read_mode_ == ReadMode::kThread && !reading && pending_bytes_ < kMaxUndelivered) {
      ReadTarget t = decoder_.Prepare();
      if (t.size == 0) {
        FinishLocked(ErrorInfo::Ipc(codes::kBadFrame, "out of memory for the read buffer"));
        break;
      }
      if (!ReadFile(pipe_, t.data, static_cast<DWORD>(std::min<size_t>(t.size, 0x7fffffff)), nullptr, &rov) &&
          GetLastError() != ERROR_IO_PENDING) {
        DWORD err = GetLastError();
        FinishLocked(err == ERROR_BROKEN_PIPE || err == ERROR_PIPE_NOT_CONNECTED ? EndOfStream(decoder_.buffered())
                                                                                  : Win32Error(err, "read", address_));
        break;
      }
      reading = true;
    }
    lk.unlock();
    if (cancel) CancelIoEx(pipe_, &rov);  // completes (aborted, or with bytes already taken) below
    HANDLE hs[3];
    DWORD n = 0;
    hs[n++] = wake_;
    if (reading) hs[n++] = rov.hEvent;
    if (writing) hs[n++] = wov.hEvent;
    WaitForMultipleObjects(n, hs, FALSE, INFINITE);
    lk.lock();

    // HasOverlappedIoCompleted reads the OVERLAPPED's status: no syscall.
    if (reading && HasOverlappedIoCompleted(&rov)) {
      DWORD got = 0;
      BOOL ok = GetOverlappedResult(pipe_, &rov, &got, FALSE);
      DWORD err = ok ? 0 : GetLastError();
      reading = false;
      if (got > 0 && !CommitReadLocked(got, -1, nullptr, nullptr)) break;
      if (!ok && err != ERROR_OPERATION_ABORTED && err != ERROR_MORE_DATA) {
        // The peer closed its end (EOF) or the pipe broke.
        FinishLocked(err == ERROR_BROKEN_PIPE || err == ERROR_PIPE_NOT_CONNECTED ? EndOfStream(decoder_.buffered())
                                                                                  : Win32Error(err, "read", address_));
        break;
      }
      if (!pending_.empty()) NotifyLocked();
    }
    if (writing && HasOverlappedIoCompleted(&wov)) {
      DWORD put = 0;
      BOOL ok = GetOverlappedResult(pipe_, &wov, &put, FALSE);
      writing = false;
      if (!ok) {
        DWORD err = GetLastError();
        // A broken pipe on write is the peer leaving: report it as the read side would (clean EOF).
        FinishLocked(err == ERROR_BROKEN_PIPE || err == ERROR_NO_DATA || err == ERROR_PIPE_NOT_CONNECTED
                         ? ErrorInfo()
                         : Win32Error(err, "write", address_));
        break;
      }
      woff += put;
      buffered_ -= std::min<uint64_t>(put, buffered_);
      if (woff >= wcur.size()) {
        std::vector<uint8_t>().swap(wcur);
        woff = 0;
      }
      if (buffered_ == 0 && drain_armed_) {
        drain_armed_ = false;
        drain_pending_ = true;
        NotifyLocked();
      }
      cv_.notify_all();
    }
  }
  lk.unlock();
  // The OVERLAPPEDs live on this stack: nothing may be in flight when it unwinds.
  if (reading) CancelIoEx(pipe_, &rov);
  if (writing) CancelIoEx(pipe_, &wov);
  DWORD ignored;
  if (reading) {
    BOOL ok = GetOverlappedResult(pipe_, &rov, &ignored, TRUE);
    // A read that raced the cancel and took bytes: keep them, the frames may be whole.
    lk.lock();
    if (ok && ignored > 0 && !closing_) CommitReadLocked(ignored, -1, nullptr, nullptr);
    lk.unlock();
  }
  if (writing) GetOverlappedResult(pipe_, &wov, &ignored, TRUE);
  if (rov.hEvent) CloseHandle(rov.hEvent);
  if (wov.hEvent) CloseHandle(wov.hEvent);

  lk.lock();
  if (!finished_) FinishLocked(ErrorInfo());  // close(): a clean local close
  out_.clear();
  buffered_ = 0;
  thread_done_ = true;
  cv_.notify_all();
  NotifyLocked();
}

bool PipeConnection::CommitReadLocked(size_t n, int64_t want_id, Block* reply, bool* got_reply) {
  decoder_.Commit(n);
  try {
    return DrainDecoderLocked(want_id, reply, got_reply);
  } catch (const std::bad_alloc&) {
    // Runs on the I/O thread too, where an exception would end the process: out of memory closes this
    // connection instead.
    FinishLocked(ErrorInfo::Ipc(codes::kBadFrame, "Out of memory while receiving frames"));
    return false;
  }
}

bool PipeConnection::DrainDecoderLocked(int64_t want_id, Block* reply, bool* got_reply) {
  for (;;) {
    DecodedFrame f;
    DecodeStatus s = decoder_.Next(&f);
    if (s == DecodeStatus::kNeedMore) return true;
    if (s != DecodeStatus::kFrame) {
      const char* code = s == DecodeStatus::kTooLarge ? codes::kFrameTooLarge : codes::kBadFrame;
      std::string msg = s == DecodeStatus::kTooLarge
                            ? "Frame of " + std::to_string(decoder_.error_length()) +
                                  " bytes exceeds the maximum frame size of " + std::to_string(decoder_.max_body())
                            : s == DecodeStatus::kBadFrame
                                  ? "Malformed frame: declared body length " +
                                        std::to_string(decoder_.error_length()) + " is shorter than its header"
                                  : "Out of memory for a frame of " + std::to_string(decoder_.error_length()) +
                                        " bytes";
      FinishLocked(ErrorInfo::Ipc(code, msg).With("length", static_cast<double>(decoder_.error_length())));
      return false;
    }
    if (f.kind == kSyncReply) {
      if (want_id >= 0 && f.id == static_cast<uint32_t>(want_id) && reply != nullptr) {
        *reply = f.owned ? Block(f.data, f.size) : Block();
        if (!f.owned) reply->Append(f.data, f.size);
        *got_reply = true;
      } else if (f.owned) {
        free(f.data);  // a late reply to a call that already timed out
      }
      continue;
    }
    pending_bytes_ += f.size;
    if (f.owned) {
      Block big(f.data, f.size);
      big.seal();
      pending_.push_back(std::move(big));
    } else {
      if (pending_.empty() || pending_.back().sealed() || pending_.back().size() + f.size > kBatchBytes) {
        pending_.emplace_back();
      }
      pending_.back().Append(f.data, f.size);
    }
  }
}

void PipeConnection::FinishLocked(ErrorInfo err) {
  if (finished_) return;
  finished_ = true;
  close_err_ = std::move(err);
  cv_.notify_all();
}

void PipeConnection::NotifyLocked() {
  if (notify_pending_ || tsfn_ == nullptr) return;
  if (napi_call_threadsafe_function(tsfn_, nullptr, napi_tsfn_nonblocking) == napi_ok) notify_pending_ = true;
}

// ---- JS thread -----------------------------------------------------------------------------------------------------

void PipeConnection::CallJs(napi_env env, napi_value, void* context, void*) {
  if (env == nullptr) return;  // the thread-safe function is being torn down
  // A C callback: a listener's exception must leave as a JS exception (Node reports it as uncaught),
  // never as a C++ one.
  try {
    static_cast<PipeConnection*>(context)->Deliver(Napi::Env(env));
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
  } catch (const std::exception& e) {
    Napi::Error::New(Napi::Env(env), e.what()).ThrowAsJavaScriptException();
  }
}

void PipeConnection::TsfnFinalize(napi_env env, void* data, void*) {
  auto* self = static_cast<PipeConnection*>(data);
  {
    std::lock_guard<std::mutex> lk(self->mu_);
    self->tsfn_ = nullptr;
  }
  if (self->pinned_) {
    self->pinned_ = false;
    // A C callback, possibly during environment teardown, where napi_reference_unref may fail: a C++
    // exception must not escape from here.
    try {
      self->Napi::ObjectWrap<PipeConnection>::Unref();
    } catch (...) {
    }
  }
}

void PipeConnection::ReleaseTsfn() {
  napi_threadsafe_function t;
  {
    std::lock_guard<std::mutex> lk(mu_);
    t = tsfn_;
    tsfn_ = nullptr;  // finalize still runs (and unpins) once Node is done with it
  }
  if (t != nullptr) napi_release_threadsafe_function(t, napi_tsfn_release);
}

Napi::Value PipeConnection::ToBuffer(Napi::Env env, Block&& block, size_t offset) {
  size_t size = block.size();
  if (size == offset) return Napi::Buffer<uint8_t>::New(env, 0);
  uint8_t* p = block.Release();
  // An external Buffer over the block, or a copy where the environment refuses those (Electron).
  return Addon::Get(env)->NewBuffer(env, p + offset, size - offset, FreeBlock, new BlockSpan{p, size});
}

void PipeConnection::Deliver(Napi::Env env) {
  if (torn_down_ || close_delivered_) return;
  Napi::HandleScope scope(env);
  std::vector<Block> frames;
  bool drain, done;
  {
    std::lock_guard<std::mutex> lk(mu_);
    notify_pending_ = false;
    // Frames read meanwhile stay queued while JS is blocked in call(); they are delivered after it returns.
    if (in_call_) return;
    // Back on the event loop after call(): the I/O thread reads again.
    if (read_mode_ == ReadMode::kPaused) {
      read_mode_ = ReadMode::kThread;
      SetEvent(wake_);
    }
    frames.swap(pending_);
    if (pending_bytes_ >= kMaxUndelivered) SetEvent(wake_);  // the I/O thread stopped reading: resume
    pending_bytes_ = 0;
    drain = drain_pending_;
    drain_pending_ = false;
    done = thread_done_;
  }
  if (!frames.empty() && !close_called_) {
    Napi::Array chunks = Napi::Array::New(env, frames.size());
    for (size_t i = 0; i < frames.size(); i++) chunks.Set(static_cast<uint32_t>(i), ToBuffer(env, std::move(frames[i]), 0));
    try {
      on_frames_.Call({chunks});
    } catch (...) {
      // The listener threw (an uncaught exception for Node): deliver drain/close on a later turn.
      std::lock_guard<std::mutex> lk(mu_);
      drain_pending_ = drain_pending_ || drain;
      NotifyLocked();
      throw;
    }
  }
  UpdateRef();
  if (drain && !done && !close_called_) {
    try {
      on_drain_.Call({});
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu_);
      NotifyLocked();
      throw;
    }
  }
  if (!done) return;
  close_delivered_ = true;
  StopThread();
  if (pipe_ != INVALID_HANDLE_VALUE) {
    CloseHandle(pipe_);
    pipe_ = INVALID_HANDLE_VALUE;
  }
  tracker_->resources.erase(this);
  Napi::Value err = env.Null();
  if (close_err_) {
    err = MakeError(env, close_err_);
    if (err.IsEmpty()) err = env.Null();
  }
  Napi::FunctionReference on_close = std::move(on_close_);
  on_frames_.Reset();
  on_drain_.Reset();
  ReleaseTsfn();
  if (!on_close.IsEmpty()) on_close.Call({err});
}

void PipeConnection::UpdateRef() {
  if (tsfn_ == nullptr) return;  // JS thread: only JS-thread code clears tsfn_ (TsfnFinalize, ReleaseTsfn, teardown)
  bool want;
  {
    std::lock_guard<std::mutex> lk(mu_);
    want = user_ref_ || (buffered_ > 0 && !finished_);
  }
  if (want == tsfn_refd_) return;
  tsfn_refd_ = want;
  if (want) {
    napi_ref_threadsafe_function(Env(), tsfn_);
  } else {
    napi_unref_threadsafe_function(Env(), tsfn_);
  }
}

Napi::Value PipeConnection::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (started_) throw Napi::Error::New(env, "Connection already started");
  if (!info[0].IsFunction() || !info[1].IsFunction() || !info[2].IsFunction()) {
    throw Napi::TypeError::New(env, "start(onFrames, onClose, onDrain) expects three functions");
  }
  started_ = true;
  if (close_called_) return env.Undefined();
  on_frames_ = Napi::Persistent(info[0].As<Napi::Function>());
  on_close_ = Napi::Persistent(info[1].As<Napi::Function>());
  on_drain_ = Napi::Persistent(info[2].As<Napi::Function>());
  napi_threadsafe_function t = nullptr;
  napi_status s = napi_create_threadsafe_function(env, nullptr, nullptr, Napi::String::New(env, "ipcwire.pipe"), 0, 1,
                                                  this, TsfnFinalize, this, CallJs, &t);
  if (s != napi_ok) throw Napi::Error::New(env, "napi_create_threadsafe_function failed");
  // Until the thread-safe function is finalized, its context (this) must stay alive.
  Napi::ObjectWrap<PipeConnection>::Ref();
  pinned_ = true;
  tsfn_refd_ = true;
  {
    std::lock_guard<std::mutex> lk(mu_);
    tsfn_ = t;
    if (read_mode_ == ReadMode::kOff) read_mode_ = ReadMode::kThread;
    if (!pending_.empty() || thread_done_ || drain_pending_) NotifyLocked();
  }
  SetEvent(wake_);
  UpdateRef();
  return env.Undefined();
}

uint64_t PipeConnection::Enqueue(uint8_t kind, uint32_t id, const uint8_t* data, size_t len) {
  // The payload is copied: the write finishes on another thread, after the JS Buffer may be gone.
  std::vector<uint8_t> frame(kFrameHeaderBytes + len);
  WriteU32LE(frame.data(), static_cast<uint32_t>(kBodyHeaderBytes + len));
  frame[4] = kind;
  WriteU32LE(frame.data() + 5, id);
  if (len > 0) memcpy(frame.data() + kFrameHeaderBytes, data, len);
  return PushOut(std::move(frame));
}

uint64_t PipeConnection::PushOut(std::vector<uint8_t>&& bytes) {
  uint64_t b;
  {
    std::lock_guard<std::mutex> lk(mu_);
    buffered_ += bytes.size();
    drain_armed_ = true;
    if (!bytes.empty()) out_.push_back(std::move(bytes));
    b = buffered_;
  }
  SetEvent(wake_);
  return b;
}

bool PipeConnection::AcceptsWrite(Napi::Env env) {
  bool ending, gone;
  {
    std::lock_guard<std::mutex> lk(mu_);
    ending = ending_;
    gone = finished_;
  }
  if (close_called_ || ending) ThrowError(env, ErrorInfo::Ipc(codes::kDisconnected, "The connection is closed"));
  // The peer is gone but onClose has not run yet (JS cannot know): drop the frame quietly, as the Unix
  // transport does with a write the kernel refused. Throwing would surface inside a handler of the very frames
  // that arrived just before the end.
  return !gone;
}

static void PayloadOf(Napi::Env env, const Napi::Value& v, const uint8_t** data, size_t* len) {
  *data = nullptr;
  *len = 0;
  if (v.IsNull() || v.IsUndefined()) return;
  if (!v.IsTypedArray()) throw Napi::TypeError::New(env, "payload must be a Uint8Array or null");
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  *data = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  *len = ta.ByteLength();
}

Napi::Value PipeConnection::Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t* data;
  size_t len;
  PayloadOf(env, info[2], &data, &len);
  if (info[0].As<Napi::Number>().Uint32Value() > 255) throw Napi::RangeError::New(env, "kind must be a byte");
  if (len > kMaxBodyLength - kBodyHeaderBytes) throw Napi::RangeError::New(env, "payload too large for one frame");
  if (!AcceptsWrite(env)) return Napi::Number::New(env, 0);
  uint64_t b = Enqueue(static_cast<uint8_t>(info[0].As<Napi::Number>().Uint32Value()),
                       info[1].As<Napi::Number>().Uint32Value(), data, len);
  UpdateRef();
  return Napi::Number::New(env, static_cast<double>(b));
}

// Bytes that are already whole frames (the JS write batch): copied as they are, no header added.
Napi::Value PipeConnection::WriteFrames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t* data;
  size_t len;
  PayloadOf(env, info[0], &data, &len);
  if (!AcceptsWrite(env)) return Napi::Number::New(env, 0);
  uint64_t b = PushOut(std::vector<uint8_t>(data, data + len));
  UpdateRef();
  return Napi::Number::New(env, static_cast<double>(b));
}

Napi::Value PipeConnection::Call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  const uint8_t* data;
  size_t len;
  PayloadOf(env, info[1], &data, &len);
  const double timeout_ms = info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 0;
  Napi::Function alive = info[3].IsFunction() ? info[3].As<Napi::Function>() : Napi::Function();
  if (in_call_) ThrowError(env, ErrorInfo::Ipc(codes::kBusy, "A blocking call is already in progress"));
  const ErrorInfo disconnected = ErrorInfo::Ipc(codes::kDisconnected, "The connection is closed");
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (close_called_ || finished_ || ending_) ThrowError(env, disconnected);
  }
  const ULONGLONG start = GetTickCount64();
  auto remaining = [&]() -> double {
    return timeout_ms > 0 ? timeout_ms - static_cast<double>(GetTickCount64() - start) : 1e300;
  };

  // 1. Take the pipe's reads over from the I/O thread (unless an earlier call in this same run of JS still has
  // them: see step 4).
  in_call_ = true;
  {
    std::unique_lock<std::mutex> lk(mu_);
    if (read_mode_ != ReadMode::kPaused) {
      read_mode_ = ReadMode::kPauseRequested;
      SetEvent(wake_);
      cv_.wait(lk, [this] { return read_mode_ == ReadMode::kPaused || thread_done_; });
    }
  }
  enum class End { kReply, kTimeout, kGone, kInterrupted };
  End end = End::kGone;
  Block reply;
  bool got = false;
  bool pending = false;
  OVERLAPPED ov;
  bool gone;
  {
    std::lock_guard<std::mutex> lk(mu_);
    gone = thread_done_ || finished_;
  }
  if (!gone) {
    // 2. The request goes out behind everything queued before it (the I/O thread still writes).
    Enqueue(kSync, id, data, len);
    // 3. Block on the pipe until the reply, the deadline, the peer's end or termination.
    for (;;) {
      if (!pending) {
        std::unique_lock<std::mutex> lk(mu_);
        if (finished_) break;  // a write failed: the peer is gone
        ReadTarget t = decoder_.Prepare();
        lk.unlock();
        if (t.size == 0) break;
        memset(&ov, 0, sizeof ov);
        ov.hEvent = call_event_;
        if (!ReadFile(pipe_, t.data, static_cast<DWORD>(std::min<size_t>(t.size, 0x7fffffff)), nullptr, &ov) &&
            GetLastError() != ERROR_IO_PENDING) {
          break;  // broken pipe: the peer is gone; the I/O thread reports the close when it resumes
        }
        pending = true;
      }
      double left = remaining();
      if (left <= 0) {
        end = End::kTimeout;
        break;
      }
      DWORD slice = left < kSliceMs ? static_cast<DWORD>(left) + 1 : kSliceMs;
      if (WaitForSingleObject(call_event_, slice) == WAIT_OBJECT_0) {
        DWORD n = 0;
        pending = false;
        if (!GetOverlappedResult(pipe_, &ov, &n, FALSE)) break;
        std::lock_guard<std::mutex> lk(mu_);
        if (!CommitReadLocked(n, id, &reply, &got)) break;
        if (got) {
          end = End::kReply;
          break;
        }
        continue;
      }
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (finished_) break;
      }
      if (!alive.IsEmpty()) {
        napi_value result;
        if (napi_call_function(env, env.Undefined(), alive, 0, nullptr, &result) != napi_ok) {
          end = End::kInterrupted;
          break;
        }
      }
    }
    if (pending) {
      // Give back a read still in flight; bytes it already took belong to the stream.
      CancelIoEx(pipe_, &ov);
      DWORD n = 0;
      if (GetOverlappedResult(pipe_, &ov, &n, TRUE) && n > 0) {
        std::lock_guard<std::mutex> lk(mu_);
        if (CommitReadLocked(n, id, &reply, &got) && got) end = End::kReply;
      }
    }
  }
  // 4. Frames kept meanwhile go to onFrames on a later turn of the event loop, in order. The reads go back to
  // the I/O thread on that turn too (Deliver), not now: until JS returns to the loop nothing read could be
  // delivered anyway (the Unix transport reads on the loop alike), and a run of sendSync calls then pays the
  // handover once instead of twice per call.
  in_call_ = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (tsfn_ != nullptr && !thread_done_ && read_mode_ == ReadMode::kPaused) {
      NotifyLocked();
    } else if (read_mode_ != ReadMode::kThread) {
      read_mode_ = ReadMode::kThread;
      SetEvent(wake_);
    }
    if (!pending_.empty() || thread_done_) NotifyLocked();
  }
  switch (end) {
    case End::kReply:
      return ToBuffer(env, std::move(reply), kFrameHeaderBytes);
    case End::kTimeout:
      ThrowError(env, ErrorInfo::Ipc(codes::kTimeout, "sendSync timed out after " +
                                                          std::to_string(static_cast<int64_t>(timeout_ms)) + " ms")
                          .With("timeout", timeout_ms));
    case End::kInterrupted:
      // alive() threw, or the termination itself is pending: that exception propagates as is. With none, the
      // environment refused to run JS at all: it is shutting down.
      if (env.IsExceptionPending()) return Napi::Value();
      ThrowError(env, ErrorInfo::Ipc(codes::kInterrupted,
                                     "The synchronous call was interrupted: the environment is terminating"));
    case End::kGone:
    default:
      ThrowError(env, ErrorInfo::Ipc(codes::kDisconnected, "The connection closed before the reply arrived"));
  }
}

Napi::Value PipeConnection::Flush(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double timeout_ms = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
  std::unique_lock<std::mutex> lk(mu_);
  auto done = [this] { return buffered_ == 0 || finished_ || thread_done_; };
  if (timeout_ms > 0) {
    cv_.wait_for(lk, std::chrono::milliseconds(static_cast<int64_t>(timeout_ms)), done);
  }
  return Napi::Number::New(env, static_cast<double>(buffered_));
}

Napi::Value PipeConnection::JsRef(const Napi::CallbackInfo& info) {
  user_ref_ = true;
  UpdateRef();
  return info.Env().Undefined();
}

Napi::Value PipeConnection::JsUnref(const Napi::CallbackInfo& info) {
  user_ref_ = false;
  UpdateRef();
  return info.Env().Undefined();
}

Napi::Value PipeConnection::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (close_called_ || close_delivered_) return env.Undefined();
  close_called_ = true;
  // Stops reading and drops queued writes; onClose(null) follows on a later turn (the thread's last notify).
  StopThread();
  {
    std::lock_guard<std::mutex> lk(mu_);
    pending_.clear();
    pending_bytes_ = 0;
    drain_pending_ = false;
  }
  if (pipe_ != INVALID_HANDLE_VALUE) {
    CloseHandle(pipe_);
    pipe_ = INVALID_HANDLE_VALUE;
  }
  if (tsfn_ == nullptr) tracker_->resources.erase(this);
  return env.Undefined();
}

Napi::Value PipeConnection::End(const Napi::CallbackInfo& info) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    ending_ = true;
  }
  SetEvent(wake_);
  return info.Env().Undefined();
}

Napi::Value PipeConnection::GetBufferedAmount(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lk(mu_);
  return Napi::Number::New(info.Env(), static_cast<double>(buffered_));
}

Napi::Value PipeConnection::GetCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("pid", Napi::Number::New(env, peer_pid_));
  // Windows has no uid/gid; the pipe's DACL already limits peers to this user.
  o.Set("uid", Napi::Number::New(env, -1));
  o.Set("gid", Napi::Number::New(env, -1));
  return o;
}

Napi::Value PipeConnection::GetMaxFrameSize(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lk(mu_);
  return Napi::Number::New(info.Env(), static_cast<double>(decoder_.max_body()));
}

void PipeConnection::SetMaxFrameSize(const Napi::CallbackInfo& info, const Napi::Value& value) {
  if (!value.IsNumber()) throw Napi::TypeError::New(info.Env(), "maxFrameSize must be a number");
  double v = value.As<Napi::Number>().DoubleValue();
  if (!(v >= static_cast<double>(kBodyHeaderBytes))) throw Napi::RangeError::New(info.Env(), "maxFrameSize too small");
  std::lock_guard<std::mutex> lk(mu_);
  decoder_.set_max_body(v > static_cast<double>(kMaxBodyLength) ? kMaxBodyLength : static_cast<uint64_t>(v));
}

}  // namespace win
}  // namespace ipcwire
