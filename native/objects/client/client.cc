#include "objects/client/client.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>

#include "hf3fs/hf3fs.h"
#include "objects/addon/addon.h"
#include "objects/client/submit_args.h"
#include "objects/client/wire.h"
#include "objects/file/file.h"
#include "util/errors.h"
#include "util/promise_worker.h"

namespace tfs {

using wire::IsIndex;
using wire::kMaxOffset;
using wire::kNone;

// By type tag, not instanceof (FromValue): cheaper, and not fooled by a prototype set by hand.
constexpr napi_type_tag kClientTag = {0x7d21c94e5a0b3f68ULL, 0x1e8f4a6c2d9b7053ULL};

// A batch's promise, and what must outlive the batch: the client, the results (and CRCs) the engine
// writes into, and the views of memory it moves. (The files' descriptors are held natively.) One
// reference each: building an array to hold them cost more than a 1-op batch's own work.
struct Client::JsBatch {
  Napi::Promise::Deferred deferred;
  Napi::Reference<Napi::Value> keep[4];
};

Napi::Function Client::Init(Napi::Env env) {
  return DefineClass(env, "NativeClient",
                     {InstanceMethod<&Client::Alloc>("alloc"), InstanceMethod<&Client::Free>("free"),
                      InstanceMethod<&Client::Submit>("submit"), InstanceMethod<&Client::Cancel>("cancel"),
                      InstanceMethod<&Client::Info>("info"), InstanceMethod<&Client::Metrics>("metrics"),
                      InstanceMethod<&Client::Distributions>("distributions"),
                      InstanceMethod<&Client::Close>("close")});
}

Napi::Object Client::Wire(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  auto fields = [&](std::initializer_list<std::pair<const char*, size_t>> list) {
    Napi::Object f = Napi::Object::New(env);
    for (const auto& [name, index] : list) f.Set(name, static_cast<double>(index));
    return f;
  };
  o.Set("op", fields({{"file", wire::kFile}, {"bufferRef", wire::kBufferRef}, {"bufferOffset", wire::kBufferOffset},
                      {"length", wire::kLength}, {"fileOffset", wire::kFileOffset}, {"stride", wire::kOpFields}}));
  o.Set("result", fields({{"bytes", wire::kBytes}, {"errno", wire::kErrno}, {"stride", wire::kResultFields}}));
  o.Set("checksum", fields({{"offset", wire::kFrom}, {"length", wire::kSpan}, {"at", wire::kAt}, {"stride", wire::kChecksumFields}}));
  o.Set("none", kNone);
  o.Set("maxOffset", kMaxOffset);
  return o;
}

// The longest prefix of `path` that exists ("" if none): 3FS's hf3fs_extract_mount_point takes
// boost's canonical() of its argument, which throws, through the C ABI, for a path that does not
// exist: the process would terminate. The prefix names the same mount.
static std::string ExistingPrefix(std::string path) {
  while (!path.empty()) {
    struct stat st;
    if (stat(path.c_str(), &st) == 0) return path;
    const size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return "";
    path = slash == 0 ? (path == "/" ? "" : "/") : path.substr(0, slash);
  }
  return "";
}

// The 3FS side of `new NativeClient({ engine: 'hf3fs', ... })`: the library, and the mount as
// the library sees it (a path that is not on 3FS is refused here, before any ring is made).
std::shared_ptr<const Hf3fsContext> Client::MakeHf3fsContext(Napi::Env env, Napi::Object o) {
  auto context = std::make_shared<Hf3fsContext>();
  std::string error;
  const std::string library = o.Has("library") ? o.Get("library").ToString().Utf8Value() : "";
  context->lib = UsrbioLib::Load(library, &error);
  if (!context->lib) throw CodeError(env, "ERR_USRBIO_UNAVAILABLE", error);
  const std::string mount = o.Get("mount").ToString().Utf8Value();
  std::vector<char> found(4096);
  const std::string existing = ExistingPrefix(mount);
  const int n = existing.empty() ? -1 : context->lib->extract_mount_point(found.data(), static_cast<int>(found.size()), existing.c_str());
  if (n <= 0 || n > static_cast<int>(found.size()))
    throw CodeError(env, "ERR_NOT_3FS", "'" + mount + "' is not on a 3FS mount with 3fs-virt (hf3fs_extract_mount_point)");
  context->mount = found.data();
  if (o.Has("numa")) context->numa = o.Get("numa").As<Napi::Number>().Int32Value();
  if (o.Has("blockSize")) context->block_size = static_cast<size_t>(o.Get("blockSize").As<Napi::Number>().Int64Value());
  if (o.Has("bounceBytes"))
    context->bounce_bytes = static_cast<size_t>(o.Get("bounceBytes").As<Napi::Number>().Int64Value());
  if (o.Has("forbidHoles") && o.Get("forbidHoles").ToBoolean()) context->read_flags |= HF3FS_IOR_FORBID_READ_HOLES;
  if (o.Has("readUncommitted") && o.Get("readUncommitted").ToBoolean())
    context->read_flags |= HF3FS_IOR_ALLOW_READ_UNCOMMITTED;
  return context;
}

// io_uring_setup refused by policy or over RLIMIT_MEMLOCK, where the thread pool (which locks no
// memory) works: seccomp or io_uring_disabled (EPERM), no io_uring or filters faking an old kernel
// (ENOSYS), LSMs (EACCES), memlock (ENOMEM; a closed ring's memory is freed late). Others are real.
bool IoUringFallsBack(int err) { return err == EPERM || err == ENOSYS || err == EACCES || err == ENOMEM; }

// What new NativeClient(options) asks of the engines (NativeClientOptions in lib/core/native.ts).
struct Client::Config {
  EngineOptions engine;
  unsigned rings = 2;
  unsigned threads = 16;          // lib/core/client.ts passes its own default (per core)
  std::string embedded = "auto";  // 'auto': io_uring, else the thread pool where io_uring falls back
};

Client::Config Client::DecodeConfig(Napi::Env env, const Napi::CallbackInfo& info) {
  Config c;
  if (info.Length() > 0 && info[0].IsObject()) {
    Napi::Object o = info[0].As<Napi::Object>();
    if (o.Has("embeddedEngine")) c.embedded = o.Get("embeddedEngine").ToString().Utf8Value();
    if (o.Has("threads")) c.threads = o.Get("threads").As<Napi::Number>().Uint32Value();
    if (o.Has("aio")) c.engine.aio = o.Get("aio").ToBoolean();
    if (o.Has("rings")) c.rings = o.Get("rings").As<Napi::Number>().Uint32Value();
    if (o.Has("queueDepth")) c.engine.queue_depth = o.Get("queueDepth").As<Napi::Number>().Uint32Value();
    if (o.Has("registeredSlots")) c.engine.registered_slots = o.Get("registeredSlots").As<Napi::Number>().Uint32Value();
    if (o.Has("asyncBuffered")) c.engine.async_buffered = o.Get("asyncBuffered").ToBoolean();
  }
  if (c.engine.queue_depth < 1 || c.engine.queue_depth > 32768)
    throw CodeError(env, "ERR_OUT_OF_RANGE", "queueDepth must be between 1 and 32768");
  if (c.engine.registered_slots > 16384)
    throw CodeError(env, "ERR_OUT_OF_RANGE", "registeredSlots must be at most 16384");
  if (c.rings < 1 || c.rings > 64) throw CodeError(env, "ERR_OUT_OF_RANGE", "rings must be between 1 and 64");
  if (c.threads < 1 || c.threads > 4096) throw CodeError(env, "ERR_OUT_OF_RANGE", "threads must be between 1 and 4096");
  if (c.embedded != "auto" && c.embedded != "io_uring" && c.embedded != "threads")
    throw CodeError(env, "ERR_INVALID_ARG_VALUE", "embeddedEngine must be 'auto', 'io_uring' or 'threads'");
  return c;
}

// Over RLIMIT_MEMLOCK (io_uring_setup's ENOMEM), before the thread pool: keep the rings made so
// far (a closed ring's memory is freed late, so none is given back to retry), or make the first
// one shallower, down to 64 entries. False when neither is left to try.
bool Client::ShrinkRings(Config& c) {
  if (!engines_.empty()) {
    rings_asked_ = c.rings;
    c.rings = static_cast<unsigned>(engines_.size());
  } else if (c.engine.queue_depth > 64) {
    depth_asked_ = depth_asked_ ? depth_asked_ : c.engine.queue_depth;
    c.engine.queue_depth /= 2;
  } else {
    return false;
  }
  ring_shrink_errno_ = ENOMEM;
  return true;
}

// One engine per ring, all of one kind: when io_uring falls back, the rings made so far go too.
// The queue depth and the pool's threads are the whole client's, shared out between the rings.
void Client::StartEngines(Napi::Env env, Config c) {
  queue_depth_ = c.engine.queue_depth;
  c.engine.queue_depth = (c.engine.queue_depth + c.rings - 1) / c.rings;
  c.engine.threads = (c.threads + c.rings - 1) / c.rings;
  ring_load_ = std::make_unique<std::atomic<size_t>[]>(c.rings + 1);  // + the direct ring; c.rings only shrinks below
  while (engines_.size() < c.rings) {
    c.engine.index = static_cast<unsigned>(engines_.size());
    int err = 0;
    const char* call = "pthread_create";
    std::unique_ptr<Engine> engine;
    if (hf3fs_) {
      call = "hf3fs_iorcreate4";
      engine = MakeHf3fsEngine(c.engine, hf3fs_, this, &err);
    } else if (c.embedded == "threads") {
      engine = MakeThreadsEngine(c.engine, this, &err);
    } else {
      call = "io_uring_setup";
      engine = MakeUringEngine(c.engine, this, &err);
      if (!engine && err == ENOMEM && ShrinkRings(c)) continue;
      if (!engine && c.embedded == "auto" && IoUringFallsBack(err)) {
        for (auto& e : engines_) e->Close();
        engines_.clear();
        io_uring_errno_ = err;
        c.embedded = "threads";
        ring_shrink_errno_ = 0;  // the pool's rings lock no memory: as asked
        if (depth_asked_ > 0) c.engine.queue_depth = depth_asked_;
        continue;
      }
    }
    if (!engine) {
      for (auto& e : engines_) e->Close();
      throw ErrnoError(env, err, call, hf3fs_ ? hf3fs_->mount : "");
    }
    engines_.push_back(std::move(engine));
  }
  if (!hf3fs_ && c.embedded != "threads") StartDirect(env, c);
}

// The ring the JS thread drives. Without it (io_uring refused a third ring) the ring threads take
// every batch, as they can.
void Client::StartDirect(Napi::Env env, const Config& c) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) return;
  EngineOptions options = c.engine;
  options.index = static_cast<unsigned>(engines_.size());
  options.queue_depth = std::min(queue_depth_, 256u);
  int err = 0;
  direct_ = UringDirect::Make(loop, options, this, &err);
  if (direct_ && napi_async_init(env, nullptr, Napi::String::New(env, "3fs-client completions"), &async_context_) != napi_ok)
    direct_.reset();
}

