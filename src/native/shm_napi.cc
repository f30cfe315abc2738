// The JS face of shm_pool.h: `new binding.ShmPool(size)` (the sending side's segment) and
// `new binding.ShmMapping(fd)` (the peer's segment, mapped here). Nothing static: each environment defines
// its own classes.
#include "shm_napi.h"

#include <cerrno>
#include <cstring>
#include <memory>

#ifdef _WIN32
#include <windows.h>
#else
#include <unistd.h>
#endif

#include "addon.h"
#include "errors.h"
#include "shm_pool.h"
#include "warm_heap.h"

namespace ipcwire {

namespace {

uint32_t ToU32(const Napi::Value& v) {
  if (!v.IsNumber()) return 0xffffffffu;
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d))) return 0xffffffffu;
  return static_cast<uint32_t>(d);
}

// What a Buffer over one of this process's own blocks (allocShared) keeps alive.
struct LocalHint {
  std::shared_ptr<shm::Pool> pool;
  uint32_t offset;
};

// What a Buffer over a block of the peer's segment keeps alive, and the slot it gives back.
struct ViewHint {
  std::shared_ptr<shm::Mapping> mapping;
  uint32_t slot;
  // Bytes counted in the mapping's live_view_bytes while the view lives.
  uint32_t live = 0;
  // Bytes taken back out of V8's external-memory count when the view was made (see View), given back here.
  int64_t uncounted = 0;
};

void FinalizeLocal(napi_env, void*, void* hint) {
  auto* h = static_cast<LocalHint*>(hint);
  h->pool->DropLocal(h->offset);
  delete h;
}

void FinalizeView(napi_env env, void*, void* hint) {
  auto* h = static_cast<ViewHint*>(hint);
  if (h->uncounted != 0) {
    // Counted back already if releaseShared() detached a view this large: it did so right as V8 stopped
    // counting it (here, a turn later, the count would have dipped meanwhile, and V8 lowers its limit with it).
    std::atomic<int64_t>& recounted = h->mapping->recounted_bytes();
    int64_t prior = recounted.load(std::memory_order_relaxed);
    while (prior >= h->uncounted && !recounted.compare_exchange_weak(prior, prior - h->uncounted, std::memory_order_relaxed)) {
    }
    if (prior < h->uncounted) {
      int64_t ignored;
      napi_adjust_external_memory(env, h->uncounted, &ignored);
    }
  }
  if (h->live != 0) h->mapping->live_view_bytes().fetch_sub(h->live, std::memory_order_relaxed);
  // Only an atomic store into shared memory: fine on any thread and at teardown. The sender reads it when
  // it next allocates.
  h->mapping->counter(h->slot)->fetch_sub(1, std::memory_order_release);
  delete h;
}

// After a N-API call that failed where the failure is handled here (a fallback): the exception it may have left
// pending is dropped, so that it does not surface later in unrelated JS.
void DropPendingException(napi_env env) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) {
    napi_value ignored;
    napi_get_and_clear_last_exception(env, &ignored);
  }
}

// A 1-byte ArrayBuffer made right before a view: V8 starts a scavenge when a backing store is allocated while
// young array buffers hold twice its largest semi-space (32 MiB by default), so views that died young give their
// blocks back every 32 MiB or so rather than at a full collection (see ShmMapping::View).
void PromptYoungCollection(napi_env env) {
  napi_value probe;
  void* probe_data;
  if (napi_create_arraybuffer(env, 1, &probe_data, &probe) != napi_ok) DropPendingException(env);
}

// The live peer mappings of this environment, the expired entries dropped (so that the list does not grow with
// every connection of a process that never calls releaseShared()).
std::vector<std::weak_ptr<shm::Mapping>>& LivePeerMappings(napi_env env) {
  auto& mappings = Addon::Get(env)->peer_mappings;
  for (size_t i = 0; i < mappings.size();) {
    if (mappings[i].expired()) {
      mappings[i] = std::move(mappings.back());
      mappings.pop_back();
    } else {
      ++i;
    }
  }
  return mappings;
}

