// One connected AF_UNIX stream socket: non-blocking reads/writes on the event loop (uv_poll), plus the
// blocking call() behind sendSync, which waits on the same fd with poll() on the JS thread.
#ifndef IPCWIRE_UNIX_CONNECTION_H_
#define IPCWIRE_UNIX_CONNECTION_H_

#include <napi.h>
#include <uv.h>

#include <deque>
#include <memory>
#include <vector>

#include "../addon.h"
#include "../block.h"
#include "../errors.h"
#include "../frame_decoder.h"
#include "sys.h"

namespace ipcwire {

class Connection;

// Descriptors this process owns until they are closed or handed on (moving transfers ownership).
class OwnedFds {
 public:
  OwnedFds() = default;
  OwnedFds(OwnedFds&& o) noexcept : fds_(std::move(o.fds_)) { o.fds_.clear(); }
  OwnedFds& operator=(OwnedFds&& o) noexcept {
    if (this != &o) {
      CloseAll();
      fds_ = std::move(o.fds_);
      o.fds_.clear();
    }
    return *this;
  }
  OwnedFds(const OwnedFds&) = delete;
  OwnedFds& operator=(const OwnedFds&) = delete;
  ~OwnedFds() { CloseAll(); }
  void CloseAll() {
    for (int fd : fds_) sys::CloseFd(fd);
    fds_.clear();
  }
  std::vector<int>& list() { return fds_; }
  bool empty() const { return fds_.empty(); }
  size_t size() const { return fds_.size(); }

 private:
  std::vector<int> fds_;
};

// The libuv handles of a connection, in their own allocation: it is freed only in the last close
// callback, which may run after the Connection (a GC'd JS object) is gone. `owner` is cleared then.
struct ConnHandles {
  uv_poll_t poll;
  uv_timer_t timer;  // deferred delivery: frames kept during call(), drain, close after peer loss
  Connection* owner = nullptr;
  int fd = -1;
  int open = 0;
  std::shared_ptr<LoopTracker> tracker;
};

class Connection : public Napi::ObjectWrap<Connection>, public Resource {
 public:
  static Napi::Function Define(Napi::Env env);
  // Wraps an already connected fd (ownership passes to the Connection).
  static Napi::Object NewInstance(Napi::Env env, int fd, const sys::Credentials& creds);
  // Most received descriptors held for takeHandles() at once; more closes the connection (ERR_IPC_BAD_FRAME).
  static constexpr size_t kMaxUntakenHandles = 256;

  explicit Connection(const Napi::CallbackInfo& info);
  ~Connection() override;

  void CloseForTeardown() override;

 private:
  struct WriteItem {
    uint8_t header[kFrameHeaderBytes];
    size_t header_off = 0;
    const uint8_t* data = nullptr;
    size_t len = 0;
    size_t off = 0;
    std::vector<uint8_t> copy;           // the payload (rest) when copied
    Napi::Reference<Napi::Value> keep;   // the payload's owner when not copied
    // A HANDLES frame's descriptors (our duplicates): sent with the frame's first byte, closed once sent or
    // when the item is dropped.
    OwnedFds fds;
    size_t remaining() const { return (kFrameHeaderBytes - header_off) + (len - off); }
  };

  // The SYNC_REPLY a blocking call() waits for.
  struct CallMatch {
    uint32_t id = 0;
    bool found = false;
    Block frame;  // whole frame (prefix included), payload at kFrameHeaderBytes
    // BLOB frames read since the last other frame: the reply's large byte arrays if the reply comes next,
    // otherwise they belong to that other frame and go to pending_ before it.
    std::vector<Block> blobs;
  };
  // Moves BLOB frames held by a call into pending_, in order (they belong to a frame that is not the reply).
  void ReleaseHeldBlobs(CallMatch* match);

  enum class ReadEnd { kAgain, kBudget, kReply, kEof, kError, kDecodeError, kHandleError };