// new NativeClient(options): the engines, and the hand-off of settled batches to the JS thread.
Client::Client(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Client>(info) {
  Napi::Env env = info.Env();
  info.This().As<Napi::Object>().TypeTag(&kClientTag);
  if (info.Length() > 0 && info[0].IsObject()) {
    Napi::Object o = info[0].As<Napi::Object>();
    if (o.Has("engine") && o.Get("engine").ToString().Utf8Value() == "hf3fs") hf3fs_ = MakeHf3fsContext(env, o);
  }
  StartEngines(env, DecodeConfig(env, info));
  // Created before the cleanup hook, so the hook (run in reverse order) stops us first.
  tsfn_ = Tsfn::New(env, "3fs-client completions", 0, 1, this);
  tsfn_.Unref(env);
  tsfn_live_ = true;
  napi_add_env_cleanup_hook(env, &Client::OnEnvCleanup, this);
}

Client::~Client() {
  if (!env_gone_) {
    napi_remove_env_cleanup_hook(Env(), &Client::OnEnvCleanup, this);
    Shutdown();
  }
}

void Client::OnEnvCleanup(void* data) {
  auto* client = static_cast<Client*>(data);
  client->env_gone_ = true;
  client->Shutdown();
}

// Stops the engine and drops what it settled. Used when no JS will run any more (teardown, GC);
// close() is the orderly way.
void Client::Shutdown() {
  regions_->StopPooling();
  no_js_ = true;
  if (direct_) direct_->CloseNow();
  for (auto& e : engines_) e->Close();
  {
    std::lock_guard<std::mutex> lock(settled_mu_);
    settled_.clear();
  }
  for (auto& entry : outstanding_) {
    delete static_cast<JsBatch*>(entry.second->js);
    delete entry.second;
  }
  outstanding_.clear();
  if (tsfn_live_) {
    tsfn_live_ = false;
    tsfn_.Release();
  }
  if (async_context_ != nullptr) {
    napi_async_destroy(Env(), async_context_);
    async_context_ = nullptr;
  }
}

Client* Client::FromValue(Napi::Value value) {
  if (!value.IsObject()) return nullptr;
  Napi::Object object = value.As<Napi::Object>();
  if (!object.CheckTypeTag(&kClientTag)) return nullptr;
  return Napi::ObjectWrap<Client>::Unwrap(object);
}

void Client::CheckOpen(Napi::Env env) {
  if (closing_) throw CodeError(env, "ERR_CLIENT_CLOSED", "the client is closed");
}

// Hands a checked batch to the least loaded ring; its arrays (and this client) stay alive until the
// batch settles. Returns [batchId, Promise<void>].
Napi::Value Client::Queue(const Napi::CallbackInfo& info, const SubmitArgs& args, std::unique_ptr<Batch> batch) {
  Napi::Env env = info.Env();
  auto* js = new JsBatch{Napi::Promise::Deferred::New(env), {}};
  js->keep[0] = Napi::Persistent(info.This());
  js->keep[1] = Napi::Persistent(args.results_js);
  js->keep[2] = Napi::Persistent(Napi::Value(args.views));
  if (args.crcs != nullptr) js->keep[3] = Napi::Persistent(info[7]);
  batch->id = next_batch_id_++;
  batch->results = args.results;
  batch->crcs = args.crcs;
  batch->unsettled = static_cast<uint32_t>(args.n);
  batch->fail_fast = args.fail_fast;
  batch->js = js;
  const bool direct = GoesDirect(*batch);
  batch->ring = direct ? engines_.size() : PickRing();
  batch->submitted_ns = MonotonicNs();
  if (!direct) next_ring_++;
  ring_load_[batch->ring].fetch_add(args.n, std::memory_order_relaxed);
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, static_cast<double>(batch->id)));
  out.Set(1u, js->deferred.Promise());
  if (outstanding_.empty()) tsfn_.Ref(env);
  Batch* b = batch.release();
  outstanding_[b->id] = b;
  if (args.n == 0) {
    BatchSettled(b);  // nothing to do; settle through the same path as everything else
  } else if (direct) {
    direct_->Submit(b);  // may settle it at once (a page-cache read): b is not touched after
  } else {
    engines_[b->ring]->Submit(b);
  }
  return out;
}

