// The 3FS engine: USRBIO rings on a 3FS FUSE mount.
//
// USRBIO's rules shape it:
// - a ring carries reads or writes, never both: each engine has one of each;
// - one thread prepares and submits on a ring and one thread waits on it: here one preparing
//   thread serves both rings of the engine, and each ring has its own waiting thread;
// - io_depth = 0 (anything else can hang a ring that never fills);
// - a full ring (-EAGAIN from prep_io) is back-pressure: the op waits until a completion frees a slot;
// - completions come back in any order: each carries its Op as userdata;
// - USRBIO cannot cancel an I/O in flight: its memory belongs to 3FS until the CQE, so a cancel
//   settles only ops not yet handed to the ring.
// Memory that is not an iov of this mount is bounced through the engine's own iov, and counted.
#include "hf3fs/hf3fs.h"
#include "hf3fs/ring_key.h"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace tfs {
namespace {

constexpr uint64_t kMaxBouncePiece = 4ull << 20;  // a bounced op moves in pieces of at most this
constexpr long kWaitSliceNs = 50 * 1000 * 1000;   // the waiter rechecks for shutdown this often
constexpr std::chrono::milliseconds kLinger{200};  // a waiter stays in USRBIO this long after its ring empties
constexpr uint64_t kSealedPerSubmit = 256 << 10;  // sealed writes are submitted every this many checksummed bytes

// An iov, destroyed (symlink removed, memory unmapped) when its region dies.
class IovBacking final : public RegionBacking {
 public:
  explicit IovBacking(std::shared_ptr<UsrbioLib> lib) : lib_(std::move(lib)) {}
  ~IovBacking() override {
    if (created_) lib_->iovdestroy(&iov_);
  }
  // 0 or -errno, as hf3fs_iovcreate.
  int Create(const std::string& mount, size_t size, size_t block_size, int numa) {
    int r = lib_->iovcreate(&iov_, mount.c_str(), size, block_size, numa);
    created_ = r == 0;
    if (created_) lib_->iovunlink(&iov_);  // 3FS has mapped it: without the /dev/shm name a crash leaks nothing
    return r;
  }
  const hf3fs_iov* iov() const { return &iov_; }

 private:
  std::shared_ptr<UsrbioLib> lib_;
  hf3fs_iov iov_{};
  bool created_ = false;
};

// First-fit allocator over the bounce iov. Guarded by the engine's mutex.
class BouncePool {
 public:
  explicit BouncePool(size_t size) { free_[0] = size; }
  int64_t Take(uint64_t len) {
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < len) continue;
      const uint64_t at = it->first, left = it->second - len;
      free_.erase(it);
      if (left > 0) free_[at + len] = left;
      return static_cast<int64_t>(at);
    }
    return -1;
  }
  void Give(uint64_t at, uint64_t len) {
    auto next = free_.lower_bound(at);
    if (next != free_.end() && next->first == at + len) {  // merge with the block after
      len += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {  // and with the block before
      auto prev = std::prev(next);
      if (prev->first + prev->second == at) {
        prev->second += len;
        return;
      }
    }
    free_[at] = len;
  }

 private:
  std::map<uint64_t, uint64_t> free_;  // offset -> length
};

// A USRBIO ring (hf3fs_ior), destroyed with the engine.
struct Ring {
  hf3fs_ior ior{};
  bool created = false;
  bool read = false;
  int entries = 0;
  int in_ring = 0;        // prepared and not yet reaped
  bool stalled = false;   // the ring or the bounce pool was full: wait for a completion
  bool unsubmitted = false;
  bool waiter_asleep = false;  // its waiter sleeps on has_work, not in USRBIO
  std::deque<Op*> pending;
  std::condition_variable has_work;  // its waiter sleeps here while nothing is in the ring
  std::thread waiter;
};

class Hf3fsEngine final : public Engine {
 public:
  Hf3fsEngine(const EngineOptions& options, std::shared_ptr<const Hf3fsContext> context, CompletionSink* sink)
      : options_(options), context_(std::move(context)), lib_(*context_->lib), sink_(sink) {}
  ~Hf3fsEngine() override { Close(); }

