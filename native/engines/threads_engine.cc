// The portable embedded engine, for where io_uring cannot be set up (Docker's default seccomp
// profile, kernel.io_uring_disabled, sandboxes such as gVisor, old kernels): a small pool of native
// threads. Buffered ops are pread/pwrite, one at a time per thread; O_DIRECT ops go through kernel
// AIO (io_submit, what libaio wraps), which runs them truly asynchronously, so one thread keeps
// many on the device. Docker's default profile allows AIO; where it is missing too, pread/pwrite
// do those as well.
//
// It keeps the io_uring engine's semantics (the pieces, EOF and O_DIRECT choice of local_op.h,
// cancellation by batch, settling through the same CompletionSink); only the mechanism differs.
// The JS thread queues a batch's ops under one lock and wakes one worker; it never waits on the
// disk. A worker takes work from the head of the queue: the O_DIRECT ops there into its AIO
// context while it has room, else one buffered op, which it runs to its end (a short transfer goes
// on at once, on the same thread). Whichever worker settles a batch's last op hands the batch on.
#include <linux/aio_abi.h>
#include <poll.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>

#include "engines/engine.h"
#include "engines/local_op.h"

namespace tfs {
namespace {

constexpr unsigned kAioDepth = 32;  // O_DIRECT ops one worker keeps in flight at most

// A kernel AIO context, through the system calls (no library to link or install).
class AioContext {
 public:
  explicit AioContext(unsigned depth) {
    if (depth > 0 && syscall(__NR_io_setup, depth, &ctx_) == 0) depth_ = depth;
  }
  ~AioContext() {
    if (depth_ > 0) syscall(__NR_io_destroy, ctx_);  // waits for what is still in flight
  }
  AioContext(const AioContext&) = delete;
  AioContext& operator=(const AioContext&) = delete;

  // 0 when there is no AIO here (ENOSYS, EPERM, or EAGAIN: fs.aio-max-nr used up).
  unsigned depth() const { return depth_; }
  // How many of the n the kernel queued (from the first), or 0 when it took none.
  size_t Submit(iocb** cbs, size_t n) {
    const long r = syscall(__NR_io_submit, ctx_, static_cast<long>(n), cbs);
    return r > 0 ? static_cast<size_t>(r) : 0;
  }
  // Waits for at least one completion; returns how many landed in `events`.
  size_t Wait(io_event* events, size_t max) {
    for (;;) {
      const long r = syscall(__NR_io_getevents, ctx_, 1L, static_cast<long>(max), events, nullptr);
      if (r >= 0) return static_cast<size_t>(r);
      if (errno != EINTR) return 0;  // not on a context we made; the caller waits again
    }
  }

 private:
  aio_context_t ctx_ = 0;
  unsigned depth_ = 0;
};

class ThreadsEngine final : public Engine {
 public:
  ThreadsEngine(const EngineOptions& options, CompletionSink* sink) : options_(options), sink_(sink) {}
  ~ThreadsEngine() override { Close(); }

  int Start() {
    const unsigned threads = std::max(1u, std::min(options_.threads, options_.queue_depth));
    try {
      for (unsigned i = 0; i < threads; i++) {
        workers_.emplace_back([this] { Work(); });
        pthread_setname_np(workers_.back().native_handle(), "3fs-threads");  // named here, so at once
      }
    } catch (const std::system_error& e) {
      Close();  // stops the threads that did start
      return e.code().value() != 0 ? e.code().value() : EAGAIN;
    }
    return 0;
  }

  const char* name() const override { return "threads"; }
  unsigned queue_depth() const override { return options_.queue_depth; }
  unsigned registered_slots() const override { return 0; }
  // pread/pwrite have nothing to register memory with; every region works as it is.
  int Register(Region&) override { return kNoTable; }

  void Submit(Batch* batch) override {
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      counters.batches++;
      live_[batch->id] = batch;
      std::vector<Op*> empty;
      for (Op& op : batch->ops) {
        if (!StartsAtOnce(op)) continue;  // queued when the op it waits on settles
        if (op.remaining == 0) {
          empty.push_back(&op);
        } else {
          pending_.push_back(&op);
        }
      }
      if (stopping_) CancelBatch(batch, ECANCELED);
      // The last Settle may hand the batch to JS, which frees it: nothing touches it afterwards.
      for (Op* op : empty) Settle(op, 0);
      wake = !pending_.empty() && idle_ > 0;  // settled empties may have released waiters
    }
    // One worker only; it wakes the next if work is left when it takes its op (Work), so the JS
    // thread makes one wake-up call per batch, not one per op.
    if (wake) work_.notify_one();
  }

