// A test-only stand-in for 3FS's USRBIO library (libhf3fs_api_shared.so), built by
// test/hf3fs/standin/build.ts and never shipped. It implements the C ABI declared in native/hf3fs/usrbio.h in
// one of two modes, chosen by the mount point each iov or ring is made on:
//
// Protocol mode (usrbio_protocol.cc), on a fuse.hf3fs mount with 3fs-virt in /proc/self/mountinfo:
//   what 3FS's own library does, and nothing in-process. The hf3fs test project runs this way, on
//   the mount of the test daemon (test/hf3fs/daemon), so every test exercises the protocol.
//
// In-process mode (this file), on a directory listed in HF3FS_STANDIN_MOUNTS (colon-separated
//   absolute paths) that contains 3fs-virt/iovs: the library plays the daemon too. Kept only where
//   a FUSE mount cannot give what a test needs: machines without root or /dev/fuse (the hf3fs
//   project falls back to it), standin.test.ts (drives this mode through harness.c, with fault
//   knobs inside the library), doctor.test.ts (fake mounts of no particular file system). In this
//   mode each ring has two worker threads; a worker wakes on hf3fs_submit_ios or every 10 ms, takes
//   every prepared IO as one batch (io_depth > 0: exactly io_depth once that many are queued; < 0:
//   at most -io_depth), runs them with pread/pwrite on the registered dup'd fd, and posts the CQEs
//   in REVERSE order of preparation, so callers cannot rely on submission order.
//
// Environment, read at each call (fault injection for reliability tests):
//   HF3FS_STANDIN_MOUNTS=<dir>[:<dir>...]  the in-process mounts (see above)
//   HF3FS_STANDIN_FAIL_PREP=<errno>        every hf3fs_prep_io returns -errno (both modes)
//   HF3FS_STANDIN_FAIL_IO=<errno>          in-process: every IO completes with -errno, moving nothing
//   HF3FS_STANDIN_DELAY_US=<n>             in-process: each IO sleeps n microseconds before it runs
//   HF3FS_STANDIN_PREP_DELAY_US=<n>        a successful hf3fs_prep_io sleeps n microseconds after the IO
//                                          is handed over (both modes): the caller's thread losing the
//                                          CPU there, while the daemon may run the IO and post its CQE
// (On the test daemon's mount, the daemon injects IO faults: test/hf3fs/daemon/faults.cc.)
//
// Misuse that real 3FS turns into memory corruption or a hang is made loud instead, in both modes:
// the stand-in prints "[hf3fs-standin] ..." on stderr and calls abort() when
//   - two threads run hf3fs_prep_io on one ring at once, or two threads hf3fs_wait_for_ios;
//   - an iov or ring is used or destroyed after it was destroyed (handles are kept as tombstones,
//     never freed, so this is detected instead of being a use-after-free);
//   - an iov is destroyed while IOs prepared on it have not completed;
//   - a ring is destroyed while a thread is inside prep_io or wait_for_ios on it.
//
// Extra export for tests: int hf3fs_standin_stats(char* buf, int size) writes
//   {"prepped":N,"submitted":N,"completed":N,"started":N,"reaped":N,"regFds":N,"iovs":N,"rings":N}
// (prepped = successful prep_io, submitted = successful submit_ios calls, started = IOs taken by a
// worker, completed = CQEs posted, reaped = CQEs returned by wait_for_ios; in protocol mode the
// daemon's share is counted when the CQEs are reaped; regFds/iovs/rings are live counts) and
// returns strlen+1, writing only if that fits, like hf3fs_extract_mount_point.

#include "usrbio_standin.h"

#include <pthread.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace standin {

// ---------------------------------------------------------------------------------------------
// Small utilities

[[noreturn]] __attribute__((format(printf, 1, 2))) void Die(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fputs("[hf3fs-standin] FATAL: ", stderr);
  std::vfprintf(stderr, fmt, ap);
  std::fputc('\n', stderr);
  va_end(ap);
  std::fflush(stderr);
  std::abort();
}


// A positive integer from the environment, 0 when unset or not a positive number.
long EnvPositive(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return 0;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  return (end != v && n > 0) ? n : 0;
}


std::string RealPath(const std::string& p) {
  std::unique_ptr<char, decltype(&std::free)> r(::realpath(p.c_str(), nullptr), &std::free);
  return r ? std::string(r.get()) : std::string();
}

bool IsDir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Canonical form of a path that may not exist yet: realpath of its longest existing prefix, with
// the missing tail appended as written (3FS uses std::filesystem::canonical on what exists).
std::string CanonicalPrefix(const char* path) {
  std::string p(path);
  if (p.empty()) return {};
  if (p[0] != '/') {
    std::string cwd = RealPath(".");
    if (cwd.empty()) return {};
    p = cwd + "/" + p;
  }
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  std::string tail;
  for (;;) {
    std::string r = RealPath(p);
    if (!r.empty()) return (r == "/" && !tail.empty()) ? tail : r + tail;
    size_t slash = p.rfind('/');
    if (slash == std::string::npos || p == "/") return {};
    tail = p.substr(slash) + tail;
    p = slash == 0 ? std::string("/") : p.substr(0, slash);
  }
}

