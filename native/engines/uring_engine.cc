// The embedded engine: io_uring on local files, for the batches the JS thread's own ring does not
// take (uring_direct.h): big ones, ordered or checksummed ops, more than it has room for.
//
// One ring per engine. All ring work (preparing SQEs, submitting, reaping) happens on one native
// thread, so the SQ has a single producer and the kernel's completion task-work lands on the
// thread that waits for it. The JS thread only posts commands (submit, cancel, stop) into a
// queue and wakes that thread through an eventfd the ring itself polls.
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cerrno>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "engines/engine.h"
#include "engines/uring_setup.h"
#include "engines/local_op.h"
#include "engines/uring_fixed.h"

namespace tfs {
namespace {

constexpr uint64_t kWakeTag = 1;    // CQE of the eventfd poll
constexpr uint64_t kCancelTag = 2;  // CQE of a cancel request
// Sealed writes go to the kernel every this many checksummed bytes: the device works on them while
// this thread checksums the next ones.
constexpr uint64_t kSealedPerSubmit = 256 << 10;
// Small cached (buffered) ops go to the kernel this many at a time: one system call, not one each.
constexpr unsigned kBufferedPerSubmit = 16;
constexpr uint64_t kSmallBuffered = 64 << 10;

class UringEngine final : public Engine {
 public:
  UringEngine(const EngineOptions& options, CompletionSink* sink) : options_(options), sink_(sink) {}
  ~UringEngine() override { Close(); }

  int Start() {
    int r = InitRing(&ring_, options_.queue_depth);
    if (r < 0) return -r;
    ring_ready_ = true;
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) return errno;
    slots_ = options_.registered_slots;
    if (slots_ > 0 && io_uring_register_buffers_sparse(&ring_, slots_) < 0) slots_ = 0;
    fixed_ = std::make_shared<FixedBuffers>(&ring_, slots_);
    thread_ = std::thread([this] { Run(); });
    pthread_setname_np(thread_.native_handle(), "3fs-uring");  // named here, so it has its name at once
    return 0;
  }

  const char* name() const override { return "io_uring"; }
  unsigned queue_depth() const override { return options_.queue_depth; }
  unsigned registered_slots() const override { return slots_; }

  int Register(Region& region) override {
    if (slots_ == 0) return kNoTable;
    if (region.size() == 0 || region.size() > kMaxPiece) return region.size() == 0 ? kEmpty : kTooLarge;
    int why = kRegistered;
    int slot = fixed_->Register(region.data(), region.size(), &why);
    if (slot < 0) return why;
    region.AddRegistration(options_.index, slot, fixed_);
    return kRegistered;
  }

  void Submit(Batch* batch) override { Post({Command::kSubmit, batch, 0, 0}); }
  void Cancel(Batch* batch, int err) override { Post({Command::kCancel, nullptr, batch->id, err}); }

  void Close() override {
    std::lock_guard<std::mutex> lock(close_mu_);
    if (thread_.joinable()) {
      Post({Command::kStop, nullptr, 0, 0});
      thread_.join();
    }
    if (fixed_) fixed_->Detach();
    if (ring_ready_) {
      io_uring_queue_exit(&ring_);
      ring_ready_ = false;
    }
    if (wake_fd_ >= 0) {
      close(wake_fd_);
      wake_fd_ = -1;
    }
  }

 private:
  struct Command {
    enum Kind { kSubmit, kCancel, kStop } kind;
    Batch* batch;
    uint64_t id;
    int err;
  };

  // JS thread: queue a command, and wake the ring thread only if it is (about to be) asleep: a
  // busy ring thread takes the command on its next turn without a system call from us.
  void Post(Command command) {
    {
      // Set under the lock: TakeCommands clears it under the same lock, so the flag can never
      // be left up with the queue empty (FillRing would yield to a command that is not there).
      std::lock_guard<std::mutex> lock(commands_mu_);
      commands_.push_back(command);
      posted_.store(true, std::memory_order_relaxed);
    }
    idle_.notify_one();
    if (sleeping_.exchange(false)) {
      uint64_t one = 1;
      ssize_t ignored = write(wake_fd_, &one, sizeof one);
      (void)ignored;
    }
  }

  void ArmWakePoll() {
    io_uring_sqe* sqe = GetSqe();
    if (multishot_)
      io_uring_prep_poll_multishot(sqe, wake_fd_, POLLIN);
    else
      io_uring_prep_poll_add(sqe, wake_fd_, POLLIN);
    io_uring_sqe_set_data64(sqe, kWakeTag);
  }

  io_uring_sqe* GetSqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (sqe == nullptr) {  // SQ full: hand what is prepared to the kernel and try again
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
  }