  void Cancel(Batch* batch, int err) override {
    const uint64_t id = batch->id;  // the batch may settle (not be freed) meanwhile: look it up
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(id);
    if (it != live_.end()) CancelBatch(it->second, err);
  }

  void Close() override {
    std::lock_guard<std::mutex> close_lock(close_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!stopping_) {
        stopping_ = true;
        std::vector<Batch*> live;  // CancelBatch may settle batches, which erases them from live_
        for (auto& entry : live_) live.push_back(entry.second);
        for (Batch* b : live) CancelBatch(b, ECANCELED);
      }
    }
    work_.notify_all();
    // Ops a worker is moving finish first: their memory is in use until the system call returns.
    for (std::thread& t : workers_)
      if (t.joinable()) t.join();
    workers_.clear();
  }

 private:
  // One worker's AIO: its context, and the ops in it by iocb slot.
  struct AioLane {
    explicit AioLane(unsigned depth) : context(depth), cbs(context.depth()), ops(context.depth()), events(context.depth()) {
      for (unsigned i = context.depth(); i > 0; i--) free.push_back(i - 1);
    }
    AioContext context;
    std::vector<iocb> cbs;
    std::vector<Op*> ops;
    std::vector<io_event> events;
    std::vector<unsigned> free;  // slots not in flight
    std::vector<iocb*> batch;    // slots to submit next
    size_t in_flight() const { return cbs.size() - free.size(); }
  };