bool IsUnder(const std::string& path, const std::string& mp) {
  if (mp == "/") return !path.empty() && path[0] == '/';
  return path.size() >= mp.size() && path.compare(0, mp.size(), mp) == 0 &&
         (path.size() == mp.size() || path[mp.size()] == '/');
}

// The mounts: canonical listed directories that contain 3fs-virt/iovs. Re-read at every call so a
// test can change HF3FS_STANDIN_MOUNTS between cases.
std::vector<std::string> Mounts() {
  std::vector<std::string> out;
  const char* env = std::getenv("HF3FS_STANDIN_MOUNTS");
  if (env == nullptr) return out;
  std::string all(env);
  size_t pos = 0;
  while (pos <= all.size()) {
    size_t colon = all.find(':', pos);
    if (colon == std::string::npos) colon = all.size();
    std::string item = all.substr(pos, colon - pos);
    pos = colon + 1;
    if (item.empty() || item[0] != '/') continue;
    std::string canon = RealPath(item);
    if (!canon.empty() && IsDir(canon + "/3fs-virt/iovs")) out.push_back(canon);
  }
  return out;
}

// The longest mount containing a canonical path, or "" if none.
std::string MountOf(const std::string& canon) {
  std::string best;
  if (canon.empty()) return best;
  for (const std::string& mp : Mounts())
    if (IsUnder(canon, mp) && mp.size() > best.size()) best = mp;
  return best;
}

// True if `mp` names a mount itself (iovcreate/iorcreate must be given the mount point).
bool IsMountPoint(const char* mp) {
  std::string canon = RealPath(mp);
  if (canon.empty()) return false;
  for (const std::string& m : Mounts())
    if (m == canon) return true;
  return false;
}


// ---------------------------------------------------------------------------------------------
// Statistics (for tests to prove cleanup)

std::atomic<long long> g_prepped{0}, g_submitted{0}, g_started{0}, g_completed{0}, g_reaped{0};
std::atomic<long long> g_live_iovs{0}, g_live_rings{0};

// ---------------------------------------------------------------------------------------------
// Registered file descriptors



// Never destroyed: worker threads may still drop FdEntry references during process exit.
FdTable& Fds() {
  static FdTable* t = new FdTable;
  return *t;
}

// The real library sizes its fd table to the RLIMIT_NOFILE hard max when it loads.
int MaxFds() {
  static const int max = [] {
    struct rlimit rl;
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_max == RLIM_INFINITY || rl.rlim_max > INT_MAX)
      return INT_MAX;
    return static_cast<int>(rl.rlim_max);
  }();
  return max;
}