// submit(write, files, views, descriptors, results, failFast[, checksums, crcs[, after]])
//   -> [batchId, Promise<void>]; the arrays' layout is wire.h's.
Napi::Value Client::Submit(const Napi::CallbackInfo& info) {
  CheckOpen(info.Env());
  const SubmitArgs args = DecodeSubmitArgs(info);
  return Queue(info, args, DecodeOps(info.Env(), args));
}

// cancel(batchId, errno): unfinished ops settle with errno (ECANCELED for abort, ETIMEDOUT for deadline)
Napi::Value Client::Cancel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber())
    throw CodeError(env, "ERR_INVALID_ARG_TYPE", "cancel(batchId, errno)");
  const double id = info[0].As<Napi::Number>().DoubleValue(), err = info[1].As<Napi::Number>().DoubleValue();
  // A positive errno: 0 would settle unfinished ops as if they had succeeded with no bytes.
  if (!IsIndex(err, 4096) || err == 0) throw CodeError(env, "ERR_OUT_OF_RANGE", "cancel: errno must be a whole number from 1 to 4095");
  auto it = IsIndex(id, kMaxOffset + 1) ? outstanding_.find(static_cast<uint64_t>(id)) : outstanding_.end();
  if (it == outstanding_.end() || closing_) return env.Undefined();
  if (it->second->ring == engines_.size())
    direct_->Cancel(it->second, static_cast<int>(err));
  else
    engines_[it->second->ring]->Cancel(it->second, static_cast<int>(err));
  return env.Undefined();
}

