#include "util/checksum_pool.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "util/crc32c.h"
#include "util/crc32c_kernels.h"

namespace tfs {
namespace {

// A piece: big enough that taking one costs little next to checksumming it, small enough that a
// thread the scheduler stops mid-piece holds back little of the range.
constexpr size_t kPiece = 256 << 10;
constexpr unsigned kMaxThreads = 16;

// One spread checksum, on its caller's stack: whoever helps takes the next piece until none are
// left. `next` hands pieces out; `helping` is guarded by the pool's mutex.
struct Spread {
  const uint8_t* data;
  size_t n;
  size_t pieces;
  std::vector<uint32_t> crcs;
  std::atomic<size_t> next{0};
  unsigned helping = 0;  // threads inside Help(), the caller included
  std::condition_variable done;
};

unsigned DefaultThreads() {
  if (const char* env = std::getenv("TFS_CHECKSUM_THREADS")) {
    const long n = std::strtol(env, nullptr, 10);
    if (n >= 1) return static_cast<unsigned>(std::min<long>(n, kMaxThreads));
  }
  return std::clamp(std::thread::hardware_concurrency(), 1u, kMaxThreads);
}

// Checksums pieces of the spread until none are left to take.
void Help(Spread& s) {
  for (size_t i; (i = s.next.fetch_add(1, std::memory_order_relaxed)) < s.pieces;) {
    const size_t from = i * kPiece;
    s.crcs[i] = Crc32c(0, s.data + from, std::min(kPiece, s.n - from));
  }
}

// The pieces' CRCs joined: each whole piece moves the running CRC past the same kPiece bytes.
uint32_t Join(const Spread& s) {
  const uint32_t past_piece = crc32c::XPowBytes(kPiece);
  uint32_t crc = s.crcs[0];
  for (size_t i = 1; i + 1 < s.pieces; i++) crc = crc32c::MulModP(past_piece, crc) ^ s.crcs[i];
  return Crc32cCombine(crc, s.crcs[s.pieces - 1], s.n - (s.pieces - 1) * kPiece);
}

// Process-wide, never destroyed: its threads sleep on `work_` until the process ends, and no
// destructor runs at exit while one may be checksumming.
class Pool {
 public:
  static Pool& Get() {
    static Pool* pool = new Pool();
    return *pool;
  }

  std::atomic<unsigned> threads{DefaultThreads()};

  uint32_t Checksum(const uint8_t* data, size_t n) {
    const unsigned helpers = threads.load(std::memory_order_relaxed) - 1;
    if (helpers == 0 || n < 2 * kPiece) return Crc32c(0, data, n);
    Spread s;
    s.data = data, s.n = n, s.pieces = (n + kPiece - 1) / kPiece;
    s.crcs.resize(s.pieces);
    s.helping = 1;
    {
      std::lock_guard<std::mutex> lock(mu_);
      StartWorkers(helpers);
      for (unsigned i = 0; i < std::min<size_t>(helpers, s.pieces - 1); i++) queue_.push_back(&s);
    }
    work_.notify_all();
    Help(s);
    // Every piece is taken; wait for the helpers still on theirs, and stop the rest from starting.
    std::unique_lock<std::mutex> lock(mu_);
    queue_.erase(std::remove(queue_.begin(), queue_.end(), &s), queue_.end());
    s.helping--;
    s.done.wait(lock, [&] { return s.helping == 0; });
    lock.unlock();
    return Join(s);
  }

 private:
  void StartWorkers(unsigned wanted) {
    for (; workers_ < wanted; workers_++) std::thread([this] { Work(); }).detach();
  }

  void Work() {
    pthread_setname_np(pthread_self(), "tfs-checksum");
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      work_.wait(lock, [this] { return !queue_.empty(); });
      Spread* s = queue_.front();
      queue_.pop_front();
      s->helping++;
      lock.unlock();
      Help(*s);
      lock.lock();
      // Notified under the lock: the caller may return, and its Spread go, as soon as it sees 0.
      if (--s->helping == 0) s->done.notify_one();
    }
  }

  std::mutex mu_;
  std::condition_variable work_;
  std::deque<Spread*> queue_;  // one entry per helper a spread asked for
  unsigned workers_ = 0;
};

}  // namespace

uint32_t Crc32cSpread(const uint8_t* data, size_t n) { return Pool::Get().Checksum(data, n); }

void SetChecksumThreads(unsigned threads) {
  Pool::Get().threads.store(std::clamp(threads, 1u, kMaxThreads), std::memory_order_relaxed);
}

unsigned ChecksumThreads() { return Pool::Get().threads.load(std::memory_order_relaxed); }

}  // namespace tfs