// prep_io and punchhole use abs(fd), so both the original fd and reg_fd's -dupfd are accepted.
std::shared_ptr<FdEntry> LookupFd(int fd) {
  if (fd == INT_MIN) return nullptr;
  int a = fd < 0 ? -fd : fd;
  FdTable& t = Fds();
  std::lock_guard<std::mutex> lk(t.mu);
  auto it = t.by_orig.find(a);
  if (it != t.by_orig.end()) return it->second;
  auto d = t.dup_to_orig.find(a);
  if (d != t.dup_to_orig.end()) return t.by_orig.at(d->second);
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Iovs


// Owns what hf3fs_iovcreate made. Never freed after destroy (a tombstone with magic == kDead) so a
// second destroy or a later prep_io is caught instead of reading freed memory.
struct IovHandle {
  uint32_t magic = kLive;
  std::mutex mu;
  uint8_t* base = nullptr;
  size_t size = 0;
  std::string shm_name;   // "/hf3fs-iov-<uuidA>"
  std::string link_path;  // "<mp>/3fs-virt/iovs/<uuidB>[.b<bs>]"
  bool shm_exists = false;
  bool symlinked = false;
  std::atomic<int> pending{0};  // IOs prepared on this iov whose CQE is not posted yet

  // Releases everything; used by iovdestroy and by failed creates.
  void Release() {
    if (symlinked) ::unlink(link_path.c_str());
    if (shm_exists) ::shm_unlink(shm_name.c_str());
    if (base != nullptr) ::munmap(base, size);
    symlinked = shm_exists = false;
    base = nullptr;
  }
  ~IovHandle() { Release(); }
};

// iovwrap'd iovs all point at this: nothing to free, nothing to destroy.
struct WrappedTag {
  uint32_t magic = 0x3a3a3a3a;
} g_wrapped_tag;

bool IsWrapped(const hf3fs_iov* iov) { return iov->iovh == static_cast<void*>(&g_wrapped_tag); }

IovHandle* LiveIov(const hf3fs_iov* iov, const char* who) {
  auto* h = static_cast<IovHandle*>(iov->iovh);
  if (h->magic == kDead) Die("%s: iov %p was already destroyed", who, static_cast<const void*>(iov));
  if (h->magic != kLive) Die("%s: iov %p has a foreign or corrupt handle", who, static_cast<const void*>(iov));
  return h;
}

// ---------------------------------------------------------------------------------------------
// Rings

struct Slot {
  IovHandle* iov = nullptr;  // nullptr for a wrapped iov
  uint8_t* ptr = nullptr;
  std::shared_ptr<FdEntry> fd;
  uint64_t off = 0;
  uint64_t len = 0;
  const void* userdata = nullptr;
};

struct Completion {
  int32_t index;
  int64_t result;
  const void* userdata;
};


struct Ring {
  uint32_t magic = kLive;
  int entries = 0;
  bool for_read = false;
  int io_depth = 0;
  int timeout_ms = 0;
  uint64_t flags = 0;

  std::mutex mu;
  std::condition_variable work_cv;  // workers: submit or stop
  std::condition_variable done_cv;  // waiter: CQEs posted
  std::vector<Slot> slots;
  std::deque<int> free_slots;   // not prepared, or reaped
  std::deque<int> prepared;     // prepared, not yet taken by a worker (preparation order)
  std::deque<Completion> cq;    // posted, not yet reaped
  bool kicked = false;
  bool stopping = false;
  std::vector<std::thread> workers;

  std::atomic<bool> preparing{false};
  std::atomic<bool> waiting{false};

  // Stops and joins the workers; they first run everything already prepared.
  void Shutdown() {
    {
      std::lock_guard<std::mutex> lk(mu);
      stopping = true;
    }
    work_cv.notify_all();
    for (std::thread& t : workers)
      if (t.joinable()) t.join();
    workers.clear();
  }
  ~Ring() { Shutdown(); }

  // Takes the next batch under `mu` according to io_depth; when stopping, flushes everything.
  std::vector<int> TakeBatch() {
    size_t n = prepared.size();
    if (n == 0) return {};
    size_t take = n;
    if (!stopping && io_depth > 0) {
      if (n < static_cast<size_t>(io_depth)) return {};  // 3FS waits for io_depth IOs (and can hang)
      take = static_cast<size_t>(io_depth);
    } else if (!stopping && io_depth < 0) {
      take = std::min(n, static_cast<size_t>(-static_cast<long long>(io_depth)));
    }
    std::vector<int> batch(prepared.begin(), prepared.begin() + static_cast<std::ptrdiff_t>(take));
    prepared.erase(prepared.begin(), prepared.begin() + static_cast<std::ptrdiff_t>(take));
    return batch;
  }

  void WorkerLoop();
};

Ring* LiveRing(const hf3fs_ior* ior, const char* who) {
  auto* r = static_cast<Ring*>(ior->iorh);
  if (r->magic == kDead) Die("%s: ring %p was already destroyed", who, static_cast<const void*>(ior));
  if (r->magic != kLive) Die("%s: ring %p has a foreign or corrupt handle", who, static_cast<const void*>(ior));
  return r;
}

// True if any two buffer ranges of the batch overlap (3FS's check_overlapping_read_buffers).
bool BuffersOverlap(std::vector<const Slot*> ios) {
  std::sort(ios.begin(), ios.end(), [](const Slot* a, const Slot* b) { return a->ptr < b->ptr; });
  for (size_t i = 1; i < ios.size(); i++)
    if (ios[i - 1]->ptr + ios[i - 1]->len > ios[i]->ptr) return true;
  return false;
}

// -ENODATA if [off, min(off+len, size)) contains a hole. Probes through a private open file
// description so the caller's file offset (shared with the dup) is not moved by lseek.
int64_t CheckHoles(const FdEntry& fd, uint64_t off, uint64_t len) {
  struct stat st;
  if (::fstat(fd.dup, &st) != 0) return -errno;
  uint64_t end = std::min<uint64_t>(off + len, static_cast<uint64_t>(st.st_size));
  if (off >= end) return 0;
  std::string proc = "/proc/self/fd/" + std::to_string(fd.dup);
  UniqueFd probe(::open(proc.c_str(), O_RDONLY | O_CLOEXEC));
  if (probe.fd < 0) return -errno;
  off_t hole = ::lseek(probe.fd, static_cast<off_t>(off), SEEK_HOLE);
  if (hole < 0) return errno == ENXIO ? 0 : -errno;
  return static_cast<uint64_t>(hole) < end ? -ENODATA : 0;
}

// Runs one IO to completion (looping on short transfers); bytes moved or -errno.
int64_t RunIo(const Slot& s, bool read, uint64_t flags) {
  if (long us = EnvPositive("HF3FS_STANDIN_DELAY_US")) std::this_thread::sleep_for(std::chrono::microseconds(us));
  if (long e = EnvPositive("HF3FS_STANDIN_FAIL_IO")) return -e;
  if (read && (flags & HF3FS_IOR_FORBID_READ_HOLES)) {
    if (int64_t r = CheckHoles(*s.fd, s.off, s.len)) return r;
  }
  uint64_t done = 0;
  while (done < s.len) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(s.len - done, 1u << 30));
    off_t at = static_cast<off_t>(s.off + done);
    ssize_t n = read ? ::pread(s.fd->dup, s.ptr + done, chunk, at) : ::pwrite(s.fd->dup, s.ptr + done, chunk, at);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) {
      if (read) break;  // EOF: a short result, as on 3FS
      return -EIO;
    }
    done += static_cast<uint64_t>(n);
  }
  return static_cast<int64_t>(done);
}