void CloseFd(int fd) {
  if (fd < 0) return;
#ifdef _WIN32
  CloseHandle(reinterpret_cast<HANDLE>(static_cast<intptr_t>(fd)));
#else
  close(fd);
#endif
}

// Views of at least this many bytes are not counted as this process's memory by V8 (see ShmMapping::View).
constexpr uint32_t kUncountedViewBytes = 16u << 20;

class ShmPool : public Napi::ObjectWrap<ShmPool> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ShmPool",
                       {
                           InstanceAccessor<&ShmPool::GetFd>("fd"),
                           InstanceAccessor<&ShmPool::GetSize>("size"),
                           InstanceMethod<&ShmPool::CloseFdMethod>("closeFd"),
                           InstanceMethod<&ShmPool::Put>("put"),
                           InstanceMethod<&ShmPool::Alloc>("alloc"),
                           InstanceMethod<&ShmPool::Stats>("stats"),
                           InstanceMethod<&ShmPool::CopyOut>("copyOut"),
                           InstanceMethod<&ShmPool::Pin>("pin"),
                           InstanceMethod<&ShmPool::Unpin>("unpin"),
                           InstanceMethod<&ShmPool::ViewOwn>("viewOwn"),
                           InstanceMethod<&ShmPool::Close>("close"),
                       });
  }

  ShmPool(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ShmPool>(info) {
    Napi::Env env = info.Env();
    double size = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
    if (!(size > static_cast<double>(shm::kHeaderBytes) && size <= static_cast<double>(shm::kMaxSegmentBytes))) {
      throw Napi::RangeError::New(env, "ShmPool size out of range");
    }
    std::string call;
    int err_no = 0;
    auto mapping = shm::Mapping::Create(static_cast<size_t>(size), &fd_, &call, &err_no);
    if (!mapping) {
      if (err_no == 0) throw Napi::Error::New(env, call);
      ThrowError(env, ErrorInfo::System(err_no, call.c_str()));
    }
    pool_ = std::make_shared<shm::Pool>(std::move(mapping));
  }

  ~ShmPool() override { CloseFd(fd_); }

 private:
  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }
  Napi::Value GetSize(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), pool_ ? static_cast<double>(pool_->mapping()->size()) : 0);
  }

  // The descriptor is only needed until it has been passed to the peer (which dups it).
  Napi::Value CloseFdMethod(const Napi::CallbackInfo& info) {
    CloseFd(fd_);
    fd_ = -1;
    return info.Env().Undefined();
  }

  // put(bytes) -> [slot, offset] | null: the block the peer reads `bytes` from. Bytes inside one of this
  // pool's own blocks (allocShared) are not copied; others are copied into a free block. null when the pool
  // is full or closed: the caller sends them through the socket.
  Napi::Value Put(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!pool_ || !info[0].IsTypedArray()) return env.Null();
    Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
    size_t length = ta.ByteLength();
    const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    uint32_t slot = 0, offset = 0;
    if (!pool_->Find(src, length, &slot, &offset)) {
      if (!pool_->Alloc(length, &slot, &offset)) return env.Null();
      memcpy(pool_->mapping()->base() + offset, src, length);
    }
    pool_->Sent(slot);
    Napi::Array out = Napi::Array::New(env, 2);
    out.Set(0u, Napi::Number::New(env, slot));
    out.Set(1u, Napi::Number::New(env, offset));
    return out;
  }

  // alloc(size) -> Buffer | null: a Buffer over a fresh block of this pool (zero copy when sent).
  Napi::Value Alloc(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t length = ToU32(info[0]);
    if (!pool_ || length == 0xffffffffu) return env.Null();
    uint32_t slot = 0, offset = 0;
    if (!pool_->Alloc(length, &slot, &offset)) return env.Null();
    pool_->AddLocal(offset);
    auto* hint = new LocalHint{pool_, offset};
    napi_value buf;
    napi_status s = napi_create_external_buffer(env, length, pool_->mapping()->base() + offset, FinalizeLocal, hint, &buf);
    if (s != napi_ok) {
      // Electron's V8 sandbox refuses Buffers over foreign memory: no zero copy there.
      FinalizeLocal(env, nullptr, hint);
      DropPendingException(env);
      return env.Null();
    }
    return Napi::Value(env, buf);
  }

  // The bytes that (offset, length) in info[0], info[1] name in this pool, with their length and the offset of
  // their block, when they lie inside one block in use; nullptr otherwise (or once closed).
  uint8_t* BytesInBlock(const Napi::CallbackInfo& info, uint32_t* length, uint32_t* block) const {
    uint32_t offset = ToU32(info[0]);
    *length = ToU32(info[1]);
    if (!pool_ || offset == 0xffffffffu || *length == 0xffffffffu || offset > pool_->mapping()->size()) return nullptr;
    uint8_t* p = pool_->mapping()->base() + offset;
    return pool_->BlockOf(p, *length, block) ? p : nullptr;
  }

  // BytesInBlock for a reference the peer sent: ERR_IPC_BAD_FRAME instead of nullptr.
  uint8_t* ReferencedBytes(const Napi::CallbackInfo& info, uint32_t* length, uint32_t* block) const {
    uint8_t* p = BytesInBlock(info, length, block);
    if (p == nullptr) {
      ThrowError(info.Env(), ErrorInfo::Ipc(codes::kBadFrame, "A reference to shared memory that is not a block in use"));
    }
    return p;
  }

  // copyOut(offset, length) -> Buffer: a copy of bytes of this pool that the peer referred to instead of sending
  // them back (an echo of a view it had of them). ERR_IPC_BAD_FRAME unless they lie inside one block in use.
  Napi::Value CopyOut(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t length = 0, block = 0;
    uint8_t* p = ReferencedBytes(info, &length, &block);
    KeepLargeFreesWarm(length);
    return Napi::Buffer<uint8_t>::Copy(env, p, length);
  }

  // pin(offset, length) -> block | -1: holds the block containing those bytes of this pool (as an allocShared
  // Buffer does) until unpin(block), so that the peer may refer to them in its answer; -1 if no block in use
  // contains them.
  Napi::Value Pin(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t length = 0, block = 0;
    if (BytesInBlock(info, &length, &block) == nullptr) return Napi::Number::New(env, -1);
    pool_->AddLocal(block);
    return Napi::Number::New(env, block);
  }

  Napi::Value Unpin(const Napi::CallbackInfo& info) {
    uint32_t block = ToU32(info[0]);
    if (pool_ && block != 0xffffffffu) pool_->DropLocal(block);
    return info.Env().Undefined();
  }

  // viewOwn(offset, length) -> Buffer over bytes of this pool that the peer referred to in an answer (an echo of
  // a view of an argument, whose block this side pinned): no copy; the block stays held while the Buffer lives.
  // A copy where external Buffers are refused. ERR_IPC_BAD_FRAME unless they lie inside one block in use.
  Napi::Value ViewOwn(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t length = 0, block = 0;
    uint8_t* p = ReferencedBytes(info, &length, &block);
    // Such a view holds a block of this side's pool, which its next messages need: prompted as the peer's views are.
    PromptYoungCollection(env);
    pool_->AddLocal(block);
    auto* hint = new LocalHint{pool_, block};
    return Addon::Get(env)->NewBuffer(env, p, length, FinalizeLocal, hint);
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    out.Set("blocks", Napi::Number::New(env, pool_ ? static_cast<double>(pool_->blocks()) : 0));
    out.Set("bytesInUse", Napi::Number::New(env, pool_ ? static_cast<double>(pool_->bytes_in_use()) : 0));
    return out;
  }

  // Idempotent. The mapping stays until the last Buffer over one of its blocks is gone.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseFd(fd_);
    fd_ = -1;
    pool_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<shm::Pool> pool_;
  int fd_ = -1;
};

