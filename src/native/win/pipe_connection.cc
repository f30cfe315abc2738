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
constexpr uint8_t kBlob = 8;         // Kind.BLOB
constexpr uint8_t kHandles = 10;     // Kind.HANDLES
constexpr uint8_t kShm = 13;         // Kind.SHM
constexpr uint8_t kShmBlob = 14;     // Kind.SHM_BLOB
constexpr uint32_t kMaxHandlesPerFrame = 253;  // as SCM_RIGHTS on Linux: the same bound on every platform
constexpr size_t kMaxUntakenHandles = 256;
constexpr size_t kAnnouncementBytes = 4;  // a HANDLES frame with id 0: u32le pid of the end's holder
constexpr DWORD kSliceMs = 20;       // call() notices termination within one slice
constexpr size_t kWriteChunk = 1 << 20;  // one WriteFile moves at most this much (huge frames go in pieces)
constexpr size_t kBatchBytes = 64 * 1024;  // small frames are coalesced into chunks up to this size
constexpr uint64_t kMaxUndelivered = 1 << 20;  // see pending_bytes_

struct Handoff {
  HANDLE pipe;
  bool server_side;
  const std::string* address;
  bool adopted;
};

void WriteU64LE(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint64_t ReadU64LE(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

void CloseAll(std::vector<HANDLE>* handles) {
  for (HANDLE h : *handles) CloseHandle(h);
  handles->clear();
}

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
                         InstanceMethod("writeHandles", &PipeConnection::WriteHandles),
                         InstanceMethod("takeHandles", &PipeConnection::TakeHandles),
                         InstanceAccessor("bufferedAmount", &PipeConnection::GetBufferedAmount, nullptr),
                         InstanceAccessor("credentials", &PipeConnection::GetCredentials, nullptr),
                         InstanceAccessor("maxFrameSize", &PipeConnection::GetMaxFrameSize,
                                          &PipeConnection::SetMaxFrameSize),
                     });
}