void Ring::WorkerLoop() {
  // The name lets a bench tell the daemon's share of the CPU (on 3FS: another process) from the client's.
  pthread_setname_np(pthread_self(), "hf3fs-daemon");
  std::unique_lock<std::mutex> lk(mu);
  for (;;) {
    std::vector<int> batch = TakeBatch();
    if (batch.empty()) {
      if (stopping) return;
      // Woken by submit, or by a periodic scan like the FUSE daemon's. The daemon scans every 1 ms
      // from its own process and cores; here the scan would run on the client's cores (8 idle
      // workers x 1000 wake-ups a second on a 2-core machine), so it runs every 10 ms.
      work_cv.wait_for(lk, std::chrono::milliseconds(10), [this] { return kicked || stopping; });
      kicked = false;
      continue;
    }
    std::vector<Slot> ios;
    ios.reserve(batch.size());
    for (int i : batch) ios.push_back(slots[static_cast<size_t>(i)]);
    lk.unlock();
    g_started += static_cast<long long>(ios.size());

    bool overlap = false;
    if (for_read) {
      std::vector<const Slot*> ptrs;
      for (const Slot& s : ios) ptrs.push_back(&s);
      overlap = BuffersOverlap(std::move(ptrs));
    }
    // Reverse order: completions must not come back in submission order. Like the FUSE daemon,
    // which writes a job's CQEs and then posts the ring's semaphore once, the batch completes as one.
    std::vector<int64_t> results(ios.size());
    for (size_t k = ios.size(); k-- > 0;) results[k] = overlap ? -EIO : RunIo(ios[k], for_read, flags);
    lk.lock();
    for (size_t k = ios.size(); k-- > 0;) {
      if (ios[k].iov != nullptr) ios[k].iov->pending.fetch_sub(1);
      cq.push_back(Completion{batch[k], results[k], ios[k].userdata});
      slots[static_cast<size_t>(batch[k])].fd.reset();
      g_completed++;
    }
    done_cv.notify_all();
  }
}

int IorCreate(hf3fs_ior* ior, const char* mp, int entries, bool for_read, int io_depth, int priority, int timeout,
              int numa, uint64_t flags) {
  (void)numa;
  if (ior == nullptr || mp == nullptr) return -EINVAL;
  if (std::strlen(mp) >= sizeof(ior->mount_point)) return -EINVAL;
  if (proto::IsMountPoint(mp)) return proto::IorCreate(ior, mp, entries, for_read, io_depth, priority, timeout, numa, flags);
  if (!IsMountPoint(mp)) return -ENOENT;
  if (entries <= 0 || io_depth > entries || timeout < 0) return -EINVAL;

  auto ring = std::make_unique<Ring>();
  ring->entries = entries;
  ring->for_read = for_read;
  ring->io_depth = io_depth;
  ring->timeout_ms = timeout;
  ring->flags = flags;
  ring->slots.resize(static_cast<size_t>(entries));
  for (int i = 0; i < entries; i++) ring->free_slots.push_back(i);
  Ring* raw = ring.get();
  for (int i = 0; i < 2; i++) raw->workers.emplace_back([raw] { raw->WorkerLoop(); });

  // ior->iov describes the ring's shared memory in the real library; nothing outside it may use it.
  std::memset(ior, 0, sizeof(*ior));
  ior->iorh = ring.release();
  std::strcpy(ior->mount_point, mp);
  ior->for_read = for_read;
  ior->io_depth = io_depth;
  ior->priority = priority;
  ior->timeout = timeout;
  ior->flags = flags;
  g_live_rings++;
  return 0;
}

}  // namespace standin

using namespace standin;

// =============================================================================================
// The C ABI

STANDIN_EXPORT bool hf3fs_is_hf3fs(int fd) {
  return Guarded(false, [&] {
    if (fd < 0) return false;
    if (proto::IsHf3fs(fd)) return true;
    char target[PATH_MAX + 1];
    std::string proc = "/proc/self/fd/" + std::to_string(fd);
    ssize_t n = ::readlink(proc.c_str(), target, PATH_MAX);
    if (n <= 0 || target[0] != '/') return false;
    std::string path(target, static_cast<size_t>(n));
    const std::string deleted = " (deleted)";
    if (path.size() > deleted.size() && path.compare(path.size() - deleted.size(), deleted.size(), deleted) == 0)
      path.resize(path.size() - deleted.size());
    return !MountOf(path).empty();
  });
}

STANDIN_EXPORT int hf3fs_extract_mount_point(char* hf3fs_mount_point, int size, const char* path) {
  return Guarded(-1, [&] {
    if (path == nullptr) return -1;
    const std::string canon = CanonicalPrefix(path);
    std::string mp = MountOf(canon);
    bool on_daemon = false;
    for (const std::string& m : proto::Mounts()) on_daemon = on_daemon || IsUnder(canon, m);
    if (mp.empty() && on_daemon && RealPath(path).empty())
      Die("hf3fs_extract_mount_point(\"%s\"): the path does not exist; 3FS's library takes boost's canonical() of it, "
          "which throws through the C ABI and terminates the process", path);
    for (const std::string& m : proto::Mounts())
      if (IsUnder(canon, m) && m.size() > mp.size()) mp = m;
    if (mp.empty()) return -1;
    int need = static_cast<int>(mp.size()) + 1;
    if (hf3fs_mount_point != nullptr && size >= need) std::memcpy(hf3fs_mount_point, mp.c_str(), mp.size() + 1);
    return need;
  });
}