  void Run() {
    // Every request, the wake poll included, is submitted from this thread: the kernel runs a
    // request's completion work in its submitter's context, and that must not be the JS thread.
    ArmWakePoll();
    for (;;) {
      TakeCommands();
      if (stopping_ && in_flight_ == 0) break;
      FillRing();
      if (in_flight_ == 0) {
        if (!pending_.empty()) continue;  // FillRing yielded to a command: take it, then fill on
        // Nothing in the kernel to wait for: sleep on a condition variable, a much cheaper wake-up
        // for the JS thread than the eventfd the ring polls.
        io_uring_submit(&ring_);  // cancels may be prepared
        Reap();
        std::unique_lock<std::mutex> lock(commands_mu_);
        idle_.wait(lock, [this] { return !commands_.empty(); });
        continue;
      }
      counters.submit_calls++;
      // Announce the sleep before the last look at the queue, so Post() either sees the flag
      // (and wakes us) or its command is seen here.
      sleeping_.store(true);
      bool idle;
      {
        std::lock_guard<std::mutex> lock(commands_mu_);
        idle = commands_.empty();
      }
      int r = idle ? io_uring_submit_and_wait(&ring_, 1) : io_uring_submit(&ring_);
      sleeping_.store(false);
      if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME) {
        // The ring itself failed: nothing more can complete, so settle everything.
        FailAll(-r);
        break;
      }
      Reap();
    }
  }

  void TakeCommands() {
    std::vector<Command> commands;
    {
      std::lock_guard<std::mutex> lock(commands_mu_);
      commands.swap(commands_);
      posted_.store(false, std::memory_order_relaxed);
    }
    for (const Command& c : commands) {
      switch (c.kind) {
        case Command::kSubmit:
          Accept(c.batch);
          break;
        case Command::kCancel: {
          auto it = live_.find(c.id);
          if (it != live_.end()) CancelBatch(it->second, c.err);
          break;
        }
        case Command::kStop:
          stopping_ = true;
          std::vector<Batch*> live;  // CancelBatch may settle batches, which erases them from live_
          for (auto& entry : live_) live.push_back(entry.second);
          for (Batch* b : live) CancelBatch(b, ECANCELED);
          break;
      }
    }
  }

  void Accept(Batch* batch) {
    counters.batches++;
    live_[batch->id] = batch;
    std::vector<Op*> empty;
    for (Op& op : batch->ops) {
      if (!StartsAtOnce(op)) continue;  // queued when the op it waits on settles
      if (op.remaining == 0)
        empty.push_back(&op);
      else
        pending_.push_back(&op);
    }
    if (stopping_) CancelBatch(batch, ECANCELED);
    // The last Settle may hand the batch to JS, which frees it: nothing touches it afterwards.
    for (Op* op : empty) Settle(op, 0);
  }

  void FillRing() {
    while (in_flight_ < options_.queue_depth && !pending_.empty()) {
      Op* op = pending_.front();
      pending_.pop_front();
      if (NeedsSeal(*op)) {
        SealChecksum(*op);
        sealed_ += op->checksum.length;
      }
      Prepare(op);
      if (sealed_ >= kSealedPerSubmit) {
        io_uring_submit(&ring_);
        sealed_ = 0;
      }
      // A cached read or write is copied inside the submit call: a big one goes alone and its
      // result is handed on at once, rather than after the copies of everything prepared with it;
      // small ones (a directory block, an entry) go a few at a time, one system call for them all.
      const bool small = op->remaining <= kSmallBuffered;
      if (!op->direct && !options_.async_buffered && (!small || ++buffered_run_ >= kBufferedPerSubmit || pending_.empty())) {
        buffered_run_ = 0;
        io_uring_submit(&ring_);
        Reap();
        if (posted_.load(std::memory_order_relaxed)) break;  // a cancel may be waiting: take it first
      }
    }
  }

  void Prepare(Op* op) {
    int fd;
    const uint64_t len = NextPiece(op, &fd);
    io_uring_sqe* sqe = GetSqe();
    const int slot = op->region ? op->region->slot(options_.index) : -1;
    if (slot >= 0) {
      if (op->write)
        io_uring_prep_write_fixed(sqe, fd, op->ptr, len, op->offset, slot);
      else
        io_uring_prep_read_fixed(sqe, fd, op->ptr, len, op->offset, slot);
    } else {
      if (op->write)
        io_uring_prep_write(sqe, fd, op->ptr, len, op->offset);
      else
        io_uring_prep_read(sqe, fd, op->ptr, len, op->offset);
    }
    // Optional: buffered I/O on kernel workers rather than inline on this thread (see EngineOptions).
    if (!op->direct && options_.async_buffered) sqe->flags |= IOSQE_ASYNC;
    io_uring_sqe_set_data(sqe, op);
    op->state = Op::State::kInFlight;
    in_flight_++;
  }