  // Runs on the JS thread, like every iov and ring creation of the process: 3FS cleans up after a
  // crash by the id of the thread that opened 3fs-virt/iovs: those made on other threads may leak.
  int Start() {
    const int entries = static_cast<int>(std::max(1u, options_.queue_depth));
    for (int d = 0; d < 2; d++) {
      Ring& ring = rings_[d];
      ring.read = d == 0;
      ring.entries = entries;
      int r = lib_.iorcreate4(&ring.ior, context_->mount.c_str(), entries, ring.read, 0, 0, context_->numa,
                              ring.read ? context_->read_flags : 0);
      if (r < 0) return -r;
      ring.created = true;
    }
    if (context_->bounce_bytes > 0) {
      int err = 0;
      bounce_region_ = CreateIovRegion(*context_, context_->bounce_bytes, 0, &err);
      if (!bounce_region_) return err;
      bounce_ = std::make_unique<BouncePool>(context_->bounce_bytes);
    }
    preparer_ = std::thread([this] { Prepare(); });
    pthread_setname_np(preparer_.native_handle(), "3fs-usrbio-prep");  // named here, so at once
    for (Ring& ring : rings_) {
      ring.waiter = std::thread([this, &ring] { Wait(ring); });
      pthread_setname_np(ring.waiter.native_handle(), "3fs-usrbio-wait");
    }
    return 0;
  }

  const char* name() const override { return "usrbio"; }
  unsigned queue_depth() const override { return options_.queue_depth; }
  unsigned registered_slots() const override { return 0; }
  int Register(Region&) override { return kNoTable; }  // iovs are registered with 3FS when created

  // JS thread: prep_io and submit_ios never block, so the batch goes straight into the rings, under
  // the lock that keeps one preparer per ring. The preparing thread takes the rest: ops behind a
  // full ring, and bounced writes, whose copy must not run on the JS thread.
  void Submit(Batch* batch) override {
    bool backlog;
    {
      std::lock_guard<std::mutex> lock(mu_);
      Accept(batch);
      for (Ring& ring : rings_) Fill(ring, /*preparer_lock=*/nullptr);
      SubmitPrepared();
      backlog = CanFill(rings_[0]) || CanFill(rings_[1]);
    }
    if (backlog) wake_.notify_one();
  }