STANDIN_EXPORT int hf3fs_iovcreate(struct hf3fs_iov* iov, const char* hf3fs_mount_point, size_t size,
                                   size_t block_size, int numa) {
  return Guarded(-ENOMEM, [&]() -> int {
    if (iov == nullptr || hf3fs_mount_point == nullptr) return -EINVAL;
    if (std::strlen(hf3fs_mount_point) >= sizeof(iov->mount_point)) return -EINVAL;
    if (proto::IsMountPoint(hf3fs_mount_point)) return proto::IovCreate(iov, hf3fs_mount_point, size, block_size, numa);
    if (!IsMountPoint(hf3fs_mount_point)) return -ENOENT;
    if (block_size > size) return -EIO;  // 3FS throws in Shm creation, reported as -EIO

    auto h = std::make_unique<IovHandle>();  // releases whatever was made if we return early
    Uuid shm_id = Uuid::Random(), iov_id = Uuid::Random();
    h->shm_name = "/hf3fs-iov-" + shm_id.Text();
    // 3FS's library reports any failure to make the shared memory as -EIO (its Shm throws).
    UniqueFd fd(::shm_open(h->shm_name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0666));
    if (fd.fd < 0) return -EIO;
    h->shm_exists = true;
    if (::ftruncate(fd.fd, static_cast<off_t>(size)) != 0) return -EIO;
    void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.fd, 0);
    if (base == MAP_FAILED) return -EIO;
    h->base = static_cast<uint8_t*>(base);
    h->size = size;
    h->link_path = std::string(hf3fs_mount_point) + "/3fs-virt/iovs/" + iov_id.Text();
    if (block_size != 0) h->link_path += ".b" + std::to_string(block_size);
    if (::symlink(("/dev/shm" + h->shm_name).c_str(), h->link_path.c_str()) != 0) return -errno;
    h->symlinked = true;

    std::memset(iov, 0, sizeof(*iov));
    iov->base = h->base;
    std::memcpy(iov->id, iov_id.b, sizeof(iov->id));
    std::strcpy(iov->mount_point, hf3fs_mount_point);
    iov->size = size;
    iov->block_size = block_size;
    iov->numa = numa;
    iov->iovh = h.release();
    g_live_iovs++;
    return 0;
  });
}

STANDIN_EXPORT int hf3fs_iovopen(struct hf3fs_iov* iov, const uint8_t id[16], const char* hf3fs_mount_point,
                                 size_t size, size_t block_size, int numa) {
  (void)iov, (void)id, (void)hf3fs_mount_point, (void)size, (void)block_size, (void)numa;
  return -ENOSYS;  // sharing an iov across processes is not modelled
}

STANDIN_EXPORT int hf3fs_iovwrap(struct hf3fs_iov* iov, void* base, const uint8_t id[16],
                                 const char* hf3fs_mount_point, size_t size, size_t block_size, int numa) {
  if (iov == nullptr || base == nullptr || id == nullptr || hf3fs_mount_point == nullptr) return -EINVAL;
  if (std::strlen(hf3fs_mount_point) >= sizeof(iov->mount_point)) return -EINVAL;
  if (block_size > size) return -EIO;
  std::memset(iov, 0, sizeof(*iov));
  iov->base = static_cast<uint8_t*>(base);
  iov->iovh = &g_wrapped_tag;
  std::memcpy(iov->id, id, sizeof(iov->id));
  std::strcpy(iov->mount_point, hf3fs_mount_point);
  iov->size = size;
  iov->block_size = block_size;
  iov->numa = numa;
  return 0;
}

STANDIN_EXPORT void hf3fs_iovunlink(struct hf3fs_iov* iov) {
  GuardedVoid("hf3fs_iovunlink", [&] {
    if (iov == nullptr || iov->iovh == nullptr || IsWrapped(iov)) return;
    if (proto::OwnsIov(iov)) return proto::IovUnlink(iov);
    IovHandle* h = LiveIov(iov, "hf3fs_iovunlink");
    std::lock_guard<std::mutex> lk(h->mu);
    if (h->shm_exists) ::shm_unlink(h->shm_name.c_str());
    h->shm_exists = false;  // the mapping stays valid
  });
}

STANDIN_EXPORT void hf3fs_iovdestroy(struct hf3fs_iov* iov) {
  GuardedVoid("hf3fs_iovdestroy", [&] {
    if (iov == nullptr || iov->iovh == nullptr || IsWrapped(iov)) return;  // wrapped: not ours to free
    if (proto::OwnsIov(iov)) return proto::IovDestroy(iov);
    IovHandle* h = LiveIov(iov, "hf3fs_iovdestroy");
    if (int n = h->pending.load())
      Die("hf3fs_iovdestroy: iov %p still has %d IO(s) in flight (destroy the ring or reap first)",
          static_cast<const void*>(iov), n);
    std::lock_guard<std::mutex> lk(h->mu);
    h->Release();
    h->magic = kDead;  // tombstone: kept allocated so later misuse is detected
    g_live_iovs--;
  });
}

