// One connected named pipe (either end), the Windows NativeConnection of src/ts/native.ts.
//
// Why an I/O thread of our own: libuv cannot uv_poll a named pipe, and wrapping the handle in a uv_pipe_t would
// need a CRT fd of node.exe's own C runtime (uv_open_osfhandle) and would leave the blocking call fighting
// libuv's zero-byte reads for the pipe. So each connection owns one thread that keeps one overlapped read and
// one overlapped write in flight and hands whole frames to JS through a thread-safe function; the JS thread
// waits for it only in call() (briefly, to take the pipe's reads over) and flush().
//
// call() (sendSync) blocks the calling thread on the pipe itself: it asks the I/O thread to cancel its read and
// stand aside (reads only: the thread keeps writing, so the request goes out behind earlier messages), then
// reads with its own overlapped ReadFile, waiting in 20 ms slices and calling alive() between them. Both
// readers feed the one FrameDecoder in turn, so no frame is lost, duplicated or reordered; frames other than
// the awaited reply are kept and handed to onFrames after call() returns.
//
// Handles (HANDLES frames): the writer duplicates each handle into the reader's process and sends the values.
// writeHandles() takes a duplicate in our own process at once (the caller may close its own); the I/O thread
// pushes it into the peer (DuplicateHandle with DUPLICATE_CLOSE_SOURCE) right before that frame is written, so
// the values always name the process holding the other end at that moment. The peer is the pipe's client or
// server process for connect()/listen() connections. For adopted ends (socketpair() ends that may have
// travelled to other processes) the pipe only knows who created it, so each adopted end announces its own
// pid first (a HANDLES frame with no handles and a u32le pid as payload, consumed here, never seen by JS);
// handle frames wait until the peer's announcement arrived. Received values go to a FIFO (takeHandles);
// untaken ones are closed with the connection.
#ifndef IPCWIRE_WIN_PIPE_CONNECTION_H_
#define IPCWIRE_WIN_PIPE_CONNECTION_H_

#include <windows.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <napi.h>

#include "../addon.h"
#include "../block.h"
#include "../errors.h"
#include "../frame_decoder.h"

namespace ipcwire {
namespace win {

class PipeConnection : public Napi::ObjectWrap<PipeConnection>, public Resource {
 public:
  static Napi::Function Define(Napi::Env env);
  /** Wraps a connected pipe handle (ownership passes to the new object). */
  static Napi::Object NewInstance(Napi::Env env, HANDLE pipe, bool server_side, const std::string& address,
                                  bool adopted = false);

  explicit PipeConnection(const Napi::CallbackInfo& info);
  ~PipeConnection() override;

  void CloseForTeardown() override;