  void Cancel(Batch* batch, int err) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(batch->id);
    if (it != live_.end()) CancelBatch(it->second, err);
  }

  void Close() override {
    std::lock_guard<std::mutex> close_lock(close_mu_);
    if (preparer_.joinable()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        stop_asked_ = true;
      }
      wake_.notify_one();
      preparer_.join();  // returns once every op has settled
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      exiting_ = true;
    }
    for (Ring& ring : rings_) {
      ring.has_work.notify_all();
      if (ring.waiter.joinable()) ring.waiter.join();
      if (ring.created) {
        const hf3fs_ior created = ring.ior;  // what iordestroy may clear, for the workaround
        lib_.iordestroy(&ring.ior);
        UnlinkLeftoverRingKey(created);
      }
      ring.created = false;
    }
    bounce_region_.reset();
  }

 private:
  // The preparing thread: hands the backlog to the rings as they free slots, and stops the engine.
  void Prepare() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (stop_asked_ && !stopping_) Stop();
      if (stopping_ && live_.empty()) break;
      for (Ring& ring : rings_) Fill(ring, &lock);
      SubmitPrepared();
      wake_.wait(lock, [this] {
        return (stop_asked_ && !stopping_) || CanFill(rings_[0]) || CanFill(rings_[1]) || (stopping_ && live_.empty());
      });
    }
  }

  void SubmitPrepared() {
    for (Ring& ring : rings_) {
      if (!ring.unsubmitted) continue;
      ring.unsubmitted = false;
      counters.submit_calls++;
      lib_.submit_ios(&ring.ior);  // only a wake-up for 3FS: it may have started already
    }
  }

  bool CanFill(const Ring& ring) const {
    return !ring.pending.empty() && !ring.stalled && ring.in_ring < ring.entries;
  }

  // Unfinished work is canceled; ops in a ring still finish there before the engine stops.
  void Stop() {
    stopping_ = true;
    std::vector<Batch*> live;
    for (auto& entry : live_) live.push_back(entry.second);
    for (Batch* b : live) CancelBatch(b, ECANCELED);
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
        rings_[op.write ? 1 : 0].pending.push_back(&op);
    }
    if (stopping_) CancelBatch(batch, ECANCELED);
    for (Op* op : empty) Settle(op, 0);
  }

  // Hands the ring's pending ops to USRBIO while it has room. On the JS thread (`preparer_lock`
  // null) it stops at the first op whose copy or checksum must not run there; the preparing thread
  // passes its lock, which is let go while it checksums, so completions and submissions go on.
  void Fill(Ring& ring, std::unique_lock<std::mutex>* preparer_lock) {
    while (CanFill(ring)) {
      Op* op = ring.pending.front();
      const hf3fs_iov* iov = ZeroCopyIov(*op);
      if ((iov == nullptr && op->write) || NeedsSeal(*op)) {
        if (preparer_lock == nullptr) return;  // the preparing thread's job
        if (NeedsSeal(*op) && !Seal(ring, op, *preparer_lock)) continue;
      }
      uint8_t* ptr = op->ptr;
      uint64_t len = op->remaining;
      if (iov == nullptr) {  // bounce: a piece of the op through the engine's own iov
        len = std::min<uint64_t>({len, kMaxBouncePiece, context_->bounce_bytes});
        const int64_t at = bounce_ ? bounce_->Take(len) : -1;
        if (at < 0) {
          if (!bounce_) {
            ring.pending.pop_front();
            Settle(op, EFAULT);  // no bounce memory configured and the memory is not an iov
            continue;
          }
          ring.stalled = true;  // wait for a completion to give memory back
          return;
        }
        op->bounce = at;
        iov = bounce_region_->iov();
        ptr = bounce_region_->data() + at;
        if (op->write) std::memcpy(ptr, op->ptr, len);
      }
      // Before prep_io: 3FS may run the IO at once, and the waiter reads the op without our lock.
      op->piece = len;
      const int slot = lib_.prep_io(&ring.ior, iov, ring.read, ptr, op->file->fd, op->offset, len, op);
      // The ring is full after all: back-pressure, not an error, while ops in the ring will free
      // a slot. With none in it no completion would ever wake us: EAGAIN is then the op's error.
      if (slot == -EAGAIN && ring.in_ring > 0) {
        ReleaseBounce(op, len);
        ring.stalled = true;
        return;
      }
      ring.pending.pop_front();
      if (slot < 0) {
        ReleaseBounce(op, len);
        Settle(op, -slot);
        continue;
      }
      op->state = Op::State::kInFlight;
      ring.in_ring++;
      ring.unsubmitted = true;
      if (ring.waiter_asleep) ring.has_work.notify_one();
      if (sealed_ >= kSealedPerSubmit) {  // let 3FS start on these while the next ones are checksummed
        SubmitPrepared();
        sealed_ = 0;
      }
    }
  }

  // Checksums a write that asked for it, without the engine's lock. The op leaves the queue
  // meanwhile, so a cancel cannot reach it: it settles here instead if its batch was canceled.
  // True if it is back at the front of the queue, sealed.
  bool Seal(Ring& ring, Op* op, std::unique_lock<std::mutex>& lock) {
    ring.pending.pop_front();
    lock.unlock();
    SealChecksum(*op);
    lock.lock();
    sealed_ += op->checksum.length;
    if (op->batch->cancel_errno != 0) {
      Settle(op, op->batch->cancel_errno);
      return false;
    }
    ring.pending.push_front(op);
    return true;
  }

  // The op's memory, if 3FS can move data into it directly: an iov of this mount.
  const hf3fs_iov* ZeroCopyIov(const Op& op) const {
    if (!op.region || op.region->iov() == nullptr) return nullptr;
    const hf3fs_iov* iov = op.region->iov();
    if (context_->mount != iov->mount_point) return nullptr;
    return iov;
  }

  void ReleaseBounce(Op* op, uint64_t len) {
    if (op->bounce < 0) return;
    bounce_->Give(static_cast<uint64_t>(op->bounce), len);
    op->bounce = -1;
  }

  // A ring's waiting thread: the only caller of hf3fs_wait_for_ios on this ring. After its ring
  // empties it keeps waiting in USRBIO for a while, so the next batch's completions find it there
  // without a wake-up of ours first; an idle ring's waiter then sleeps until work arrives.
  void Wait(Ring& ring) {
    std::vector<hf3fs_cqe> cqes(static_cast<size_t>(ring.entries));
    auto busy_at = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (ring.in_ring > 0) {
        busy_at = std::chrono::steady_clock::now();
      } else {
        if (exiting_) return;
        if (std::chrono::steady_clock::now() - busy_at > kLinger) {
          ring.waiter_asleep = true;
          ring.has_work.wait(lock, [&] { return ring.in_ring > 0 || exiting_; });
          ring.waiter_asleep = false;
          continue;
        }
      }
      lock.unlock();
      timespec deadline{};
      clock_gettime(CLOCK_REALTIME, &deadline);  // USRBIO takes an absolute CLOCK_REALTIME time
      deadline.tv_nsec += kWaitSliceNs;
      if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
      }
      const int n = lib_.wait_for_ios(&ring.ior, cqes.data(), ring.entries, 1, &deadline);
      // Reads that these CQEs complete are checksummed before the lock is taken again: a batch's
      // checksums then hold up neither its other completions nor the next submission. (Bounced
      // reads are checksummed in Complete, once their bytes are copied out.)
      SizeCache sizes;
      for (int i = 0; i < n; i++) {
        Op* op = static_cast<Op*>(const_cast<void*>(cqes[i].userdata));
        cqes[i].result = FillTrailingHole(*op, cqes[i].result, &sizes);
        if (!op->write && op->bounce < 0 && Completes(*op, cqes[i].result)) TakeChecksum(*op);
      }
      lock.lock();
      if (n < 0) {
        FailRing(ring, -n);
        lock.unlock();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // then wait again: its ops are still 3FS's
        lock.lock();
        continue;
      }
      for (int i = 0; i < n; i++) Complete(ring, static_cast<Op*>(const_cast<void*>(cqes[i].userdata)), cqes[i].result);
      if (n > 0) {
        // Slots and bounce memory came back: the preparing thread has work if anything waits.
        rings_[0].stalled = rings_[1].stalled = false;
        if (CanFill(rings_[0]) || CanFill(rings_[1])) wake_.notify_one();
      }
    }
  }

  // 3FS's reads stop after the last chunk that holds data (its daemon does not look at the file's
  // length), so a read that ends in a hole comes back short. Below the file's length the missing
  // bytes are that hole: zeros, as node:fs reads them, or ENODATA with forbidHoles, as a hole
  // anywhere else in a read is. Waiting thread, on the op's memory, before the lock is taken.
  // The lengths of the files one wait's CQEs read, each looked up once (a stat is a round trip).
  struct SizeCache {
    std::vector<std::pair<int, int64_t>> sizes;  // fd, st_size (-1: unknown)
    int64_t Of(int fd) {
      for (const auto& [f, size] : sizes)
        if (f == fd) return size;
      struct stat st;
      sizes.emplace_back(fd, fstat(fd, &st) == 0 ? static_cast<int64_t>(st.st_size) : -1);
      return sizes.back().second;
    }
  };

  int64_t FillTrailingHole(const Op& op, int64_t result, SizeCache* sizes) const {
    if (op.write || result < 0 || static_cast<uint64_t>(result) >= op.piece) return result;
    const int64_t length = sizes->Of(op.file->fd);
    if (length < 0) return result;
    const uint64_t data_end = op.offset + static_cast<uint64_t>(result), size = static_cast<uint64_t>(length);
    if (size <= data_end) return result;  // the end of the file
    if (context_->read_flags & HF3FS_IOR_FORBID_READ_HOLES) return -ENODATA;
    const uint64_t fill = std::min<uint64_t>(size - data_end, op.piece - static_cast<uint64_t>(result));
    uint8_t* at = (op.bounce >= 0 ? bounce_region_->data() + op.bounce : op.ptr) + result;
    std::memset(at, 0, fill);
    return result + static_cast<int64_t>(fill);
  }

  // True if a CQE with this result finishes the op: all of it moved, or a read that ended short.
  static bool Completes(const Op& op, int64_t result) {
    return result >= 0 && (static_cast<uint64_t>(result) == op.remaining || (!op.write && static_cast<uint64_t>(result) < op.piece));
  }

  void Complete(Ring& ring, Op* op, int64_t result) {
    ring.in_ring--;
    const uint64_t piece = op->piece;
    const bool bounced = op->bounce >= 0;
    if (bounced && !op->write && result > 0) {
      std::memcpy(op->ptr, bounce_region_->data() + op->bounce, static_cast<size_t>(result));
    }
    ReleaseBounce(op, piece);
    if (result < 0) {
      Settle(op, static_cast<int>(-result));
      return;
    }
    const uint64_t n = static_cast<uint64_t>(result);
    (op->write ? counters.write_bytes : counters.read_bytes) += n;
    counters.direct_bytes += n;  // never through a page cache: RDMA into or out of the iov
    (bounced ? counters.unregistered_bytes : counters.registered_bytes) += n;
    if (bounced) counters.bounced_bytes += n;
    if (Completes(*op, result)) TakeChecksum(*op);
    op->done += n;
    op->ptr += n;
    op->offset += n;
    op->remaining -= n;
    if (op->remaining == 0) {
      Settle(op, 0);
    } else if (!op->write && n < piece) {
      Settle(op, 0);  // end of file (or a hole at its end): USRBIO reads do not look at the length
    } else if (n == 0) {
      Settle(op, EIO);  // a write that moves nothing would loop forever
    } else {
      if (n < piece) counters.short_transfers++;
      if (op->batch->cancel_errno != 0) {
        Settle(op, op->batch->cancel_errno);
        return;
      }
      op->state = Op::State::kPending;  // the next piece, ahead of newer work
      ring.pending.push_front(op);
    }
  }

  void CancelBatch(Batch* b, int err) {
    if (b->cancel_errno != 0) return;
    b->cancel_errno = err;
    // Ops in a ring finish there (USRBIO has no cancel); the rest settle now.
    std::vector<Op*> settle_now;
    for (Ring& ring : rings_) TakeOpsOf(b, ring.pending, &settle_now);
    for (Op* op : settle_now) Settle(op, err);
  }

  // The ring refused to wait: ops not yet handed to it fail rather than queue behind it.
  void FailRing(Ring& ring, int err) {
    std::vector<Op*> pending(ring.pending.begin(), ring.pending.end());
    ring.pending.clear();
    for (Op* op : pending) Settle(op, err);
  }

  // With mu_ held. Ops waiting on this one go to the front of their ring's queue; whoever settled
  // it (the JS thread's Submit, a waiting thread) hands them to the ring or wakes the preparer.
  void Settle(Op* op, int err) {
    const bool handed_on = SettleWithWaiters(
        op, err, counters, live_, sink_, [this](Batch* b) { CancelBatch(b, ECANCELED); },
        [this](Op* w) { rings_[w->write ? 1 : 0].pending.push_front(w); }, [this](Op* w, int e) { Settle(w, e); });
    if (handed_on && stopping_ && live_.empty()) wake_.notify_one();
  }

  EngineOptions options_;
  std::shared_ptr<const Hf3fsContext> context_;
  const UsrbioLib& lib_;
  CompletionSink* sink_;
  std::shared_ptr<Region> bounce_region_;
  std::unique_ptr<BouncePool> bounce_;
  std::thread preparer_;
  std::mutex close_mu_;

  std::mutex mu_;  // everything below
  std::condition_variable wake_;  // the preparing thread sleeps here
  bool stop_asked_ = false;
  Ring rings_[2];  // [0] reads, [1] writes
  LiveBatches live_;
  bool stopping_ = false;
  bool exiting_ = false;
  uint64_t sealed_ = 0;  // checksummed bytes prepared since the last submit
};

}  // namespace

std::shared_ptr<Region> CreateIovRegion(const Hf3fsContext& context, size_t size, size_t block_size, int* err) {
  auto backing = std::make_unique<IovBacking>(context.lib);
  int r = backing->Create(context.mount, size, block_size, context.numa);
  if (r < 0) {
    *err = -r;
    return nullptr;
  }
  const hf3fs_iov* iov = backing->iov();
  return Region::Adopt(iov->base, size, block_size, iov, std::move(backing));
}

std::unique_ptr<Engine> MakeHf3fsEngine(const EngineOptions& options, std::shared_ptr<const Hf3fsContext> context,
                                        CompletionSink* sink, int* err) {
  return Engine::Started<Hf3fsEngine>(err, options, std::move(context), sink);
}

}  // namespace tfs