// The ring with the fewest unsettled ops; ties rotate so equal rings share the work.
size_t Client::PickRing() const {
  const size_t rings = engines_.size();
  size_t best = next_ring_ % rings, best_load = SIZE_MAX;
  for (size_t k = 0; k < rings; k++) {
    size_t r = (next_ring_ + k) % rings;
    size_t load = ring_load_[r].load(std::memory_order_relaxed);
    if (load < best_load) best = r, best_load = load;
  }
  return best;
}

void Client::BatchSettled(Batch* batch) {
  ring_load_[batch->ring].fetch_sub(batch->ops.size(), std::memory_order_relaxed);
  bool first;
  {
    std::lock_guard<std::mutex> lock(settled_mu_);
    first = settled_.empty();
    settled_.push_back(batch);
  }
  if (first && tsfn_live_) tsfn_.NonBlockingCall(nullptr);
}

void Client::Deliver(Napi::Env env, Napi::Function, Client* client, std::nullptr_t*) {
  if (env != nullptr && client != nullptr) client->DeliverSettled(env);
}

// JS thread: settle the promises of every batch the engine finished, in one go.
void Client::DeliverSettled(Napi::Env env) {
  std::vector<Batch*> settled;
  {
    std::lock_guard<std::mutex> lock(settled_mu_);
    settled.swap(settled_);
  }
  if (settled.empty()) return;
  Napi::HandleScope scope(env);
  for (Batch* b : settled) Resolve(env, b);
  if (outstanding_.empty() && tsfn_live_) tsfn_.Unref(env);
}

