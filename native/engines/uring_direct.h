// The ring the JS thread drives itself, for the common case: a small batch of independent ops.
// The JS thread prepares the SQEs and calls io_uring_enter to submit only (never to wait); what
// completes inline (a page-cache read) is reaped before the call returns, and the rest comes back
// through the ring's own fd, polled by the client's libuv loop. No other thread takes part.
// A wake-up's completions are taken batch by batch; what the reactions to one batch submit goes to
// the kernel at once if the device would otherwise run short, else with the wake-up's others in
// one io_uring_enter.
// Everything else (big batches, ordered ops, checksums, a full ring) goes to the ring threads
// (uring_engine.cc). JS thread only, but for Register.
#pragma once

#include <liburing.h>
#include <uv.h>

#include <functional>
#include <memory>

#include "engines/engine.h"
#include "engines/uring_fixed.h"

namespace tfs {

// What the direct ring needs of its owner besides a CompletionSink: to run reaping in a scope
// where promises may be settled (a callback scope), and to hear of batches settled right there.
class JsThreadSink {
 public:
  virtual ~JsThreadSink() = default;
  virtual void InJsScope(const std::function<void()>& body) = 0;  // from the event loop
  virtual void BatchSettledHere(Batch* batch) = 0;                // JS thread, inside a scope
};

class UringDirect {
 public:
  // nullptr (and *err) when the ring cannot be set up: the client then uses its ring threads only.
  static std::unique_ptr<UringDirect> Make(uv_loop_t* loop, const EngineOptions& options, JsThreadSink* sink, int* err);
  ~UringDirect();

  void Register(Region& region);
  // Whether the batch suits this ring: at most kMaxOps ops, each one piece, none ordered after
  // another or checksummed, and room for them all in the ring.
  bool Fits(const Batch& batch) const;
  void Submit(Batch* batch);
  void Cancel(Batch* batch, int err);
  // Cancels everything in flight; `then` runs once nothing is (at once if nothing is). It may
  // CloseNow.
  void Drain(std::function<void()> then);
  // No JS will run any more: cancels, waits for the device to let go (on this thread), closes.
  void CloseNow();
  unsigned in_flight() const { return in_flight_; }

  EngineCounters counters;
  static constexpr size_t kMaxOps = 64;

 private:
  UringDirect(const EngineOptions& options, JsThreadSink* sink) : options_(options), sink_(sink) {}
  int Start(uv_loop_t* loop);
  static void OnPoll(uv_poll_t* poll, int status, int events);
  bool GoesToWorkers(const Op& op) const;
  void Prepare(Op* op);
  void SubmitDeferred();
  void Reap();
  unsigned ReapUntilSettled(unsigned budget);
  bool SubmitNow() const;
  // Something waits for the ring to drain, and nothing is in flight any more.
  bool DrainDue() const { return in_flight_ == 0 && drained_ != nullptr; }
  void MaybeDrained();
  void Complete(Op* op, int res);
  void Settle(Op* op, int err);
  void CancelBatch(Batch* b, int err);
  void CancelAll(int err);
  void ClosePoll();

  EngineOptions options_;
  JsThreadSink* sink_;
  io_uring ring_{};
  bool ring_ready_ = false;
  uv_poll_t* poll_ = nullptr;  // freed by its close callback
  unsigned slots_ = 0;
  std::shared_ptr<FixedBuffers> fixed_;
  LiveBatches live_;
  unsigned in_flight_ = 0;
  bool reaping_ = false;
  bool deferring_ = false;  // in OnPoll's callback scope: Submit prepares, OnPoll submits
  uint64_t prepared_bytes_ = 0;  // of the SQEs prepared since the last submit
  bool settled_ = false;    // a batch settled since ReapUntilSettled began
  std::function<void()> drained_;
};

}  // namespace tfs