  // JS methods.
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value WriteFrames(const Napi::CallbackInfo& info);
  Napi::Value WriteHandles(const Napi::CallbackInfo& info);
  Napi::Value TakeHandles(const Napi::CallbackInfo& info);
  // For write()/writeFrames(): throws ERR_IPC_DISCONNECTED once closed or ending; false (drop quietly) once
  // the peer is gone but onClose has not run yet.
  bool AcceptsWrite(Napi::Env env);
  Napi::Value Call(const Napi::CallbackInfo& info);
  Napi::Value Flush(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value End(const Napi::CallbackInfo& info);
  Napi::Value GetBufferedAmount(const Napi::CallbackInfo& info);
  Napi::Value GetCredentials(const Napi::CallbackInfo& info);
  Napi::Value GetMaxFrameSize(const Napi::CallbackInfo& info);
  void SetMaxFrameSize(const Napi::CallbackInfo& info, const Napi::Value& value);

  // libuv callbacks.
  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnTimer(uv_timer_t* handle);
  static void OnHandleClosed(uv_handle_t* handle);

  void OnReadable(int poll_status);
  void OnWritable();
  void OnDeferred();
  void OnJsUnavailable();
  void OnClosed();

  // I/O.
  ReadEnd ReadAvailable(size_t budget, CallMatch* match, int* err, bool stop_on_short = true);
  bool DrainDecoder(CallMatch* match);
  void AppendPending(const DecodedFrame& f);
  int FlushSome();  // 0 or errno; writes what the kernel takes
  void Consume(size_t n);
  // Queues bytes that are already whole frames (no header added); copied unless the kernel takes them at once.
  void EnqueueFrames(const uint8_t* data, size_t len);
  // Writes as much of `total` bytes as the kernel takes now (loops over partial writes and EINTR); `fill(done,
  // iov)` describes the bytes from offset `done` in at most 2 iovecs and returns how many. Returns the bytes
  // written, or -1 after WriteFailed.
  template <typename Fill>
  ssize_t WriteNow(size_t total, Fill fill);
  // Appends to the write queue and updates the count, poll, ref and pin.
  void PushQueued(WriteItem&& it);
  void Enqueue(uint8_t kind, uint32_t id, const uint8_t* data, size_t len, Napi::Value owner, bool coalesce = true);
  // Blocks until the queue is empty (or the reply arrived / deadline / peer gone). See Call/Flush.
  enum class WaitEnd { kDone, kTimeout, kGone, kInterrupted, kException, kClosed };
  WaitEnd WaitLoop(CallMatch* match, double deadline, const Napi::Function* alive);

  // State transitions.
  void PeerGone(ErrorInfo err);
  void WriteFailed(int errnum);
  WaitEnd CallAlive(const Napi::Function& alive);
  void FinishClose(ErrorInfo err);
  // Stops and closes both libuv handles (their close callbacks free them) and closes the socket at once.
  void CloseHandlesAndSocket();
  void MaybeFinishPeerGone();
  void ScheduleDeferred();
  void UpdatePoll();
  void UpdateRef();
  void UpdatePin();
  ErrorInfo DecodeError() const;

  // JS callbacks (only from libuv callbacks, never re-entrantly inside a JS call into us).
  void DeliverPending();
  void CallJs(Napi::FunctionReference& fn, const std::vector<napi_value>& args);
  // Frames up to `copy_up_to` bytes become ordinary (copied) Buffers, larger ones external Buffers.
  Napi::Value ToBuffer(Napi::Env env, Block&& block, size_t offset, size_t copy_up_to);

  Napi::Env env_;
  std::shared_ptr<LoopTracker> tracker_;
  ConnHandles* handles_ = nullptr;
  int fd_ = -1;
  int poll_events_ = 0;
  sys::Credentials creds_;
  FrameDecoder decoder_;

  std::deque<WriteItem> queue_;
  size_t buffered_ = 0;
  // A Float64Array cell JS reads as bufferedAmount (returned by start()); kept equal to buffered_.
  double* buffered_cell_ = nullptr;
  Napi::Reference<Napi::ArrayBuffer> buffered_cell_ref_;
  void PublishBuffered() {
    if (buffered_cell_ != nullptr) *buffered_cell_ = static_cast<double>(buffered_);
  }
  std::vector<Block> pending_;  // decoded frames not yet handed to onFrames, in arrival order
  // Descriptors received (SCM_RIGHTS) and not yet taken by JS, in arrival order; closed with the connection.
  std::deque<int> received_;
  // How many of received_ (from the front) belong to HANDLES frames already decoded and on their way to JS
  // (queued in pending_, or delivered and not taken yet). The descriptors of HANDLES frames a blocking call holds
  // for its reply come right after them: call() hands those over with the reply, so that a HANDLES frame
  // delivered later still finds its own descriptors at the front.
  size_t handles_owed_ = 0;
  void CloseReceived() {
    for (int fd : received_) sys::CloseFd(fd);
    received_.clear();
    handles_owed_ = 0;
  }
  ErrorInfo handle_err_;  // why received descriptors broke the connection (kHandleError)

  Napi::FunctionReference on_frames_, on_close_, on_drain_;
  std::unique_ptr<Napi::AsyncContext> async_context_;

  ErrorInfo close_err_;
  ErrorInfo write_err_;  // why a write failed; the close reason only if no EOF / read error follows
  bool started_ = false;
  bool user_ref_ = false;  // connections start unref'd; the TS layer refs them while it needs them
  bool pinned_ = false;
  bool peer_gone_ = false;  // EOF / error / bad frame seen: no more reads or writes, close follows
  bool write_failed_ = false;  // a write failed (EPIPE...): queue dropped, reads continue to EOF
  bool ending_ = false;
  bool closed_ = false;
  bool close_delivered_ = false;
  bool drain_pending_ = false;
  bool in_call_ = false;
  // Set by a frame written straight to the kernel; cleared when this connection's poll callback next runs (a new
  // event-loop turn). While set, further frames queue and go out together in one writev on the next turn.
  bool wrote_direct_ = false;
};

}  // namespace ipcwire

#endif  // IPCWIRE_UNIX_CONNECTION_H_
