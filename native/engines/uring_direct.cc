#include "engines/uring_direct.h"


#include <algorithm>
#include <cerrno>
#include <vector>

#include "engines/local_op.h"
#include "engines/uring_setup.h"

namespace tfs {
namespace {

constexpr uint64_t kCancelTag = 2;  // CQE of a cancel request
// A cached read up to this size is copied inside io_uring_enter on the JS thread (about as long as
// a wake-up of another thread would take); bigger ones, and buffered writes (which may wait for
// dirty-page throttling), go to the kernel's workers (IOSQE_ASYNC).
constexpr uint64_t kInlineBuffered = 16 << 10;
// Bytes prepared by a wake-up's reactions from which they may go to the kernel before the
// wake-up's other completions are taken (see SubmitNow).
constexpr uint64_t kEarlySubmitBytes = 32 << 10;

}  // namespace

std::unique_ptr<UringDirect> UringDirect::Make(uv_loop_t* loop, const EngineOptions& options, JsThreadSink* sink, int* err) {
  std::unique_ptr<UringDirect> direct(new UringDirect(options, sink));
  *err = direct->Start(loop);
  if (*err != 0) return nullptr;
  return direct;
}

int UringDirect::Start(uv_loop_t* loop) {
  int r = InitRing(&ring_, options_.queue_depth);
  if (r < 0) return -r;
  ring_ready_ = true;
  slots_ = options_.registered_slots;
  if (slots_ > 0 && io_uring_register_buffers_sparse(&ring_, slots_) < 0) slots_ = 0;
  fixed_ = std::make_shared<FixedBuffers>(&ring_, slots_);
  poll_ = new uv_poll_t;
  r = uv_poll_init(loop, poll_, ring_.ring_fd);  // readable while the CQ holds entries
  if (r < 0) {
    delete poll_;
    poll_ = nullptr;
    return -r;
  }
  poll_->data = this;
  uv_poll_start(poll_, UV_READABLE, &UringDirect::OnPoll);
  uv_unref(reinterpret_cast<uv_handle_t*>(poll_));  // ref'd only while ops are in flight
  return 0;
}

UringDirect::~UringDirect() { CloseNow(); }

void UringDirect::Register(Region& region) {
  if (slots_ == 0 || region.size() == 0 || region.size() > kMaxPiece) return;
  int why = kRegistered;
  int slot = fixed_->Register(region.data(), region.size(), &why);
  if (slot >= 0) region.AddRegistration(options_.index, slot, fixed_);
}

bool UringDirect::Fits(const Batch& b) const {
  if (!ring_ready_ || drained_ || b.ops.size() > kMaxOps || in_flight_ + b.ops.size() > options_.queue_depth) return false;
  for (const Op& op : b.ops)
    if (op.after >= 0 || op.first_waiter >= 0 || op.checksum.wanted || op.remaining == 0 || op.remaining > kMaxPiece ||
        GoesToWorkers(op))
      return false;
  return true;
}

// A buffered read this ring would hand to the kernel's workers: io-wq ran a whole warm load's
// copies on one core, where each ring thread copies inline on its own. Only what is sure to be
// buffered counts (direct 'never', or memory or range not aligned for any O_DIRECT).
bool UringDirect::GoesToWorkers(const Op& op) const {
  return !op.write && !options_.async_buffered && op.remaining > kInlineBuffered && !MayGoDirect(op, op.remaining);
}

void UringDirect::Submit(Batch* b) {
  counters.batches++;
  live_[b->id] = b;
  for (Op& op : b->ops) Prepare(&op);
  if (!deferring_) Reap();  // may settle the batch: nothing touches it afterwards
}

void UringDirect::Prepare(Op* op) {
  int fd;
  const uint64_t len = NextPiece(op, &fd);
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {  // SQ full of cancels: hand them to the kernel first
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  const int slot = op->region ? op->region->slot(options_.index) : -1;
  if (slot >= 0) {
    if (op->write)
      io_uring_prep_write_fixed(sqe, fd, op->ptr, len, op->offset, slot);
    else
      io_uring_prep_read_fixed(sqe, fd, op->ptr, len, op->offset, slot);
  } else if (op->write) {
    io_uring_prep_write(sqe, fd, op->ptr, len, op->offset);
  } else {
    io_uring_prep_read(sqe, fd, op->ptr, len, op->offset);
  }
  if (!op->direct && (op->write || options_.async_buffered || len > kInlineBuffered)) sqe->flags |= IOSQE_ASYNC;
  io_uring_sqe_set_data(sqe, op);
  prepared_bytes_ += len;
  op->state = Op::State::kInFlight;
  if (in_flight_++ == 0 && poll_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
}

// Submits what is prepared (io_uring_enter without waiting), settles what completed, submits what
// that prepared (retries, cancels), and so on until neither. What lands later makes the ring's fd
// readable, and the event loop calls OnPoll.
void UringDirect::Reap() {
  if (reaping_) return;
  reaping_ = true;
  for (;;) {
    bool submitted = true;
    if (io_uring_sq_ready(&ring_) > 0) {
      counters.submit_calls++;
      prepared_bytes_ = 0;
      submitted = io_uring_submit(&ring_) >= 0;  // if not (EAGAIN, EBUSY), the next Reap tries again
    }
    io_uring_cqe* cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      seen++;
      if (cqe->user_data != kCancelTag) Complete(reinterpret_cast<Op*>(cqe->user_data), cqe->res);
    }
    io_uring_cq_advance(&ring_, seen);
    if (seen == 0 && (!submitted || io_uring_sq_ready(&ring_) == 0)) break;
  }
  reaping_ = false;
}

// Last in every entry point: `then` may close the ring.
void UringDirect::MaybeDrained() {
  if (!DrainDue()) return;
  std::function<void()> then = std::move(drained_);
  drained_ = nullptr;
  then();
}

void UringDirect::Complete(Op* op, int res) {
  if (--in_flight_ == 0 && poll_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
  Batch* b = op->batch;
  PieceOutcome outcome;
  if (res == -EINTR || res == -EAGAIN) {
    outcome = PieceOutcome::kMore;
  } else if (res < 0) {
    Settle(op, (b->cancel_errno != 0 && res == -ECANCELED) ? b->cancel_errno : -res);
    return;
  } else {
    const bool fixed = op->region && op->region->slot(options_.index) >= 0;
    outcome = AdvanceOp(op, static_cast<uint64_t>(res), fixed, counters);
  }
  if (outcome == PieceOutcome::kDone)
    Settle(op, 0);
  else if (outcome == PieceOutcome::kStalled)
    Settle(op, EIO);
  else if (b->cancel_errno != 0)
    Settle(op, b->cancel_errno);
  else
    Prepare(op);  // a short or interrupted transfer goes on where it stopped
}

void UringDirect::Settle(Op* op, int err) {
  Batch* b = op->batch;
  if (!SettleOp(op, err, counters, [this](Batch* x) { CancelBatch(x, ECANCELED); })) return;
  live_.erase(b->id);
  settled_ = true;
  sink_->BatchSettledHere(b);
}

void UringDirect::Cancel(Batch* b, int err) {
  if (live_.count(b->id) == 0) return;
  CancelBatch(b, err);
  Reap();
  MaybeDrained();
}

// Ops in the kernel are asked to stop; each settles when its CQE arrives (the device may hold its
// memory until then).
void UringDirect::CancelBatch(Batch* b, int err) {
  if (b->cancel_errno != 0) return;
  b->cancel_errno = err;
  for (Op& op : b->ops) {
    if (op.state != Op::State::kInFlight) continue;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (sqe == nullptr) {
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    io_uring_prep_cancel64(sqe, reinterpret_cast<uint64_t>(&op), 0);
    io_uring_sqe_set_data64(sqe, kCancelTag);
  }
}

void UringDirect::CancelAll(int err) {
  std::vector<Batch*> live;
  for (auto& entry : live_) live.push_back(entry.second);
  for (Batch* b : live) CancelBatch(b, err);
}

void UringDirect::Drain(std::function<void()> then) {
  if (!ring_ready_) {
    then();
    return;
  }
  drained_ = std::move(then);
  CancelAll(ECANCELED);
  Reap();
  MaybeDrained();
}

void UringDirect::CloseNow() {
  if (!ring_ready_) return;
  CancelAll(ECANCELED);
  while (in_flight_ > 0) {
    io_uring_submit_and_wait(&ring_, 1);  // teardown: no JS runs any more, so waiting here is fine
    Reap();
  }
  drained_ = nullptr;
  ClosePoll();
  if (fixed_) fixed_->Detach();
  io_uring_queue_exit(&ring_);
  ring_ready_ = false;
}

void UringDirect::ClosePoll() {
  if (poll_ == nullptr) return;
  uv_poll_stop(poll_);
  uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  poll_ = nullptr;
}

// A wake-up's completions are taken batch by batch: once a batch settles, its callback scope
// closes and its promise's reactions run, and what they prepared may go to the kernel at once
// (SubmitNow), before the next completion is looked at; the rest goes in one io_uring_enter at the
// end. Only the completions there at the start are taken: what lands inside these calls (a
// page-cache read) waits for the loop's next turn, so timers and other I/O still get theirs.
void UringDirect::OnPoll(uv_poll_t* poll, int status, int events) {
  auto* self = static_cast<UringDirect*>(poll->data);
  unsigned budget = self->ring_ready_ ? io_uring_cq_ready(&self->ring_) : 0;
  while (budget > 0 && self->ring_ready_) {
    unsigned taken = 0;
    self->sink_->InJsScope([self, budget, &taken] {
      self->deferring_ = true;
      taken = self->ReapUntilSettled(budget);
    });
    // A reaction may have reaped the rest itself (a cancel reaps at once): nothing left to take.
    budget = taken == 0 ? 0 : budget - taken;
    self->deferring_ = false;
    if (self->SubmitNow()) self->SubmitDeferred();
  }
  self->SubmitDeferred();
  // What waited for the ring to drain (close()'s promise) settles in a scope too.
  if (self->DrainDue()) self->sink_->InJsScope([self] { self->MaybeDrained(); });
}

// Whether what a settled batch's reactions prepared goes to the kernel now rather than with the
// rest of the wake-up's: when the device holds fewer than twice as many ops as wait here, and those
// carry enough bytes for the device's time on them to outweigh one more io_uring_enter (and its
// doorbell). Small ops wait: for them the JS thread, not the device, is the bottleneck.
bool UringDirect::SubmitNow() const {
  const unsigned waiting = io_uring_sq_ready(&ring_);
  if (waiting == 0 || prepared_bytes_ < kEarlySubmitBytes) return false;
  const unsigned at_device = in_flight_ - io_uring_cq_ready(&ring_) - waiting;
  return at_device < 2 * waiting;
}

// Takes completions, at most `budget`, until one settles a batch; returns how many it took.
unsigned UringDirect::ReapUntilSettled(unsigned budget) {
  unsigned taken = 0;
  settled_ = false;
  io_uring_cqe* cqe;
  while (taken < budget && !settled_ && ring_ready_ && io_uring_peek_cqe(&ring_, &cqe) == 0) {
    const uint64_t tag = cqe->user_data;
    const int res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    taken++;
    if (tag != kCancelTag) Complete(reinterpret_cast<Op*>(tag), res);
  }
  return taken;
}

// One io_uring_enter for what the reactions prepared. What completed inside it (a page-cache
// read) is left in the CQ: the fd stays readable, and the next turn of the loop reaps it.
void UringDirect::SubmitDeferred() {
  if (!ring_ready_ || io_uring_sq_ready(&ring_) == 0) return;
  counters.submit_calls++;
  prepared_bytes_ = 0;
  io_uring_submit(&ring_);  // if it fails (EAGAIN, EBUSY), the next Reap tries again
}

}  // namespace tfs