 private:
  enum class ReadMode { kOff, kThread, kPauseRequested, kPaused };

  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value WriteFrames(const Napi::CallbackInfo& info);
  Napi::Value Call(const Napi::CallbackInfo& info);
  Napi::Value Flush(const Napi::CallbackInfo& info);
  Napi::Value JsRef(const Napi::CallbackInfo& info);
  Napi::Value JsUnref(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value End(const Napi::CallbackInfo& info);
  Napi::Value WriteHandles(const Napi::CallbackInfo& info);
  Napi::Value TakeHandles(const Napi::CallbackInfo& info);
  Napi::Value GetBufferedAmount(const Napi::CallbackInfo& info);
  Napi::Value GetCredentials(const Napi::CallbackInfo& info);
  Napi::Value GetMaxFrameSize(const Napi::CallbackInfo& info);
  void SetMaxFrameSize(const Napi::CallbackInfo& info, const Napi::Value& value);

  void IoThread();
  // With mu_ held, by whichever thread owns the reads: `n` bytes landed at the decoder's last Prepare()
  // target. Frames go to pending_, except a SYNC_REPLY: the one `want_id` names (want_id >= 0) goes to
  // *reply, any other is a late reply to a call that timed out and is dropped. False on a bad frame.
  bool CommitReadLocked(size_t n, int64_t want_id, Block* reply, bool* got_reply);
  bool DrainDecoderLocked(int64_t want_id, Block* reply, bool* got_reply);
  // With mu_ held: a received HANDLES frame. Values go to received_ (or the peer's pid to peer_pid_); false
  // (connection finished with ERR_IPC_BAD_FRAME) on a malformed frame or past the bound of untaken handles.
  bool TakeHandlesFrameLocked(const DecodedFrame& f);
  // With mu_ held, on the I/O thread: moves a queued HANDLES frame's handles into the peer and writes their
  // values into its payload. False while the peer is not known yet (the frame waits); on failure the
  // connection is finished.
  bool PushHandlesLocked(std::vector<uint8_t>* frame, std::vector<HANDLE>* local, std::vector<HANDLE>* remote);
  // With mu_ held: closes handles already pushed into the peer whose frame was never written.
  void RecallRemoteLocked(std::vector<HANDLE>* remote);
  void CloseReceivedLocked();
  // With mu_ held: frames held as maybe the awaited reply's (see held_) go to pending_ after all.
  void ReleaseHeldLocked();
  // With mu_ held: a late reply came: its held frames are dropped (and their handles closed).
  void DropHeldLocked();
  void FinishLocked(ErrorInfo err);
  void NotifyLocked();
  void StopThread();  // JS thread or teardown: stop and join the I/O thread
  void UpdateRef();   // JS thread: keep the loop alive iff ref'd by the user or writes are pending
  void Deliver(Napi::Env env);
  void ReleaseTsfn();
  static void CallJs(napi_env env, napi_value, void* context, void*);
  static void TsfnFinalize(napi_env env, void* data, void* hint);
  uint64_t Enqueue(uint8_t kind, uint32_t id, const uint8_t* data, size_t len);
  // Appends bytes (whole frames) to the I/O thread's queue and wakes it; returns the bytes buffered. `handles`
  // (a HANDLES frame's own duplicates) are owned by the queue from here on.
  uint64_t PushOut(std::vector<uint8_t>&& bytes, std::vector<HANDLE>&& handles = std::vector<HANDLE>());
  // For write()/writeFrames(): throws ERR_IPC_DISCONNECTED once closed or ending; false (drop quietly) once
  // the pipe has ended but onClose has not run yet.
  bool AcceptsWrite(Napi::Env env);
  Napi::Value ToBuffer(Napi::Env env, Block&& block, size_t offset);

  std::shared_ptr<LoopTracker> tracker_;
  HANDLE pipe_ = INVALID_HANDLE_VALUE;
  HANDLE wake_ = nullptr;        // auto-reset: wakes the I/O thread (write queued, pause, resume, close)
  HANDLE call_event_ = nullptr;  // manual-reset: the JS thread's own reads in call()
  bool server_side_ = false;
  std::string address_;
  bool adopted_ = false;  // a socketpair() end: the peer's pid comes from its announcement

  // JS thread only.
  Napi::FunctionReference on_frames_, on_close_, on_drain_;
  napi_threadsafe_function tsfn_ = nullptr;  // also read by the I/O thread, under mu_
  bool started_ = false;
  bool user_ref_ = false;  // connections start unref'd, as on Unix; the TS layer refs them while needed
  bool tsfn_refd_ = true;
  bool pinned_ = false;    // strong reference on the JS object while the thread-safe function lives
  bool close_called_ = false;
  bool close_delivered_ = false;
  bool in_call_ = false;
  bool torn_down_ = false;
  std::thread io_;

  // Shared with the I/O thread, under mu_.
  std::mutex mu_;
  std::condition_variable cv_;  // read mode changes, write progress, thread end
  struct OutFrame {
    std::vector<uint8_t> bytes;
    std::vector<HANDLE> handles;  // a HANDLES frame: our duplicates, pushed into the peer when written
  };
  std::deque<OutFrame> out_;  // whole frames not yet handed to WriteFile
  DWORD peer_pid_ = 0;        // 0: not known yet (an adopted end before the peer's announcement)
  HANDLE peer_process_ = nullptr;  // opened for peer_process_pid_ with PROCESS_DUP_HANDLE (I/O thread)
  DWORD peer_process_pid_ = 0;
  std::deque<HANDLE> received_;  // handles received and not taken yet, in arrival order
  uint64_t buffered_ = 0;                 // bytes in out_ plus the write in flight
  bool drain_armed_ = false;              // write() reported bytes buffered: signal onDrain at zero
  bool drain_pending_ = false;
  std::vector<Block> pending_;  // decoded frames for onFrames, in arrival order
  // During call(): BLOB / HANDLES / SHM / SHM_BLOB frames read last, which belong to the reply if it comes
  // next (the peer writes them right before it); call() returns them with it, whole.
  std::vector<Block> held_;
  // Bytes in pending_. Past kMaxUndelivered the I/O thread stops reading until JS took them (Deliver): a
  // receiver whose JS is busy lets the pipe fill, so the sender sees it in bufferedAmount (as with a socket
  // nobody polls) and memory stays bounded.
  uint64_t pending_bytes_ = 0;
  bool notify_pending_ = false;
  ReadMode read_mode_ = ReadMode::kOff;
  bool ending_ = false;   // end(): finish once out_ is written
  bool closing_ = false;  // close()/teardown: the thread stops now
  bool finished_ = false;  // the stream ended (EOF, error, bad frame, end(), close): close_err_ says why
  bool thread_done_ = false;
  ErrorInfo close_err_;
  FrameDecoder decoder_;
};

}  // namespace win
}  // namespace ipcwire

#endif  // IPCWIRE_WIN_PIPE_CONNECTION_H_
