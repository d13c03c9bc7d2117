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
#include "hf3fs/hf3fs.h"

namespace tfs {

// Regions lent to JS, by id. Touched only on the JS thread.
struct RegionTable {
  uint64_t next_id = 1;
  std::unordered_map<uint64_t, std::shared_ptr<Region>> regions;
};

class Client : public Napi::ObjectWrap<Client>, public CompletionSink {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Object Wire(Napi::Env env);  // wire.h's constants, for lib/core/wire.ts's test
  explicit Client(const Napi::CallbackInfo& info);
  ~Client() override;

  void BatchSettled(Batch* batch) override;  // completion thread
  static Client* Unwrap(Napi::Value value);   // nullptr if not a NativeClient
  const std::shared_ptr<const Hf3fsContext>& hf3fs() const { return hf3fs_; }

 private:
  struct JsBatch;
  struct Config;
  struct SubmitArgs;
  struct View;
  static void Deliver(Napi::Env env, Napi::Function, Client* client, std::nullptr_t*);
  using Tsfn = Napi::TypedThreadSafeFunction<Client, std::nullptr_t, &Client::Deliver>;

  Napi::Value Alloc(const Napi::CallbackInfo& info);
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
  // Ops submitted to each ring and not yet settled: a batch goes to the least loaded ring, so a
  // ring busy with long copies does not queue work while another idles.
  std::unique_ptr<std::atomic<size_t>[]> ring_load_;
  size_t next_ring_ = 0;
  unsigned queue_depth_ = 0;  // as asked, for the whole client
  int io_uring_errno_ = 0;    // set when io_uring_setup was refused and the thread pool runs instead
  std::shared_ptr<RegionTable> regions_ = std::make_shared<RegionTable>();
  Tsfn tsfn_;
  std::atomic<bool> tsfn_live_{false};
  bool closing_ = false;
  bool env_gone_ = false;  // the environment is being torn down: no more JS
  uint64_t next_batch_id_ = 1;
  std::unordered_map<uint64_t, Batch*> outstanding_;  // JS thread's view: submitted, not delivered

  std::mutex settled_mu_;
  std::vector<Batch*> settled_;
};

}  // namespace tfs
