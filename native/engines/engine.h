// The interface every I/O engine implements (io_uring or a thread pool on local files, USRBIO on 3FS),
// and the two records that travel through it: an Op (one read or write) and a Batch (the ops of
// one JS call, settled together).
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engines/op_histogram.h"
#include "objects/client/wire.h"
#include "objects/region/region.h"

namespace tfs {

// An open file as the engines see it: a buffered descriptor, and an O_DIRECT one when the file
// system accepts it. Shared by the JS File and every op in flight, so descriptors are closed only
// when the last user lets go (see file.cc).
struct FileState {
  enum class Direct : uint8_t { kAuto, kAlways, kNever };
  ~FileState();
  int CloseNow();  // closes both descriptors once; returns 0 or errno
  // The O_DIRECT descriptor or -1. direct 'auto' opens it here, on first use, on the caller's
  // thread (an engine's or the pool's, never JS's); the alignments are set once it returns.
  int DirectFd();

  std::string path;
  int fd = -1;          // buffered
  // O_DIRECT, -1 when not wanted, not supported or (direct 'auto') not opened yet: DirectFd().
  std::atomic<int> direct_fd{-1};
  int open_flags = 0;   // access mode and O_SYNC/O_DSYNC of what the user asked for
  Direct direct = Direct::kAuto;
  int direct_errno = 0; // why direct_fd is -1 although direct I/O was wanted
  uint32_t dio_mem_align = 4096;
  uint32_t dio_offset_align = 4096;
  // Set when the descriptor is registered with USRBIO (hf3fs_reg_fd): deregistered before close.
  std::shared_ptr<class UsrbioLib> usrbio;
  std::once_flag direct_once;
};

struct Batch;

// A CRC32C an op asked for (IoOp.crc32c), computed on the engine's thread when the op's turn comes
// so checksums overlap the batch's other I/O: a write's is sealed into its buffer just before the
// op first goes out, a read's is taken once its bytes have landed.
struct OpChecksum {
  bool wanted = false;
  bool done = false;
  uint64_t from = 0, length = 0;  // the range, counted from the op's first byte
  uint64_t at = 0;                // writes: where the CRC goes (u32 little-endian), outside the range
};

struct Op {
  Batch* batch = nullptr;
  uint32_t index = 0;
  bool write = false;
  std::shared_ptr<FileState> file;
  std::shared_ptr<Region> region;  // set when the memory is a registered region
  uint8_t* ptr = nullptr;          // where the next byte goes (advances on short transfers)
  uint64_t offset = 0;             // file offset of the next byte
  uint64_t remaining = 0;          // bytes still to move
  uint64_t done = 0;               // bytes moved so far
  bool direct = false;             // the last submission used the O_DIRECT descriptor
  int64_t bounce = -1;             // hf3fs: where in the bounce iov the current piece lives
  uint64_t piece = 0;              // hf3fs: bytes of the current submission
  OpChecksum checksum;
  // Order within the batch (IoOp.after): this op starts only once op `after` has settled without
  // an error. The ops waiting on this one are a list: first_waiter, then each one's next_waiter.
  int32_t after = -1;
  int32_t first_waiter = -1;
  int32_t next_waiter = -1;
  enum class State : uint8_t { kPending, kInFlight, kDone } state = State::kPending;
};

// One JS call's worth of ops. Results are written into memory the JS side owns (kept alive by
// the batch until it settles), laid out as wire.h says: per op, bytes moved and errno or 0.
struct Batch {
  uint64_t id = 0;
  std::vector<Op> ops;
  double* results = nullptr;
  uint32_t* crcs = nullptr;  // crcs[i]: the CRC32C op i's read asked for (JS-owned, like results)
  std::atomic<uint32_t> unsettled{0};
  bool fail_fast = false;
  int cancel_errno = 0;  // nonzero once canceled: what unfinished ops report
  size_t ring = 0;       // which of the client's engines runs it
  uint64_t submitted_ns = 0;  // MonotonicNs() when the JS call handed it over: ops' latency starts here
  void* js = nullptr;    // owned by the JS-facing side (promise, references)
};

// Writes: stores the CRC32C of the op's checksum range at its `at`, once, before the op's first
// byte goes out. Reads: records the CRC32C of the range in batch->crcs once the op is complete.
// Both do nothing unless the op asked, and nothing a second time. Engine threads only.
void SealChecksum(Op& op);
void TakeChecksum(Op& op);
// A write's checksum still to be sealed: the engine must run SealChecksum off the JS thread first.
inline bool NeedsSeal(const Op& op) { return op.write && op.checksum.wanted && !op.checksum.done; }

// Told when a batch has settled. Called from the engine's completion thread.
class CompletionSink {
 public:
  virtual ~CompletionSink() = default;
  virtual void BatchSettled(Batch* batch) = 0;
};

struct EngineCounters {
  std::atomic<uint64_t> read_ops{0}, write_ops{0}, read_bytes{0}, write_bytes{0};
  std::atomic<uint64_t> direct_bytes{0}, buffered_bytes{0};
  std::atomic<uint64_t> registered_bytes{0}, unregistered_bytes{0}, bounced_bytes{0};
  std::atomic<uint64_t> short_transfers{0}, errors{0}, submit_calls{0}, batches{0};
  OpDistributions distributions;
};

// Records an op's outcome in its batch's results and the counters, and lets go of its file and
// memory; a failed op of a fail-fast batch first has `cancel_rest(batch)` stop the others. True when
// this was the batch's last unsettled op: the caller hands the batch on and must not touch it after.
template <typename CancelRest>
bool SettleOp(Op* op, int err, EngineCounters& counters, CancelRest cancel_rest) {
  Batch* b = op->batch;
  op->state = Op::State::kDone;
  double* result = b->results + wire::kResultFields * op->index;
  result[wire::kBytes] = static_cast<double>(op->done);
  result[wire::kErrno] = err;
  (op->write ? counters.write_ops : counters.read_ops)++;
  counters.distributions.Record(op->write, MonotonicNs() - b->submitted_ns, op->done, err);
  if (err != 0) {
    counters.errors++;
    if (b->fail_fast && b->cancel_errno == 0) cancel_rest(b);
  }
  op->region.reset();
  op->file.reset();
  return --b->unsettled == 0;
}

// An engine's batches accepted and not yet settled, by id.
using LiveBatches = std::unordered_map<uint64_t, Batch*>;

// SettleOp, and when that was the batch's last op, forgets the batch and hands it to the sink.
// Returns true then.
template <typename CancelRest>
bool SettleAndHandOn(Op* op, int err, EngineCounters& counters, LiveBatches& live, CompletionSink* sink,
                     CancelRest cancel_rest) {
  Batch* b = op->batch;
  if (!SettleOp(op, err, counters, cancel_rest)) return false;
  live.erase(b->id);
  sink->BatchSettled(b);
  return true;
}

// The ops an engine starts when it accepts a batch: those waiting on no other op.
inline bool StartsAtOnce(const Op& op) { return op.after < 0; }

// Once an op settled with `err` (`first`: its first_waiter, read before it settled), each waiter
// starts, `start(w)`, or settles unstarted, `settle(w, errno)`, if the op failed or the batch was
// canceled. `b` is still alive: a batch is not handed on while waiters are unsettled.
template <typename Start, typename Settle>
void ReleaseWaiters(Batch* b, int32_t first, int err, Start start, Settle settle) {
  for (int32_t i = first; i >= 0;) {
    Op* w = &b->ops[static_cast<size_t>(i)];
    i = w->next_waiter;  // read first: settling the last waiter may hand the batch on
    if (err != 0 || b->cancel_errno != 0)
      settle(w, b->cancel_errno != 0 ? b->cancel_errno : ECANCELED);
    else if (w->remaining == 0)
      settle(w, 0);
    else
      start(w);
  }
}

// SettleAndHandOn for an op that others of its batch may wait on (IoOp.after): once it has
// settled, its waiters start or settle unstarted (ReleaseWaiters). Returns true when the batch
// was handed on (then it had no waiters left).
template <typename CancelRest, typename Start, typename Settle>
bool SettleWithWaiters(Op* op, int err, EngineCounters& counters, LiveBatches& live, CompletionSink* sink,
                       CancelRest cancel_rest, Start start, Settle settle) {
  Batch* b = op->batch;
  const int32_t first = op->first_waiter;
  if (SettleAndHandOn(op, err, counters, live, sink, cancel_rest)) return true;
  ReleaseWaiters(b, first, err, start, settle);
  return false;
}

// Moves the ops of batch `b` out of a queue of ops not yet started, into *out (in queue order):
// what a cancel settles at once.
inline void TakeOpsOf(const Batch* b, std::deque<Op*>& queue, std::vector<Op*>* out) {
  auto mine = [b](Op* op) { return op->batch == b; };
  for (Op* op : queue)
    if (mine(op)) out->push_back(op);
  queue.erase(std::remove_if(queue.begin(), queue.end(), mine), queue.end());
}

// Why Engine::Register left a region without a fixed buffer; any other value is the kernel's errno.
enum RegisterRefusal : int { kRegistered = 0, kNoTable = -1, kTooLarge = -2, kTableFull = -3, kEmpty = -4 };

struct EngineOptions {
  unsigned index = 0;               // this engine's place among the client's rings
  unsigned queue_depth = 128;       // ops in flight in the kernel at most (this ring)
  unsigned registered_slots = 1024; // fixed-buffer table size
  bool async_buffered = false;      // force buffered I/O onto kernel workers (IOSQE_ASYNC)
  unsigned threads = 8;             // threads engine: workers of this engine (ring)
  bool aio = true;                  // threads engine: O_DIRECT ops through kernel AIO
};

class Engine {
 public:
  // Makes an engine of type E and starts it (E::Start returns 0 or errno): the Make*Engine
  // functions below. Returns nullptr and sets *err when it cannot start.
  template <typename E, typename... Args>
  static std::unique_ptr<Engine> Started(int* err, Args&&... args) {
    auto engine = std::make_unique<E>(std::forward<Args>(args)...);
    *err = engine->Start();
    if (*err != 0) return nullptr;
    return engine;
  }

  virtual ~Engine() = default;
  virtual const char* name() const = 0;
  // Registers a region for faster I/O where the engine can: kRegistered, or why not (a
  // RegisterRefusal or an errno). Failing that, the region still works.
  virtual int Register(Region& region) = 0;
  // Queues every op of the batch. Never blocks on the device.
  virtual void Submit(Batch* batch) = 0;
  // Settles the batch's unfinished ops with `err` as soon as the device lets go of their memory.
  virtual void Cancel(Batch* batch, int err) = 0;
  // Cancels everything, waits for the device to let go, stops the completion thread.
  virtual void Close() = 0;
  virtual unsigned queue_depth() const = 0;
  virtual unsigned registered_slots() const = 0;
  EngineCounters counters;
};

// Returns nullptr and sets *err (errno) when io_uring cannot be set up here.
std::unique_ptr<Engine> MakeUringEngine(const EngineOptions& options, CompletionSink* sink, int* err);

// The portable fallback: pread/pwrite on a pool of `options.threads` native threads. Returns
// nullptr and sets *err when the threads cannot be started.
std::unique_ptr<Engine> MakeThreadsEngine(const EngineOptions& options, CompletionSink* sink, int* err);

}  // namespace tfs