STANDIN_EXPORT size_t hf3fs_ior_size(int entries) {
  // 4 int32 markers + sem_t + (IoArgs 56 + IoCqe 24 + IoSqe 16) * (entries + 1) + 4096 slack
  return 16 + 32 + 96 * (static_cast<size_t>(entries) + 1) + 4096;
}

STANDIN_EXPORT int hf3fs_iorcreate(struct hf3fs_ior* ior, const char* hf3fs_mount_point, int entries, bool for_read,
                                   int io_depth, int numa) {
  return Guarded(-ENOMEM, [&] { return IorCreate(ior, hf3fs_mount_point, entries, for_read, io_depth, 0, 0, numa, 0); });
}

STANDIN_EXPORT int hf3fs_iorcreate2(struct hf3fs_ior* ior, const char* hf3fs_mount_point, int entries, bool for_read,
                                    int io_depth, int priority, int numa) {
  return Guarded(-ENOMEM,
                 [&] { return IorCreate(ior, hf3fs_mount_point, entries, for_read, io_depth, priority, 0, numa, 0); });
}

STANDIN_EXPORT int hf3fs_iorcreate3(struct hf3fs_ior* ior, const char* hf3fs_mount_point, int entries, bool for_read,
                                    int io_depth, int priority, int timeout, int numa) {
  return Guarded(-ENOMEM, [&] {
    return IorCreate(ior, hf3fs_mount_point, entries, for_read, io_depth, priority, timeout, numa, 0);
  });
}

STANDIN_EXPORT int hf3fs_iorcreate4(struct hf3fs_ior* ior, const char* hf3fs_mount_point, int entries, bool for_read,
                                    int io_depth, int timeout, int numa, uint64_t flags) {
  return Guarded(-ENOMEM, [&] {
    return IorCreate(ior, hf3fs_mount_point, entries, for_read, io_depth, 0, timeout, numa, flags);
  });
}

STANDIN_EXPORT void hf3fs_iordestroy(struct hf3fs_ior* ior) {
  GuardedVoid("hf3fs_iordestroy", [&] {
    if (ior == nullptr || ior->iorh == nullptr) return;
    if (proto::OwnsRing(ior)) return proto::IorDestroy(ior);
    Ring* r = LiveRing(ior, "hf3fs_iordestroy");
    if (r->preparing.load() || r->waiting.load())
      Die("hf3fs_iordestroy: ring %p destroyed while another thread is in prep_io or wait_for_ios",
          static_cast<const void*>(ior));
    r->Shutdown();  // runs what was prepared, waits for in-flight IOs
    std::lock_guard<std::mutex> lk(r->mu);
    r->slots.clear();
    r->slots.shrink_to_fit();
    r->free_slots.clear();
    r->cq.clear();
    r->magic = kDead;  // tombstone
    g_live_rings--;
  });
}

STANDIN_EXPORT int hf3fs_reg_fd(int fd, uint64_t flags) {
  (void)flags;  // "for future use"
  return Guarded(ENOMEM, [&] {
    if (fd < 0 || fd >= MaxFds()) return EBADF;
    if (!hf3fs_is_hf3fs(fd)) return EBADF;
    struct stat st;
    if (::fstat(fd, &st) != 0) return errno;
    int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0) return errno;
    FdTable& t = Fds();
    std::lock_guard<std::mutex> lk(t.mu);
    if (t.by_orig.count(fd) != 0) return EINVAL;
    int d = ::dup(fd);
    if (d < 0) return errno;
    auto e = std::make_shared<FdEntry>();
    e->orig = fd;
    e->dup = d;
    e->accmode = fl & O_ACCMODE;
    e->ino = st.st_ino;
    t.by_orig[fd] = e;
    t.dup_to_orig[d] = fd;
    return -d;
  });
}

STANDIN_EXPORT void hf3fs_dereg_fd(int fd) {
  GuardedVoid("hf3fs_dereg_fd", [&] {
    if (!hf3fs_is_hf3fs(fd)) return;  // as 3FS's: a closed descriptor stays registered
    std::shared_ptr<FdEntry> e;  // closed after the lock is released (or when the last IO lets go)
    FdTable& t = Fds();
    std::lock_guard<std::mutex> lk(t.mu);
    auto it = t.by_orig.find(fd);
    if (it == t.by_orig.end()) return;
    e = std::move(it->second);
    t.by_orig.erase(it);
    t.dup_to_orig.erase(e->dup);
  });
}

STANDIN_EXPORT int hf3fs_io_entries(const struct hf3fs_ior* ior) {
  if (ior == nullptr || ior->iorh == nullptr) return -EINVAL;
  if (proto::OwnsRing(ior)) return proto::IoEntries(ior);
  return LiveRing(ior, "hf3fs_io_entries")->entries;
}