class ShmMapping : public Napi::ObjectWrap<ShmMapping> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ShmMapping",
                       {
                           InstanceAccessor<&ShmMapping::GetSize>("size"),
                           InstanceMethod<&ShmMapping::View>("view"),
                           InstanceMethod<&ShmMapping::Locate>("locate"),
                           InstanceMethod<&ShmMapping::Stats>("stats"),
                           InstanceMethod<&ShmMapping::Close>("close"),
                       });
  }

  // new ShmMapping(fd): maps the peer's segment. Takes the descriptor: it is closed here, mapped or not.
  ShmMapping(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ShmMapping>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "ShmMapping expects a descriptor");
    int fd = info[0].As<Napi::Number>().Int32Value();
    std::string why;
    mapping_ = fd >= 0 ? shm::Mapping::Adopt(fd, &why) : nullptr;
    CloseFd(fd);
    if (!mapping_) {
      ThrowError(env, ErrorInfo::Ipc(codes::kBadFrame, "The peer's shared memory cannot be used: " +
                                                           (why.empty() ? std::string("bad descriptor") : why)));
    }
    LivePeerMappings(env).push_back(mapping_);
  }

 private:
  Napi::Value GetSize(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), mapping_ ? static_cast<double>(mapping_->size()) : 0);
  }

  // view(slot, offset, length, copy) -> Buffer over that block (or a copy when `copy` is true, where external
  // Buffers are refused, or with IPCWIRE_COPY_BUFFERS=1); the block is given back when the Buffer goes (at once
  // for a copy).
  // ERR_IPC_BAD_FRAME for a block outside the segment.
  Napi::Value View(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t slot = ToU32(info[0]), offset = ToU32(info[1]), length = ToU32(info[2]);
    uint8_t* p = mapping_ ? mapping_->Locate(slot, offset, length) : nullptr;
    if (p == nullptr || length == 0xffffffffu || offset == 0xffffffffu) {
      ThrowError(env, ErrorInfo::Ipc(codes::kBadFrame, "A shared-memory block outside the peer's segment"));
    }
    auto* hint = new ViewHint{mapping_, slot};
    if (info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value()) {
      KeepLargeFreesWarm(length);
      Napi::Value copy = Napi::Buffer<uint8_t>::Copy(env, p, length);
      FinalizeView(env, nullptr, hint);
      return copy;
    }
    // A view gives its block back only when V8 collects it. Left to V8's own pace that is a mark-compact once
    // external memory grew by 64 MiB (the default pool: the sender has run dry by then) and tens of milliseconds
    // of incremental marking later, while the sender falls back to the socket. But views die young (a listener
    // drops them), and a scavenge frees young ones for a fraction of a millisecond. V8 starts one when a
    // backing store is allocated while young array buffers hold twice its largest semi-space (32 MiB by
    // default): a 1-byte ArrayBuffer per view lets it check, so the blocks come back every 32 MiB or so,
    // before the pool runs out. Made before the new view, so that the scavenge does not keep that one alive.
    PromptYoungCollection(env);
    hint->live = length;
    mapping_->live_view_bytes().fetch_add(length, std::memory_order_relaxed);
    Napi::Value view = Addon::Get(env)->NewBuffer(env, p, length, FinalizeView, hint);
    if (length >= kUncountedViewBytes && Addon::Get(env)->buffer_mode == Addon::BufferMode::kExternal) {
      // V8 counts an external Buffer's bytes as memory this process allocated, and a large one (64 MiB) starts a
      // full collection at once. These bytes are the peer's pool, mapped anyway and bounded by its size: they are
      // taken out of the count while the view lives (V8 subtracts them again when it frees the view, the
      // finalizer adds them back). Only after V8 added them: taking them out first would let the count fall
      // below zero, which newer V8 versions refuse with a CHECK, and would lower V8's limit (64 MiB above the
      // lowest count since the last full collection) so that the view's own bytes crossed it. Small views stay
      // counted, so that a stream of them still prompts the collections that give their blocks back.
      int64_t ignored;
      if (napi_adjust_external_memory(env, -static_cast<int64_t>(length), &ignored) == napi_ok) {
        hint->uncounted = static_cast<int64_t>(length);
      }
    }
    return view;
  }

  // stats() -> {viewBytes}: bytes of the peer's blocks that views still hold.
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    out.Set("viewBytes", Napi::Number::New(env, mapping_ ? static_cast<double>(mapping_->live_view_bytes().load()) : 0));
    return out;
  }

  // locate(bytes) -> offset | -1: where `bytes` lie in the peer's segment when they lie wholly inside its data
  // area (a view of one of its blocks, or part of one), else -1.
  Napi::Value Locate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!mapping_ || !info[0].IsTypedArray()) return Napi::Number::New(env, -1);
    Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
    const uint8_t* p = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    if (!mapping_->InDataArea(p, ta.ByteLength())) return Napi::Number::New(env, -1);
    return Napi::Number::New(env, static_cast<double>(p - mapping_->base()));
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    mapping_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<shm::Mapping> mapping_;
};

