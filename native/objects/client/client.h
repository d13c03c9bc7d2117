// The native side of a JS Client: its engines (rings, each with its own thread; batches are spread
// over them so copies and submissions use several cores), the registered memory it lends to JS,
// and the hand-off of settled batches back to the JS thread.
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "engines/engine.h"
#include "engines/uring_direct.h"
#include "hf3fs/hf3fs.h"
#include "objects/client/region_pool.h"

namespace tfs {

// Regions lent to JS, by id, and small ones JS let go of, for reuse. Touched only on the JS thread.
struct RegionTable {
  uint64_t next_id = 1;
  std::unordered_map<uint64_t, std::shared_ptr<Region>> regions;
  size_t bytes = 0;  // of the regions JS holds: what info() reports as ioBufferBytes
  RegionPool pool;
  bool pooling = true;  // off once the client closes: its regions are unmapped as JS lets go
  // Drops region `id` from the table; if nothing else holds it, it goes to the pool.
  void Release(uint64_t id) {
    auto it = regions.find(id);
    if (it == regions.end()) return;
    std::shared_ptr<Region> region = std::move(it->second);
    regions.erase(it);
    bytes -= region->size();
    if (pooling) pool.Give(std::move(region));
  }
  void StopPooling() {
    pooling = false;
    pool.Clear();
  }
};

class Client : public Napi::ObjectWrap<Client>, public CompletionSink, public JsThreadSink {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Object Wire(Napi::Env env);  // wire.h's constants, for lib/core/wire.ts's test
  explicit Client(const Napi::CallbackInfo& info);
  ~Client() override;

  void BatchSettled(Batch* batch) override;  // completion thread
  void BatchSettledHere(Batch* batch) override;  // JS thread (the direct ring)
  void InJsScope(const std::function<void()>& body) override;
  static Client* FromValue(Napi::Value value);  // nullptr if not a NativeClient (not Unwrap: that would hide ObjectWrap::Unwrap, and every method call would pay an instanceof)
  const std::shared_ptr<const Hf3fsContext>& hf3fs() const { return hf3fs_; }

 private:
  struct JsBatch;
  struct Config;
  struct SubmitArgs;
  struct View;
  static void Deliver(Napi::Env env, Napi::Function, Client* client, std::nullptr_t*);
  using Tsfn = Napi::TypedThreadSafeFunction<Client, std::nullptr_t, &Client::Deliver>;

  Napi::Value Alloc(const Napi::CallbackInfo& info);
  std::shared_ptr<Region> MapRegion(Napi::Env env, size_t bytes, bool want_registered);
  std::shared_ptr<Region> MapIov(const Napi::CallbackInfo& info, size_t bytes);
  Napi::Value Lend(Napi::Env env, std::shared_ptr<Region> region);
  int RegisterEverywhere(Region& region);
  bool ShrinkRings(Config& c);
  Napi::Value Free(const Napi::CallbackInfo& info);
  Napi::Value Submit(const Napi::CallbackInfo& info);
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Metrics(const Napi::CallbackInfo& info);
  Napi::Value Distributions(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  static Config DecodeConfig(Napi::Env env, const Napi::CallbackInfo& info);
  void StartEngines(Napi::Env env, Config config);
  static void OnEnvCleanup(void* client);
  void Shutdown();
  void DeliverSettled(Napi::Env env);
  void Resolve(Napi::Env env, Batch* b);
  void StartDirect(Napi::Env env, const Config& c);
  bool GoesDirect(const Batch& b) const;
  std::vector<const EngineCounters*> AllCounters() const;
  void CheckOpen(Napi::Env env);

  static SubmitArgs DecodeSubmitArgs(const Napi::CallbackInfo& info);
  static std::vector<View> DecodeViews(Napi::Env env, Napi::Array views_js);
  std::vector<std::shared_ptr<FileState>> DecodeFiles(Napi::Env env, Napi::Array files_js) const;
  void SetOpMemory(Napi::Env env, Op& op, size_t i, const double* d, const std::vector<View>& views) const;
  std::unique_ptr<Batch> DecodeOps(Napi::Env env, const SubmitArgs& args) const;
  Napi::Value Queue(const Napi::CallbackInfo& info, const SubmitArgs& args, std::unique_ptr<Batch> batch);
  size_t PickRing() const;
  static void CheckReadsApart(Napi::Env env, const Batch& batch);
  static std::shared_ptr<const Hf3fsContext> MakeHf3fsContext(Napi::Env env, Napi::Object options);

  std::shared_ptr<const Hf3fsContext> hf3fs_;  // set for the 3FS engine
  std::vector<std::unique_ptr<Engine>> engines_;
  // io_uring: the ring the JS thread drives, for small batches (engines/uring_direct.h). Its
  // batches' `ring` is engines_.size(), one past the ring threads'.
  std::unique_ptr<UringDirect> direct_;
  napi_async_context async_context_ = nullptr;  // the direct ring's completions run JS under it
  // Ops submitted to each ring and not yet settled: a batch goes to the least loaded ring, so a
  // ring busy with long copies does not queue work while another idles.
  std::unique_ptr<std::atomic<size_t>[]> ring_load_;
  size_t next_ring_ = 0;
  unsigned queue_depth_ = 0;  // as asked, for the whole client
  int register_refusal_ = kRegistered;  // why the last alloc() that asked for registration got none
  int ring_shrink_errno_ = 0;  // io_uring_setup's ENOMEM that made the client try 1 ring
  unsigned rings_asked_ = 0;   // set when fewer rings run than asked
  unsigned depth_asked_ = 0;   // set when the ring is shallower than asked (per ring)
  int io_uring_errno_ = 0;    // set when io_uring_setup was refused and the thread pool runs instead
  std::shared_ptr<RegionTable> regions_ = std::make_shared<RegionTable>();
  Tsfn tsfn_;
  std::atomic<bool> tsfn_live_{false};
  bool closing_ = false;
  bool env_gone_ = false;  // the environment is being torn down: no more JS
  bool no_js_ = false;     // Shutdown, or JS can no longer run: the direct ring's batches are dropped, not resolved
  uint64_t next_batch_id_ = 1;
  std::unordered_map<uint64_t, Batch*> outstanding_;  // JS thread's view: submitted, not delivered

  std::mutex settled_mu_;
  std::vector<Batch*> settled_;
};

}  // namespace tfs