void Client::Resolve(Napi::Env env, Batch* b) {
  std::unique_ptr<Batch> owned(b);
  std::unique_ptr<JsBatch> js(static_cast<JsBatch*>(b->js));
  outstanding_.erase(b->id);
  js->deferred.Resolve(env.Undefined());
}

// A batch of the direct ring settled on the JS thread: resolved at once, with no thread hop.
void Client::BatchSettledHere(Batch* batch) {
  if (no_js_) {
    BatchSettled(batch);  // Shutdown drops it with the rest
    return;
  }
  ring_load_[batch->ring].fetch_sub(batch->ops.size(), std::memory_order_relaxed);
  Napi::Env env = Env();
  try {
    Resolve(env, batch);
    if (outstanding_.empty() && tsfn_live_) tsfn_.Unref(env);
  } catch (const Napi::Error&) {
    no_js_ = true;  // a worker being terminated: nobody waits for the promise any more
  }
}

// The direct ring's completions, from the event loop: promises settled here have their reactions
// run when the callback scope closes, as after any other callback into JS.
void Client::InJsScope(const std::function<void()>& body) {
  if (no_js_) {
    body();
    return;
  }
  napi_env env = Env();
  napi_handle_scope handles = nullptr;
  napi_callback_scope callback = nullptr;
  napi_value resource = nullptr;
  if (napi_open_handle_scope(env, &handles) != napi_ok) no_js_ = true;
  if (!no_js_ && (napi_create_object(env, &resource) != napi_ok ||
                  napi_open_callback_scope(env, resource, async_context_, &callback) != napi_ok))
    no_js_ = true;  // the environment is stopping (a worker terminated)
  body();
  if (callback != nullptr) napi_close_callback_scope(env, callback);
  if (handles != nullptr) napi_close_handle_scope(env, handles);
}

// Small batches of independent, unchecksummed ops go to the direct ring while the client has room
// for them within its queue depth; the rest to the ring threads.
bool Client::GoesDirect(const Batch& b) const {
  if (!direct_ || b.ops.empty() || !direct_->Fits(b)) return false;
  size_t load = b.ops.size();
  for (size_t r = 0; r <= engines_.size(); r++) load += ring_load_[r].load(std::memory_order_relaxed);
  return load <= queue_depth_;
}

std::vector<const EngineCounters*> Client::AllCounters() const {
  std::vector<const EngineCounters*> all;
  for (auto& e : engines_) all.push_back(&e->counters);
  if (direct_) all.push_back(&direct_->counters);
  return all;
}

Napi::Value Client::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("engine", engines_[0]->name());
  // Why the thread pool runs although io_uring was not ruled out: what io_uring_setup said.
  if (io_uring_errno_ != 0) {
    o.Set("ioUringErrno", io_uring_errno_);
  }
  // Why the io_uring rings are fewer or shallower than asked: [errno, rings asked, depth asked per ring].
  if (ring_shrink_errno_ != 0) {
    Napi::Array shrunk = Napi::Array::New(env, 3);
    shrunk.Set(0u, ring_shrink_errno_);
    shrunk.Set(1u, rings_asked_);
    shrunk.Set(2u, depth_asked_);
    o.Set("ringsShrunk", shrunk);
  }
  if (hf3fs_) {
    o.Set("mount", hf3fs_->mount);
    o.Set("library", hf3fs_->lib->path());
    o.Set("numa", hf3fs_->numa);
  }
  o.Set("rings", static_cast<double>(engines_.size()));
  o.Set("queueDepth", queue_depth_);
  o.Set("registeredSlots", engines_[0]->registered_slots());
  o.Set("registerRefusal", register_refusal_);
  o.Set("closed", closing_);
  o.Set("ioBuffers", static_cast<double>(regions_->regions.size()));
  o.Set("ioBufferBytes", static_cast<double>(regions_->bytes));
  return o;
}