Napi::Object PipeConnection::NewInstance(Napi::Env env, HANDLE pipe, bool server_side, const std::string& address,
                                         bool adopted) {
  Handoff h{pipe, server_side, &address, adopted};
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
  adopted_ = h->adopted;
  ULONG pid = 0;
  if (adopted_) {
    // Announce who holds this end before anything else goes out (see the header).
    uint8_t me[kAnnouncementBytes];
    WriteU32LE(me, GetCurrentProcessId());
    Enqueue(kHandles, 0, me, sizeof me);
  } else if (server_side_ ? GetNamedPipeClientProcessId(pipe_, &pid) : GetNamedPipeServerProcessId(pipe_, &pid)) {
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
  if (peer_process_ != nullptr && peer_process_ != GetCurrentProcess()) CloseHandle(peer_process_);
}

void PipeConnection::CloseForTeardown() {
  // No JS from here: the environment may be going away. The thread-safe function is finalized by Node itself.
  torn_down_ = true;
  {
    std::lock_guard<std::mutex> lk(mu_);
    tsfn_ = nullptr;
  }
  StopThread();
  {
    std::lock_guard<std::mutex> lk(mu_);
    CloseReceivedLocked();
  }
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
  std::vector<HANDLE> wremote;  // a HANDLES frame in wcur: the values already in the peer, until fully written
  size_t woff = 0;

  std::unique_lock<std::mutex> lk(mu_);
  if (rov.hEvent == nullptr || wov.hEvent == nullptr) FinishLocked(Win32Error(GetLastError(), "read", address_));
  while (!closing_ && !finished_) {
    // Start a write: the head of the queue, in pieces of at most kWriteChunk.
    if (!writing) {
      bool held = false;  // a HANDLES frame waits for the peer's announcement
      if (woff >= wcur.size() && !out_.empty()) {
        OutFrame& head = out_.front();
        if (!head.handles.empty() && !PushHandlesLocked(&head.bytes, &head.handles, &wremote)) {
          if (finished_) break;
          held = true;
        } else {
          wcur = std::move(head.bytes);
          out_.pop_front();
          woff = 0;
        }
      }
      if (woff < wcur.size()) {
        DWORD len = static_cast<DWORD>(std::min(kWriteChunk, wcur.size() - woff));
        // (WriteFile/ReadFile reset the OVERLAPPED's event themselves: no ResetEvent, one syscall fewer,
        // which under wine is one wineserver round trip fewer.)
        if (!WriteFile(pipe_, wcur.data() + woff, len, nullptr, &wov) && GetLastError() != ERROR_IO_PENDING) {
          // As when a write in flight fails: a broken pipe is the peer leaving, a clean end.
          DWORD err = GetLastError();
          FinishLocked(err == ERROR_BROKEN_PIPE || err == ERROR_NO_DATA || err == ERROR_PIPE_NOT_CONNECTED
                           ? ErrorInfo()
                           : Win32Error(err, "write", address_));
          break;
        }
        writing = true;
      } else if (ending_ && !held) {
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
        wremote.clear();  // the whole frame is in the pipe: the handles are the peer's now
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
  // Handles pushed into the peer for a frame that did not go out whole, and those of frames never written.
  RecallRemoteLocked(&wremote);
  for (OutFrame& f : out_) CloseAll(&f.handles);
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
    if (f.kind == kHandles) {
      bool ok = TakeHandlesFrameLocked(f);
      if (!ok || f.id == 0) {  // an announcement is ours alone; JS never sees it
        if (f.owned) free(f.data);
        if (!ok) return false;
        continue;
      }
    }
    const bool awaiting = want_id >= 0 && reply != nullptr && !*got_reply;
    if (awaiting && (f.kind == kBlob || f.kind == kHandles || f.kind == kShm || f.kind == kShmBlob)) {
      Block b = f.owned ? Block(f.data, f.size) : Block();
      if (!f.owned) b.Append(f.data, f.size);
      b.seal();
      held_.push_back(std::move(b));
      continue;
    }
    if (f.kind == kSyncReply) {
      if (want_id >= 0 && f.id == static_cast<uint32_t>(want_id) && reply != nullptr) {
        *reply = f.owned ? Block(f.data, f.size) : Block();
        if (!f.owned) reply->Append(f.data, f.size);
        *got_reply = true;
      } else {
        // A late reply to a call that already timed out, with what was held for it.
        if (f.owned) free(f.data);
        if (awaiting) DropHeldLocked();
      }
      continue;
    }
    if (awaiting) ReleaseHeldLocked();
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

bool PipeConnection::TakeHandlesFrameLocked(const DecodedFrame& f) {
  const uint8_t* p = f.payload();
  const size_t n = f.payload_size();
  if (f.id == 0) {
    if (n != kAnnouncementBytes || ReadU32LE(p) == 0) {
      FinishLocked(ErrorInfo::Ipc(codes::kBadFrame, "Malformed handle announcement: " + std::to_string(n) +
                                                        " bytes, expected a 4-byte process id"));
      return false;
    }
    // Only an adopted end's peer can have moved; for the others the pipe itself names the peer, and a peer
    // claiming to be another process must not make us push handles there.
    if (adopted_) {
      peer_pid_ = ReadU32LE(p);
      SetEvent(wake_);  // a HANDLES frame may be waiting for it
    }
    return true;
  }
  if (f.id > kMaxHandlesPerFrame || n != 8ull * f.id) {
    FinishLocked(ErrorInfo::Ipc(codes::kBadFrame, "Malformed HANDLES frame: " + std::to_string(f.id) +
                                                      " handles announced in " + std::to_string(n) + " bytes"));
    return false;
  }
  // The values name handles the peer already put into this process. A peer could name one of ours instead:
  // refuse values that are not open handles, that name this connection's own, or that repeat one still
  // untaken, rather than handing them to JS (which would close them). Such values are left alone.
  std::vector<HANDLE> got;
  got.reserve(f.id);
  bool forged = false;
  for (uint32_t i = 0; i < f.id && !forged; i++) {
    const uint64_t v = ReadU64LE(p + 8 * i);
    HANDLE h = reinterpret_cast<HANDLE>(static_cast<uintptr_t>(v));
    DWORD flags = 0;
    forged = v == 0 || v > 0xFFFFFFFFull || h == pipe_ || h == wake_ || h == call_event_ || h == peer_process_ ||
             !GetHandleInformation(h, &flags) || std::find(got.begin(), got.end(), h) != got.end() ||
             std::find(received_.begin(), received_.end(), h) != received_.end();
    if (!forged) got.push_back(h);
  }
  if (forged) {
    FinishLocked(ErrorInfo::Ipc(codes::kBadFrame, "HANDLES frame names a value that is not a handle passed to us"));
    return false;
  }
  if (received_.size() + got.size() > kMaxUntakenHandles) {
    CloseAll(&got);
    FinishLocked(ErrorInfo::Ipc(codes::kBadFrame, "More than " + std::to_string(kMaxUntakenHandles) +
                                                      " received handles not taken"));
    return false;
  }
  received_.insert(received_.end(), got.begin(), got.end());
  return true;
}

bool PipeConnection::PushHandlesLocked(std::vector<uint8_t>* frame, std::vector<HANDLE>* local,
                                       std::vector<HANDLE>* remote) {
  if (peer_pid_ == 0) return false;
  if (peer_process_ == nullptr || peer_process_pid_ != peer_pid_) {
    if (peer_process_ != nullptr && peer_process_ != GetCurrentProcess()) CloseHandle(peer_process_);
    peer_process_pid_ = peer_pid_;
    peer_process_ = peer_pid_ == GetCurrentProcessId() ? GetCurrentProcess()
                                                        : OpenProcess(PROCESS_DUP_HANDLE, FALSE, peer_pid_);
    if (peer_process_ == nullptr) {
      DWORD err = GetLastError();
      peer_process_pid_ = 0;
      CloseAll(local);
      FinishLocked(Win32Error(err, "OpenProcess", address_).With("pid", peer_pid_));
      return false;
    }
  }
  remote->clear();
  for (size_t i = 0; i < local->size(); i++) {
    HANDLE theirs = nullptr;
    // DUPLICATE_CLOSE_SOURCE closes our duplicate whether or not this succeeds.
    if (!DuplicateHandle(GetCurrentProcess(), (*local)[i], peer_process_, &theirs, 0, FALSE,
                         DUPLICATE_SAME_ACCESS | DUPLICATE_CLOSE_SOURCE)) {
      DWORD err = GetLastError();
      for (size_t j = i + 1; j < local->size(); j++) CloseHandle((*local)[j]);
      local->clear();
      RecallRemoteLocked(remote);
      FinishLocked(Win32Error(err, "DuplicateHandle", address_).With("pid", peer_pid_));
      return false;
    }
    remote->push_back(theirs);
    WriteU64LE(frame->data() + kFrameHeaderBytes + 8 * i, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(theirs)));
  }
  local->clear();
  return true;
}

void PipeConnection::RecallRemoteLocked(std::vector<HANDLE>* remote) {
  for (HANDLE h : *remote) {
    // Closes the handle in the peer (if it still runs): the frame naming it never reached it whole.
    DuplicateHandle(peer_process_, h, nullptr, nullptr, 0, FALSE, DUPLICATE_CLOSE_SOURCE);
  }
  remote->clear();
}

void PipeConnection::ReleaseHeldLocked() {
  for (Block& b : held_) {
    pending_bytes_ += b.size();
    pending_.push_back(std::move(b));
  }
  held_.clear();
}

void PipeConnection::DropHeldLocked() {
  for (const Block& b : held_) {
    if (b.size() < kFrameHeaderBytes || b.data()[4] != kHandles) continue;
    // Its handles are the last ones received (nothing came after the held frames).
    for (uint32_t n = ReadU32LE(b.data() + 5); n > 0 && !received_.empty(); n--) {
      CloseHandle(received_.back());
      received_.pop_back();
    }
  }
  held_.clear();
}

void PipeConnection::CloseReceivedLocked() {
  for (HANDLE h : received_) CloseHandle(h);
  received_.clear();
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
  {
    std::lock_guard<std::mutex> lk(mu_);
    CloseReceivedLocked();  // JS took what it wanted from the frames above
  }
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

uint64_t PipeConnection::PushOut(std::vector<uint8_t>&& bytes, std::vector<HANDLE>&& handles) {
  uint64_t b;
  {
    std::lock_guard<std::mutex> lk(mu_);
    buffered_ += bytes.size();
    drain_armed_ = true;
    if (!bytes.empty()) out_.push_back(OutFrame{std::move(bytes), std::move(handles)});
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

Napi::Value PipeConnection::WriteHandles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "writeHandles(handles) expects an array of handles");
  Napi::Array list = info[0].As<Napi::Array>();
  const uint32_t count = list.Length();
  if (count > kMaxHandlesPerFrame) {
    throw Napi::RangeError::New(env, "at most " + std::to_string(kMaxHandlesPerFrame) + " handles per frame");
  }
  std::vector<HANDLE> ours;
  ours.reserve(count);
  for (uint32_t i = 0; i < count; i++) {
    Napi::Value v = list.Get(i);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    HANDLE dup = nullptr;
    if (!(d > 0 && d <= 0xFFFFFFFF) || d != static_cast<double>(static_cast<uint64_t>(d))) {
      CloseAll(&ours);
      throw Napi::TypeError::New(env, "a handle must be a positive integer");
    }
    // Our own duplicate, so that the caller may close its handle at once.
    HANDLE h = reinterpret_cast<HANDLE>(static_cast<uintptr_t>(d));
    if (!DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &dup, 0, FALSE, DUPLICATE_SAME_ACCESS)) {
      DWORD err = GetLastError();
      CloseAll(&ours);
      ThrowError(env, err == ERROR_INVALID_HANDLE ? ErrorInfo::System(-4083 /* EBADF */, "writeHandles")
                                                  : Win32Error(err, "writeHandles"));
    }
    ours.push_back(dup);
  }
  bool accepted;
  try {
    accepted = AcceptsWrite(env);
  } catch (...) {
    CloseAll(&ours);
    throw;
  }
  if (!accepted || count == 0) {  // no frame for no handles (id 0 is an end's announcement)
    CloseAll(&ours);
    std::lock_guard<std::mutex> lk(mu_);
    return Napi::Number::New(env, static_cast<double>(buffered_));
  }
  // The payload is filled in by the I/O thread with the values the peer gets.
  std::vector<uint8_t> frame(kFrameHeaderBytes + 8ull * count, 0);
  WriteU32LE(frame.data(), static_cast<uint32_t>(kBodyHeaderBytes + 8ull * count));
  frame[4] = kHandles;
  WriteU32LE(frame.data() + 5, count);
  uint64_t b = PushOut(std::move(frame), std::move(ours));
  UpdateRef();
  return Napi::Number::New(env, static_cast<double>(b));
}

Napi::Value PipeConnection::TakeHandles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double d = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d <= kMaxUntakenHandles) || d != static_cast<double>(static_cast<uint32_t>(d))) {
    throw Napi::TypeError::New(env, "takeHandles(count) expects a count from 0 to 256");
  }
  const size_t count = static_cast<size_t>(d);
  std::vector<HANDLE> taken;
  size_t had;
  {
    std::lock_guard<std::mutex> lk(mu_);
    had = received_.size();
    if (had >= count) {
      taken.assign(received_.begin(), received_.begin() + count);
      received_.erase(received_.begin(), received_.begin() + count);
    }
  }
  if (taken.size() != count) {
    ThrowError(env, ErrorInfo::Ipc(codes::kBadFrame, std::to_string(count) + " handles expected, " +
                                                         std::to_string(had) + " received"));
  }
  Napi::Array out = Napi::Array::New(env, count);
  for (size_t i = 0; i < count; i++) {
    out.Set(static_cast<uint32_t>(i),
            Napi::Number::New(env, static_cast<double>(reinterpret_cast<uintptr_t>(taken[i]))));
  }
  return out;
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
  std::vector<Block> with_reply;
  {
    std::lock_guard<std::mutex> lk(mu_);
    // No reply: frames held for it belong to whatever comes next.
    if (end == End::kReply) {
      with_reply.swap(held_);
    } else {
      ReleaseHeldLocked();
    }
    if (tsfn_ != nullptr && !thread_done_ && read_mode_ == ReadMode::kPaused) {
      NotifyLocked();
    } else if (read_mode_ != ReadMode::kThread) {
      read_mode_ = ReadMode::kThread;
      SetEvent(wake_);
    }
    if (!pending_.empty() || thread_done_) NotifyLocked();
  }
  switch (end) {
    case End::kReply: {
      if (with_reply.empty()) return ToBuffer(env, std::move(reply), kFrameHeaderBytes);
      // As on Unix: [reply payload, ...the frames before it, whole], marked `frames` so JS reads their kinds.
      Napi::Array out = Napi::Array::New(env, with_reply.size() + 1);
      out.Set(0u, ToBuffer(env, std::move(reply), kFrameHeaderBytes));
      for (size_t i = 0; i < with_reply.size(); i++) {
        out.Set(static_cast<uint32_t>(i + 1), ToBuffer(env, std::move(with_reply[i]), 0));
      }
      out.Set("frames", Napi::Boolean::New(env, true));
      return out;
    }
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
    CloseReceivedLocked();
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
  DWORD pid;
  {
    std::lock_guard<std::mutex> lk(mu_);
    pid = peer_pid_;
  }
  o.Set("pid", Napi::Number::New(env, pid));
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
