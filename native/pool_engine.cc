// The portable embedded engine: a small pool of native threads doing pread/pwrite, for where
// io_uring cannot be set up (Docker's default seccomp profile, kernel.io_uring_disabled, sandboxes
// such as gVisor, old kernels).
//
// It keeps the io_uring engine's semantics (the pieces, EOF and O_DIRECT choice of local_op.h,
// cancellation by batch, settling through the same CompletionSink); only the mechanism differs.
// The JS thread queues a batch's ops under one lock and wakes as many idle workers as there are
// new ops; it never waits on the disk. A worker takes an op, runs it to its end (a short transfer
// goes on at once, on the same thread), settles it and takes the next one under the same lock.
// Whichever worker settles a batch's last op hands the batch on.
//
// Why not one op per queue turn, as the ring does: a worker that owns an op until it ends needs
// no state shared for it, and a short transfer here is rare (EOF, signals, 1 GiB pieces).
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "engine.h"
#include "local_op.h"

namespace tfs {
namespace {

class PoolEngine final : public Engine {
 public:
  PoolEngine(const EngineOptions& options, CompletionSink* sink) : options_(options), sink_(sink) {}
  ~PoolEngine() override { Close(); }

  int Start() {
    const unsigned threads = std::max(1u, std::min(options_.threads, options_.queue_depth));
    try {
      for (unsigned i = 0; i < threads; i++) workers_.emplace_back([this] { Work(); });
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
  void Register(Region&) override {}

  void Submit(Batch* batch) override {
    size_t queued = 0;
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      counters.batches++;
      live_[batch->id] = batch;
      std::vector<Op*> empty;
      for (Op& op : batch->ops) {
        if (op.remaining == 0) {
          empty.push_back(&op);
        } else {
          pending_.push_back(&op);
          queued++;
        }
      }
      if (stopping_) CancelBatch(batch, ECANCELED);
      // The last Settle may hand the batch to JS, which frees it: nothing touches it afterwards.
      for (Op* op : empty) Settle(op, 0);
      wake = queued > 0 && idle_ > 0;
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
  void Work() {
    pthread_setname_np(pthread_self(), "3fs-threads");
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (pending_.empty()) {
        if (stopping_) return;
        idle_++;
        work_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
        idle_--;
        continue;
      }
      Op* op = pending_.front();
      pending_.pop_front();
      op->state = Op::State::kInFlight;
      // Pass the wake-up on while ops wait: with fast ops (the page cache) the chain stops by
      // itself once the awake workers keep up, and no more threads than needed contend.
      const bool more = !pending_.empty() && idle_ > 0;
      lock.unlock();
      if (more) work_.notify_one();
      int err = Run(op, lock);  // returns with the lock held
      Settle(op, err);
    }
  }

  // Moves the op's bytes piece by piece until it is done, fails, or its batch is canceled between
  // two pieces. Called without the lock; takes it before returning, for the caller to settle.
  int Run(Op* op, std::unique_lock<std::mutex>& lock) {
    for (;;) {
      int fd;
      const uint64_t len = NextPiece(op, &fd);
      counters.submit_calls++;
      const ssize_t r = op->write ? pwrite(fd, op->ptr, len, static_cast<off_t>(op->offset))
                                  : pread(fd, op->ptr, len, static_cast<off_t>(op->offset));
      int err = 0;
      if (r < 0) {
        err = errno;
        if (err == EAGAIN) {
          // A non-blocking descriptor (O_NONBLOCK on a pipe or device) with nothing to move yet:
          // wait a moment for it rather than spin, then go on as after a short transfer.
          pollfd p{fd, static_cast<short>(op->write ? POLLOUT : POLLIN), 0};
          poll(&p, 1, 10);
        }
        if (err != EINTR && err != EAGAIN) {
          lock.lock();
          return err;
        }
      } else {
        switch (AdvanceOp(op, static_cast<uint64_t>(r), counters)) {
          case PieceOutcome::kDone:
            lock.lock();
            return 0;
          case PieceOutcome::kStalled:
            lock.lock();
            return EIO;
          case PieceOutcome::kMore:
            break;
        }
      }
      // Going on: unless the batch was canceled meanwhile (then the op settles with that errno).
      lock.lock();
      if (op->batch->cancel_errno != 0) return op->batch->cancel_errno;
      lock.unlock();
    }
  }

  // With mu_ held. Ops still queued settle now; ops a worker is moving settle when their system
  // call returns (their memory is the kernel's until then).
  void CancelBatch(Batch* b, int err) {
    if (b->cancel_errno != 0) return;
    b->cancel_errno = err;
    std::vector<Op*> settle_now;
    auto mine = [b](Op* op) { return op->batch == b; };
    for (Op* op : pending_)
      if (mine(op)) settle_now.push_back(op);
    pending_.erase(std::remove_if(pending_.begin(), pending_.end(), mine), pending_.end());
    for (Op* op : settle_now) Settle(op, err);
  }

  // With mu_ held.
  void Settle(Op* op, int err) {
    Batch* b = op->batch;
    if (!SettleOp(op, err, counters, [this](Batch* batch) { CancelBatch(batch, ECANCELED); })) return;
    live_.erase(b->id);
    sink_->BatchSettled(b);
  }

  EngineOptions options_;
  CompletionSink* sink_;
  std::vector<std::thread> workers_;
  std::mutex close_mu_;

  std::mutex mu_;  // guards everything below, and the cancel state of live batches
  std::condition_variable work_;
  std::deque<Op*> pending_;
  std::unordered_map<uint64_t, Batch*> live_;
  size_t idle_ = 0;  // workers waiting on work_
  bool stopping_ = false;
};

}  // namespace

std::unique_ptr<Engine> MakePoolEngine(const EngineOptions& options, CompletionSink* sink, int* err) {
  auto engine = std::make_unique<PoolEngine>(options, sink);
  *err = engine->Start();
  if (*err != 0) return nullptr;
  return engine;
}

}  // namespace tfs