static int PrepIo(const struct hf3fs_ior* ior, const struct hf3fs_iov* iov, bool read, void* ptr, int fd, size_t off,
                  uint64_t len, const void* userdata) {
  if (ior != nullptr && ior->iorh != nullptr && proto::OwnsRing(ior)) {
    if (long e = EnvPositive("HF3FS_STANDIN_FAIL_PREP")) return static_cast<int>(-e);
    return proto::PrepIo(ior, iov, read, ptr, fd, off, len, userdata);
  }
  if (ior == nullptr || ior->iorh == nullptr || iov == nullptr || iov->iovh == nullptr) return -EINVAL;
  Ring* r = LiveRing(ior, "hf3fs_prep_io");
  RoleGuard role(r->preparing, "hf3fs_prep_io", ior);
  return Guarded(-ENOMEM, [&]() -> int {
    if (long e = EnvPositive("HF3FS_STANDIN_FAIL_PREP")) return static_cast<int>(-e);
    IovHandle* h = IsWrapped(iov) ? nullptr : LiveIov(iov, "hf3fs_prep_io");
    if (read != r->for_read) return -EINVAL;
    if (len == 0) return -EINVAL;
    auto p = reinterpret_cast<uintptr_t>(ptr), b = reinterpret_cast<uintptr_t>(iov->base);
    if (p < b || len > iov->size || p - b > iov->size - len) return -EINVAL;
    uint64_t rel = p - b;
    if (iov->block_size != 0 && rel / iov->block_size != (rel + len - 1) / iov->block_size) return -EINVAL;
    std::shared_ptr<FdEntry> f = LookupFd(fd);
    if (!f) return -EBADF;
    if ((!read && f->accmode == O_RDONLY) || (read && f->accmode == O_WRONLY)) return -EACCES;

    std::lock_guard<std::mutex> lk(r->mu);
    if (r->free_slots.empty()) return -EAGAIN;  // slots come back only through wait_for_ios
    int idx = r->free_slots.front();
    r->free_slots.pop_front();
    Slot& s = r->slots[static_cast<size_t>(idx)];
    s.iov = h;
    s.ptr = static_cast<uint8_t*>(ptr);
    s.fd = std::move(f);
    s.off = off;
    s.len = len;
    s.userdata = userdata;
    if (h != nullptr) h->pending++;
    r->prepared.push_back(idx);  // no wake-up: a worker finds it at its next scan, or at submit
    g_prepped++;
    return idx;
  });
}

STANDIN_EXPORT int hf3fs_prep_io(const struct hf3fs_ior* ior, const struct hf3fs_iov* iov, bool read, void* ptr,
                                 int fd, size_t off, uint64_t len, const void* userdata) {
  const int r = PrepIo(ior, iov, read, ptr, fd, off, len, userdata);
  if (long us = r >= 0 ? EnvPositive("HF3FS_STANDIN_PREP_DELAY_US") : 0) std::this_thread::sleep_for(std::chrono::microseconds(us));
  return r;
}

STANDIN_EXPORT int hf3fs_submit_ios(const struct hf3fs_ior* ior) {
  if (ior == nullptr || ior->iorh == nullptr) return -EINVAL;
  if (proto::OwnsRing(ior)) return proto::SubmitIos(ior);
  Ring* r = LiveRing(ior, "hf3fs_submit_ios");
  {
    std::lock_guard<std::mutex> lk(r->mu);
    r->kicked = true;
  }
  r->work_cv.notify_one();  // one worker takes everything prepared; waking both would wake one for nothing
  g_submitted++;
  return 0;
}

STANDIN_EXPORT int hf3fs_wait_for_ios(const struct hf3fs_ior* ior, struct hf3fs_cqe* cqes, int cqec, int min_results,
                                      const struct timespec* abs_timeout) {
  if (ior != nullptr && ior->iorh != nullptr && proto::OwnsRing(ior))
    return proto::WaitForIos(ior, cqes, cqec, min_results, abs_timeout);
  if (ior == nullptr || ior->iorh == nullptr || cqes == nullptr || cqec <= 0 || min_results < 0 ||
      min_results > cqec)
    return -EINVAL;
  if (abs_timeout != nullptr && (abs_timeout->tv_nsec < 0 || abs_timeout->tv_nsec >= 1000000000L)) return -EINVAL;
  Ring* r = LiveRing(ior, "hf3fs_wait_for_ios");
  RoleGuard role(r->waiting, "hf3fs_wait_for_ios", ior);
  return Guarded(-ENOMEM, [&] {
    std::unique_lock<std::mutex> lk(r->mu);
    auto ready = [&] { return r->cq.size() >= static_cast<size_t>(min_results); };
    if (abs_timeout == nullptr) {
      r->done_cv.wait(lk, ready);
    } else {
      using namespace std::chrono;
      // CLOCK_REALTIME is system_clock; a deadline centuries away is "forever".
      if (abs_timeout->tv_sec > 4000000000LL) {
        r->done_cv.wait(lk, ready);
      } else {
        system_clock::time_point deadline(duration_cast<system_clock::duration>(
            seconds(abs_timeout->tv_sec) + nanoseconds(abs_timeout->tv_nsec)));
        r->done_cv.wait_until(lk, deadline, ready);
      }
    }
    int n = static_cast<int>(std::min<size_t>(r->cq.size(), static_cast<size_t>(cqec)));
    for (int i = 0; i < n; i++) {
      const Completion& c = r->cq.front();
      cqes[i].index = c.index;
      cqes[i].reserved = 0;
      cqes[i].result = c.result;
      cqes[i].userdata = c.userdata;
      r->free_slots.push_back(c.index);
      r->cq.pop_front();
    }
    g_reaped += n;
    return n;
  });
}