  void Reap() {
    io_uring_cqe* cqe;
    unsigned head, seen = 0;
    bool rearm = false;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      seen++;
      const uint64_t tag = cqe->user_data;
      if (tag == kWakeTag) {
        uint64_t drained;
        ssize_t ignored = read(wake_fd_, &drained, sizeof drained);
        (void)ignored;
        if (cqe->res == -EINVAL) multishot_ = false;  // kernels before 5.13: one-shot polls
        if (!(cqe->flags & IORING_CQE_F_MORE)) rearm = true;
      } else if (tag != kCancelTag) {
        Complete(reinterpret_cast<Op*>(tag), cqe->res);
      }
    }
    io_uring_cq_advance(&ring_, seen);
    if (rearm && !stopping_) ArmWakePoll();
  }

  void Complete(Op* op, int res) {
    in_flight_--;
    Batch* b = op->batch;
    if (res == -EINTR || res == -EAGAIN) {
      Retry(op);
      return;
    }
    if (res < 0) {
      const int err = (b->cancel_errno != 0 && res == -ECANCELED) ? b->cancel_errno : -res;
      Settle(op, err);
      return;
    }
    const bool fixed = op->region && op->region->slot(options_.index) >= 0;
    switch (AdvanceOp(op, static_cast<uint64_t>(res), fixed, counters)) {
      case PieceOutcome::kDone:
        Settle(op, 0);
        break;
      case PieceOutcome::kStalled:
        Settle(op, EIO);
        break;
      case PieceOutcome::kMore:
        Retry(op);
        break;
    }
  }

  // A short or interrupted transfer continues where it stopped, ahead of newer work.
  void Retry(Op* op) {
    if (op->batch->cancel_errno != 0) {
      Settle(op, op->batch->cancel_errno);
      return;
    }
    op->state = Op::State::kPending;
    pending_.push_front(op);
  }

  void CancelBatch(Batch* b, int err) {
    if (b->cancel_errno != 0) return;
    b->cancel_errno = err;
    // Ops not yet in the kernel settle now; ops in the kernel are asked to stop and settle when
    // their CQE arrives (their memory is the device's until then).
    std::vector<Op*> settle_now;
    TakeOpsOf(b, pending_, &settle_now);
    for (Op& op : b->ops) {
      if (op.state != Op::State::kInFlight) continue;
      io_uring_sqe* sqe = GetSqe();
      io_uring_prep_cancel64(sqe, reinterpret_cast<uint64_t>(&op), 0);
      io_uring_sqe_set_data64(sqe, kCancelTag);
    }
    for (Op* op : settle_now) Settle(op, err);
  }

  // Ops waiting on this one go next, ahead of newer work: what they wait for has just landed.
  void Settle(Op* op, int err) {
    SettleWithWaiters(
        op, err, counters, live_, sink_, [this](Batch* b) { CancelBatch(b, ECANCELED); },
        [this](Op* w) { pending_.push_front(w); }, [this](Op* w, int e) { Settle(w, e); });
  }

  void FailAll(int err) {
    pending_.clear();
    while (!live_.empty()) {
      Batch* b = live_.begin()->second;
      b->fail_fast = false;  // settle op by op, without cascading cancels
      // Ops waiting on an unsettled op are left out: they settle with it.
      std::vector<Op*> open;
      for (Op& op : b->ops)
        if (op.state != Op::State::kDone && (op.after < 0 || b->ops[static_cast<size_t>(op.after)].state == Op::State::kDone))
          open.push_back(&op);
      for (Op* op : open) Settle(op, err);
    }
  }

  EngineOptions options_;
  CompletionSink* sink_;
  io_uring ring_{};
  bool ring_ready_ = false;
  int wake_fd_ = -1;
  bool multishot_ = true;
  unsigned slots_ = 0;
  std::shared_ptr<FixedBuffers> fixed_;
  std::thread thread_;
  std::mutex close_mu_;

  std::mutex commands_mu_;
  std::vector<Command> commands_;
  std::condition_variable idle_;      // the ring thread waits here when nothing is in flight
  std::atomic<bool> sleeping_{false};  // the ring thread waits in the kernel: wake it by eventfd
  std::atomic<bool> posted_{false};    // commands are waiting

  // Owned by the ring thread.
  std::deque<Op*> pending_;
  LiveBatches live_;
  unsigned in_flight_ = 0;
  uint64_t sealed_ = 0;  // checksummed bytes prepared since the last submit
  unsigned buffered_run_ = 0;  // cached ops prepared since the last submit
  bool stopping_ = false;
};

}  // namespace

std::unique_ptr<Engine> MakeUringEngine(const EngineOptions& options, CompletionSink* sink, int* err) {
  return Engine::Started<UringEngine>(err, options, sink);
}

}  // namespace tfs