  void Work() {
    AioLane aio(options_.aio ? std::min(kAioDepth, options_.queue_depth) : 0);
    std::vector<std::pair<Op*, int>> finished;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (aio.in_flight() == 0 && pending_.empty()) {
        if (stopping_) return;
        idle_++;
        work_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
        idle_--;
        continue;
      }
      // O_DIRECT ops at the head of the queue go into this worker's AIO context while it has room;
      // else, with nothing of its own in flight, the worker takes the head op and moves it itself.
      aio.batch.clear();
      while (!aio.free.empty() && !pending_.empty() && in_flight_ < options_.queue_depth && WantsAio(pending_.front())) {
        const unsigned slot = aio.free.back();
        aio.free.pop_back();
        aio.ops[slot] = Take();
        PrepareAio(&aio.cbs[slot], aio.ops[slot], slot);
        aio.batch.push_back(&aio.cbs[slot]);
      }
      Op* mine = aio.batch.empty() && aio.in_flight() == 0 ? Take() : nullptr;
      // Pass the wake-up on while ops wait: with fast ops (the page cache) the chain stops by
      // itself once the awake workers keep up, and no more threads than needed contend.
      const bool more = !pending_.empty() && idle_ > 0 && in_flight_ < options_.queue_depth;
      lock.unlock();
      if (more) work_.notify_one();

      finished.clear();
      if (mine != nullptr) finished.emplace_back(mine, Move(mine));
      if (!aio.batch.empty()) {
        for (iocb* cb : aio.batch) SealChecksum(*aio.ops[cb->aio_data]);  // before the kernel reads the buffers
        counters.submit_calls++;
        const size_t queued = aio.context.Submit(aio.batch.data(), aio.batch.size());
        // What the kernel did not take (EAGAIN: its queue is full; EINVAL: no AIO on this file
        // system) moves here with pread/pwrite.
        for (size_t k = queued; k < aio.batch.size(); k++) {
          const unsigned slot = static_cast<unsigned>(aio.batch[k]->aio_data);
          aio.free.push_back(slot);
          finished.emplace_back(aio.ops[slot], Move(aio.ops[slot]));
        }
      }
      if (aio.in_flight() > 0 && finished.empty()) {
        const size_t n = aio.context.Wait(aio.events.data(), aio.events.size());
        for (size_t k = 0; k < n; k++) {
          const unsigned slot = static_cast<unsigned>(aio.events[k].data);
          aio.free.push_back(slot);
          Op* op = aio.ops[slot];
          const int err = Finish(op, aio.events[k].res);
          // A piece that stopped short (or was interrupted) goes on here, unless the batch was canceled.
          finished.emplace_back(op, err >= 0 ? err : Continue(op));
        }
      }
      lock.lock();
      for (auto& [op, err] : finished) {
        in_flight_--;
        Settle(op, err);
      }
    }
  }

  // With mu_ held: the head of the queue, now this worker's.
  Op* Take() {
    Op* op = pending_.front();
    pending_.pop_front();
    op->state = Op::State::kInFlight;
    in_flight_++;
    return op;
  }

  // With mu_ held (the op is still queued, so nobody else looks at it).
  static bool WantsAio(Op* op) {
    int fd;
    NextPiece(op, &fd);
    return op->direct;
  }

  static void PrepareAio(iocb* cb, Op* op, unsigned slot) {
    int fd;
    const uint64_t len = NextPiece(op, &fd);
    *cb = iocb{};
    cb->aio_data = slot;
    cb->aio_lio_opcode = op->write ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD;
    cb->aio_fildes = static_cast<uint32_t>(fd);
    cb->aio_buf = reinterpret_cast<uint64_t>(op->ptr);
    cb->aio_nbytes = len;
    cb->aio_offset = static_cast<int64_t>(op->offset);
  }

  // The outcome of an AIO piece: the errno to settle with (0: done), or -1 to go on.
  int Finish(Op* op, int64_t res) {
    if (res == -EINTR || res == -EAGAIN) return -1;
    if (res < 0) return static_cast<int>(-res);
    switch (AdvanceOp(op, static_cast<uint64_t>(res), /*registered=*/false, counters)) {
      case PieceOutcome::kDone:
        return 0;
      case PieceOutcome::kStalled:
        return EIO;
      case PieceOutcome::kMore:
        break;
    }
    return -1;
  }

  // Goes on with an op after a piece, unless its batch was canceled meanwhile (then it settles
  // with that errno). Called without the lock.
  int Continue(Op* op) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (op->batch->cancel_errno != 0) return op->batch->cancel_errno;
    }
    return Move(op);
  }

  // Moves the op's bytes with pread/pwrite, piece by piece, until it is done, fails, or its batch
  // is canceled between two pieces. Returns the errno to settle it with. Called without the lock.
  int Move(Op* op) {
    SealChecksum(*op);  // a write's checksum, once, before its first byte goes out
    for (;;) {
      int fd;
      const uint64_t len = NextPiece(op, &fd);
      counters.submit_calls++;
      const ssize_t r = op->write ? pwrite(fd, op->ptr, len, static_cast<off_t>(op->offset))
                                  : pread(fd, op->ptr, len, static_cast<off_t>(op->offset));
      if (r < 0) {
        const int err = errno;
        if (err != EINTR && err != EAGAIN) return err;
        if (err == EAGAIN) {
          // A non-blocking descriptor (O_NONBLOCK on a pipe or device) with nothing to move yet:
          // wait a moment for it rather than spin, then go on as after a short transfer.
          pollfd p{fd, static_cast<short>(op->write ? POLLOUT : POLLIN), 0};
          poll(&p, 1, 10);
        }
      } else {
        const int err = Finish(op, r);
        if (err >= 0) return err;
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (op->batch->cancel_errno != 0) return op->batch->cancel_errno;
    }
  }

  // With mu_ held. Ops still queued settle now; ops a worker is moving settle when their system
  // call returns (their memory is the kernel's until then).
  void CancelBatch(Batch* b, int err) {
    if (b->cancel_errno != 0) return;
    b->cancel_errno = err;
    std::vector<Op*> settle_now;
    TakeOpsOf(b, pending_, &settle_now);
    for (Op* op : settle_now) Settle(op, err);
  }

  // With mu_ held. Waiters go next, ahead of newer work; the worker settling this op takes them on
  // its next turn.
  void Settle(Op* op, int err) {
    SettleWithWaiters(
        op, err, counters, live_, sink_, [this](Batch* b) { CancelBatch(b, ECANCELED); },
        [this](Op* w) { pending_.push_front(w); }, [this](Op* w, int e) { Settle(w, e); });
  }

  EngineOptions options_;
  CompletionSink* sink_;
  std::vector<std::thread> workers_;
  std::mutex close_mu_;

  std::mutex mu_;  // guards everything below, and the cancel state of live batches
  std::condition_variable work_;
  std::deque<Op*> pending_;
  LiveBatches live_;
  size_t idle_ = 0;       // workers waiting on work_
  unsigned in_flight_ = 0;  // ops a worker has taken and not settled: at most the queue depth
  bool stopping_ = false;
};

}  // namespace

std::unique_ptr<Engine> MakeThreadsEngine(const EngineOptions& options, CompletionSink* sink, int* err) {
  return Engine::Started<ThreadsEngine>(err, options, sink);
}

}  // namespace tfs