STANDIN_EXPORT int hf3fs_hardlink(const char* target, const char* link_name) {
  if (target == nullptr || link_name == nullptr) return EINVAL;
  const std::string canon = CanonicalPrefix(link_name);
  for (const std::string& m : proto::Mounts())
    if (IsUnder(canon, m) && MountOf(canon).size() < m.size()) return proto::Hardlink(target, link_name);
  return ::link(target, link_name) == 0 ? 0 : errno;
}

STANDIN_EXPORT int hf3fs_punchhole(int fd, int n, const size_t* start, const size_t* end, size_t flags) {
  return Guarded(ENOMEM, [&] {
    if (n < 0 || n > HF3FS_PUNCH_HOLE_MAX) return EINVAL;
    if (proto::IsHf3fs(fd < 0 ? -fd : fd)) return proto::Punchhole(fd < 0 ? -fd : fd, n, start, end, flags);
    std::shared_ptr<FdEntry> f = LookupFd(fd);
    if (!f) return EBADF;
    if (n == 0) return 0;
    if (start == nullptr || end == nullptr) return EINVAL;
    struct stat st;
    if (::fstat(f->dup, &st) != 0) return errno;
    // The "chunk size" is the file system's block size here; everything is checked before any change.
    const size_t chunk = st.st_blksize > 0 ? static_cast<size_t>(st.st_blksize) : 4096;
    for (int i = 0; i < n; i++)
      if (start[i] % chunk != 0 || end[i] % chunk != 0 || start[i] > end[i]) return EINVAL;
    for (int i = 0; i < n; i++) {
      if (start[i] == end[i]) continue;
      if (::fallocate(f->dup, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(start[i]),
                      static_cast<off_t>(end[i] - start[i])) != 0)
        return errno;
    }
    return 0;
  });
}

STANDIN_EXPORT int hf3fs_standin_stats(char* buf, int size) {
  return Guarded(-1, [&] {
    long reg;
    {
      FdTable& t = Fds();
      std::lock_guard<std::mutex> lk(t.mu);
      reg = static_cast<long>(t.by_orig.size());
    }
    std::string s = "{\"prepped\":" + std::to_string(g_prepped.load()) +
                    ",\"submitted\":" + std::to_string(g_submitted.load()) +
                    ",\"completed\":" + std::to_string(g_completed.load()) +
                    ",\"started\":" + std::to_string(g_started.load()) +
                    ",\"reaped\":" + std::to_string(g_reaped.load()) + ",\"regFds\":" + std::to_string(reg) +
                    ",\"iovs\":" + std::to_string(g_live_iovs.load()) +
                    ",\"rings\":" + std::to_string(g_live_rings.load()) + "}";
    int need = static_cast<int>(s.size()) + 1;
    if (buf != nullptr && size >= need) std::memcpy(buf, s.c_str(), s.size() + 1);
    return need;
  });
}

// The definitions must match the ABI our addon loads (native/hf3fs/usrbio.h's pointer types).
static_assert(std::is_same_v<decltype(&hf3fs_is_hf3fs), hf3fs_is_hf3fs_fn>);
static_assert(std::is_same_v<decltype(&hf3fs_extract_mount_point), hf3fs_extract_mount_point_fn>);
static_assert(std::is_same_v<decltype(&hf3fs_iovcreate), hf3fs_iovcreate_fn>);
static_assert(std::is_same_v<decltype(&hf3fs_iovunlink), hf3fs_iovunlink_fn>);
static_assert(std::is_same_v<decltype(&hf3fs_iovdestroy), hf3fs_iovdestroy_fn>);
static_assert(std::is_same_v<decltype(&hf3fs_ior_size), hf3fs_ior_size_fn>);
static_assert(std::is_same_v<decltype(&hf3fs_iorcreate4), hf3fs_iorcreate4_fn>);
static_assert(std::is_same_v<decltype(&hf3fs_iordestroy), hf3fs_iordestroy_fn>);
static_assert(std::is_same_v<decltype(&hf3fs_reg_fd), hf3fs_reg_fd_fn>);
static_assert(std::is_same_v<decltype(&hf3fs_dereg_fd), hf3fs_dereg_fd_fn>);
static_assert(std::is_same_v<decltype(&hf3fs_io_entries), hf3fs_io_entries_fn>);
static_assert(std::is_same_v<decltype(&hf3fs_prep_io), hf3fs_prep_io_fn>);
static_assert(std::is_same_v<decltype(&hf3fs_submit_ios), hf3fs_submit_ios_fn>);
static_assert(std::is_same_v<decltype(&hf3fs_wait_for_ios), hf3fs_wait_for_ios_fn>);
static_assert(std::is_same_v<decltype(&hf3fs_hardlink), hf3fs_hardlink_fn>);
static_assert(std::is_same_v<decltype(&hf3fs_punchhole), hf3fs_punchhole_fn>);