// releaseShared(bytes) -> boolean: when `bytes` (a typed array, DataView or ArrayBuffer) is a view of a block
// of a peer's segment, detaches its ArrayBuffer and returns true: every view over it reads as empty from then
// on, V8 stops counting its bytes at once, and its finalizer gives the block back at the next turn of the
// event loop instead of at a collection. Anything else is left as it is (false): ordinary Buffers, copies, this
// process's own allocShared Buffers (a message may still be about to read them).
Napi::Value ReleaseShared(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  napi_value buffer = nullptr;
  if (info[0].IsTypedArray()) {
    buffer = info[0].As<Napi::TypedArray>().ArrayBuffer();
  } else if (info[0].IsDataView()) {
    buffer = info[0].As<Napi::DataView>().ArrayBuffer();
  } else if (info[0].IsArrayBuffer()) {
    buffer = info[0];
  } else {
    return Napi::Boolean::New(env, false);
  }
  Napi::ArrayBuffer ab(env, buffer);
  const uint8_t* data = static_cast<const uint8_t*>(ab.Data());
  size_t length = ab.ByteLength();
  if (data == nullptr || length == 0) return Napi::Boolean::New(env, false);
  std::shared_ptr<shm::Mapping> ours;
  for (const auto& weak : LivePeerMappings(env)) {
    std::shared_ptr<shm::Mapping> m = weak.lock();
    if (!m) continue;  // gone since the pruning (a finalizer on another thread)
    if (m->InDataArea(data, length)) {
      ours = std::move(m);
      break;
    }
  }
  if (!ours) return Napi::Boolean::New(env, false);
  // A large view's bytes were taken out of V8's count when it was made (see ShmMapping::View); V8 takes them
  // out again when it is detached. They go back in first: the other way round the count would dip, and V8 sets
  // its limit 64 MiB above the lowest count since its last full collection, so that the next view of 32 MiB
  // or more would cross it and start one.
  bool recount = length >= kUncountedViewBytes && Addon::Get(env)->buffer_mode == Addon::BufferMode::kExternal;
  int64_t ignored;
  if (recount && napi_adjust_external_memory(env, static_cast<int64_t>(length), &ignored) != napi_ok) recount = false;
  napi_status s = napi_detach_arraybuffer(env, buffer);
  if (s != napi_ok) {
    if (recount) napi_adjust_external_memory(env, -static_cast<int64_t>(length), &ignored);
    DropPendingException(env);
    return Napi::Boolean::New(env, false);
  }
  if (recount) ours->recounted_bytes().fetch_add(static_cast<int64_t>(length), std::memory_order_relaxed);
  return Napi::Boolean::New(env, true);
}

}  // namespace

void InitShm(Napi::Env env, Napi::Object exports) {
  exports.Set("releaseShared", Napi::Function::New(env, ReleaseShared, "releaseShared"));
  exports.Set("shmSupported", Napi::Boolean::New(env, shm::Supported()));
  exports.Set("ShmPool", ShmPool::Define(env));
  exports.Set("ShmMapping", ShmMapping::Define(env));
}

}  // namespace ipcwire