Napi::Value Client::Metrics(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const std::vector<const EngineCounters*> all = AllCounters();
  auto put = [&](const char* key, std::atomic<uint64_t> EngineCounters::*field) {
    uint64_t sum = 0;
    for (const EngineCounters* c : all) sum += (c->*field).load(std::memory_order_relaxed);
    o.Set(key, Napi::Number::New(env, static_cast<double>(sum)));
  };
  put("readOps", &EngineCounters::read_ops);
  put("writeOps", &EngineCounters::write_ops);
  put("readBytes", &EngineCounters::read_bytes);
  put("writeBytes", &EngineCounters::write_bytes);
  put("directBytes", &EngineCounters::direct_bytes);
  put("bufferedBytes", &EngineCounters::buffered_bytes);
  put("registeredBytes", &EngineCounters::registered_bytes);
  put("unregisteredBytes", &EngineCounters::unregistered_bytes);
  put("bouncedBytes", &EngineCounters::bounced_bytes);
  put("shortTransfers", &EngineCounters::short_transfers);
  put("errors", &EngineCounters::errors);
  put("submitCalls", &EngineCounters::submit_calls);
  put("batches", &EngineCounters::batches);
  return o;
}

// distributions() -> Float64Array: the engines' OpDistributions summed, laid out as lib/core/metrics.ts
// reads them: for latency (reads, writes) then bandwidth (reads, writes), kHistogramBuckets counts
// and the sum; then kErrnoSlots errno counts. A copy: the engines go on counting meanwhile.
Napi::Value Client::Distributions(const Napi::CallbackInfo& info) {
  constexpr size_t kPerHistogram = kHistogramBuckets + 1;
  Napi::Float64Array out = Napi::Float64Array::New(info.Env(), 4 * kPerHistogram + kErrnoSlots);
  double* d = out.Data();
  for (const EngineCounters* c : AllCounters()) {
    const OpDistributions& od = c->distributions;
    const Histogram* all[4] = {&od.latency_ns[0], &od.latency_ns[1], &od.bandwidth[0], &od.bandwidth[1]};
    for (size_t h = 0; h < 4; h++) {
      double* at = d + h * kPerHistogram;
      for (size_t i = 0; i < kHistogramBuckets; i++) at[i] += static_cast<double>(all[h]->buckets[i].load(std::memory_order_relaxed));
      at[kHistogramBuckets] += static_cast<double>(all[h]->sum.load(std::memory_order_relaxed));
    }
    for (size_t i = 0; i < kErrnoSlots; i++) d[4 * kPerHistogram + i] += static_cast<double>(od.errnos[i].load(std::memory_order_relaxed));
  }
  return out;
}

// close() -> Promise: unfinished ops settle with ECANCELED; waiting for the device happens on the pool.
Napi::Value Client::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closing_) throw CodeError(env, "ERR_CLIENT_CLOSED", "the client is closed");
  closing_ = true;
  regions_->StopPooling();
  if (direct_) direct_->Drain([] {});  // cancels what the direct ring has in flight
  std::vector<Engine*> engines;
  for (auto& e : engines_) engines.push_back(e.get());
  Napi::Reference<Napi::Object>* self = new Napi::Reference<Napi::Object>(Napi::Persistent(info.This().As<Napi::Object>()));
  return PromiseWorker::Run(
      env, "close", "",
      [engines]() -> int {
        for (Engine* e : engines) e->Close();
        return 0;
      },
      [this, self](Napi::Env env) -> Napi::Value {
        DeliverSettled(env);
        auto deferred = std::make_shared<Napi::Promise::Deferred>(env);
        auto finish = [this, self, deferred, env] {
          if (direct_) direct_->CloseNow();
          if (tsfn_live_) {
            tsfn_live_ = false;
            tsfn_.Release();
          }
          delete self;
          deferred->Resolve(env.Undefined());
        };
        // The direct ring's ops settle on this thread, as its CQEs come in.
        if (direct_)
          direct_->Drain(finish);
        else
          finish();
        return deferred->Promise();
      });
}

}  // namespace tfs
