// The io rings: 3FS's layout and rules, served by watcher and worker threads.
//
// A ring's shared memory, as 3FS lays it out for n entries (n + 1 slots, one kept free to tell a
// full queue from an empty one):
//   int32 sqeHead, sqeTail, cqeHead, cqeTail | IoArgs[n+1] (56 B) | IoCqe[n+1] (24 B) | IoSqe[n+1] (16 B)
//   | sem_t (initialised here, when the ring registers) | slack up to hf3fs_ior_size(n)
// The library writes IoArgs and SQEs and moves sqeHead; a job takes SQEs from this side's private
// tail by the ring's io_depth, and when it is done the shared sqeTail moves past it, in order
// (jobs finish out of order); its CQEs go in at cqeHead and the ring's semaphore is posted once.
//
// One watcher thread per priority waits on that priority's submit semaphore (or scans every
// scan_ms) and queues jobs; worker threads run them against the backing files. Reads follow
// 3FS's chunks (chunk size = st_blksize): a chunk holds bytes up to its last written one, a short
// result means the end of the data, and missing bytes followed by data are a hole: zeros, or
// -ENODATA on a ring with HF3FS_IOR_FORBID_READ_HOLES.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "daemon.h"

namespace hf3fs_test {
namespace {

constexpr uint64_t kForbidReadHoles = 2;
constexpr int kMaxJobsPerScan = 32;

struct IoArgs {
  uint8_t buf_id[16];
  uint64_t buf_off;
  uint64_t file_iid;
  uint64_t file_off;
  uint64_t io_len;
  const void* userdata;
};
struct IoCqe {
  int32_t index;
  int32_t reserved;
  int64_t result;
  const void* userdata;
};
struct IoSqe {
  int32_t index;
  const void* userdata;
};
static_assert(sizeof(IoArgs) == 56 && sizeof(IoCqe) == 24 && sizeof(IoSqe) == 16, "3FS's ring entry layouts");

int32_t Load(const int32_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
void Store(int32_t* p, int32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

struct Ring {
  std::shared_ptr<void> owner;  // keeps the mapping while jobs run, even after unregistration
  RingAttrs attrs;
  uid_t uid = 0;
  pid_t tgid = 0;
  int entries = 0;  // slots: n + 1
  int32_t* markers = nullptr;  // sqeHead, sqeTail, cqeHead, cqeTail
  IoArgs* args = nullptr;
  IoCqe* cqes = nullptr;
  IoSqe* sqes = nullptr;
  sem_t* sem = nullptr;

  std::mutex mu;  // this side's bookkeeping
  int proc_tail = 0;
  int processing = 0;
  std::deque<int> proc_tails;  // ends of the jobs taken, in order
  std::set<int> done_tails;    // ends of jobs done before an earlier one
};

struct Job {
  std::shared_ptr<Ring> ring;
  int start = 0;
  int count = 0;
};

std::mutex g_mu;
std::map<int, std::shared_ptr<Ring>> g_rings;
int g_next_handle = 1;
std::deque<Job> g_jobs;
std::condition_variable g_jobs_cv;
bool g_stopping = false;
std::vector<std::thread> g_threads;
sem_t* g_submit[3] = {nullptr, nullptr, nullptr};
std::string g_sem_names[3];

// The jobs a scan takes from a ring, by its io_depth (3FS's jobsToProc).
std::vector<Job> TakeJobs(const std::shared_ptr<Ring>& r, int max_jobs) {
  std::vector<Job> jobs;
  std::lock_guard<std::mutex> lk(r->mu);
  const int n = r->entries;
  int sqes = (Load(&r->markers[0]) - r->proc_tail + n) % n;
  const int cqes = (Load(&r->markers[2]) - Load(&r->markers[3]) + n) % n;
  int cqe_room = n - 1 - r->processing - cqes;
  while (sqes > 0 && static_cast<int>(jobs.size()) < max_jobs) {
    int take = r->attrs.io_depth > 0 ? r->attrs.io_depth : std::min(sqes, cqe_room);
    if (take <= 0 || take > sqes || take > cqe_room) break;  // io_depth > 0: a whole batch or nothing
    jobs.push_back(Job{r, r->proc_tail, take});
    r->proc_tail = (r->proc_tail + take) % n;
    r->proc_tails.push_back(r->proc_tail);
    r->processing += take;
    sqes -= take;
    cqe_room -= take;
  }
  return jobs;
}

// The end of the written bytes of the chunk [start, end) of a file `size` long (start if none).
uint64_t ChunkDataEnd(int fd, uint64_t start, uint64_t end, uint64_t size) {
  const uint64_t limit = std::min(end, size);
  uint64_t pos = start, data_end = start;
  while (pos < limit) {
    off_t d = lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
    if (d < 0 || static_cast<uint64_t>(d) >= limit) break;
    off_t h = lseek(fd, d, SEEK_HOLE);
    uint64_t hole = h < 0 ? limit : std::min<uint64_t>(static_cast<uint64_t>(h), limit);
    data_end = hole;
    pos = hole;
  }
  return data_end;
}

int64_t PreadAll(int fd, uint8_t* dst, uint64_t len, uint64_t off) {
  uint64_t done = 0;
  while (done < len) {
    ssize_t n = pread(fd, dst + done, len - done, static_cast<off_t>(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) break;
    done += static_cast<uint64_t>(n);
  }
  return static_cast<int64_t>(done);
}

// What a job learns about one file, kept for its other IOs (3FS looks a job's files up once too).
struct FileCache {
  uint64_t iid = UINT64_MAX;
  int fd = -1;
  int64_t size = -1;                // fstat'd on the first read
  uint64_t chunk = UINT64_MAX;      // the last chunk looked at, and the end of its data
  uint64_t chunk_data_end = 0;
};

uint64_t CachedDataEnd(FileCache& f, uint64_t cstart, uint64_t chunk) {
  if (f.chunk != cstart) {
    f.chunk = cstart;
    f.chunk_data_end = ChunkDataEnd(f.fd, cstart, cstart + chunk, static_cast<uint64_t>(f.size));
  }
  return f.chunk_data_end;
}

// A read, chunk by chunk, with 3FS's result rules (see the top of this file).
int64_t ChunkedRead(FileCache& f, uint8_t* dst, uint64_t off, uint64_t len, bool allow_holes) {
  struct stat st;
  if (f.size < 0) {
    if (fstat(f.fd, &st) != 0) return -errno;
    f.size = st.st_size;
  }
  const uint64_t chunk = options().chunk;
  int64_t result = 0;
  uint64_t hole_at = 0, hole_len = 0;
  bool in_hole = false;
  for (uint64_t a = off; a < off + len;) {
    const uint64_t cstart = a / chunk * chunk, b = std::min(off + len, cstart + chunk);
    const uint64_t data_end = CachedDataEnd(f, cstart, chunk);
    const uint64_t got = data_end > a ? std::min(data_end, b) - a : 0;
    if (got > 0 && in_hole) {
      if (!allow_holes) return -ENODATA;
      std::memset(dst + hole_at, 0, hole_len);
      result += static_cast<int64_t>(hole_len);
      in_hole = false;
    }
    int64_t n = PreadAll(f.fd, dst + (a - off), got, a);
    if (n < 0) return n;
    if (static_cast<uint64_t>(n) < b - a) {
      if (!in_hole) {
        in_hole = true;
        hole_at = a - off + static_cast<uint64_t>(n);
        hole_len = 0;
      }
      hole_len += b - a - static_cast<uint64_t>(n);
    }
    result += n;
    a = b;
  }
  return result;
}

int64_t WriteAll(int fd, const uint8_t* src, uint64_t off, uint64_t len) {
  uint64_t done = 0;
  while (done < len) {
    ssize_t n = pwrite(fd, src + done, len - done, static_cast<off_t>(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) return -EIO;
    done += static_cast<uint64_t>(n);
  }
  return static_cast<int64_t>(done);
}

struct Prepared {
  IoSqe sqe{};
  IoArgs args{};
  FileCache* file = nullptr;
  IovMemory mem;
  int64_t result = 0;
};

// A job's files and buffers, each looked up once.
struct JobCache {
  std::vector<std::unique_ptr<FileCache>> files;
  std::vector<std::pair<std::array<uint8_t, 16>, IovMemory>> bufs;
  ~JobCache() {
    for (auto& f : files)
      if (f->fd >= 0) close(f->fd);
  }
  FileCache* File(uint64_t iid) {
    for (auto& f : files)
      if (f->iid == iid) return f.get();
    files.push_back(std::make_unique<FileCache>());
    files.back()->iid = iid;
    files.back()->fd = IoFdOf(iid);
    return files.back().get();
  }
  const IovMemory& Buf(const uint8_t id[16], uid_t uid) {
    std::array<uint8_t, 16> key;
    std::memcpy(key.data(), id, 16);
    for (auto& [k, m] : bufs)
      if (k == key) return m;
    bufs.emplace_back(key, FindIov(id, uid));
    return bufs.back().second;
  }
};

// Finds the file and the buffer of one IO, or sets its result to -errno as 3FS would.
void Prepare(const Ring& r, const Faults& faults, JobCache& cache, Prepared* p) {
  if (p->sqe.index < 0 || p->sqe.index >= r.entries) return (void)(p->result = -EINVAL);
  p->args = r.args[p->sqe.index];
  p->file = cache.File(p->args.file_iid);
  if (p->file->fd < 0) return (void)(p->result = -EBADF);  // 3FS: kNotFile
  p->mem = cache.Buf(p->args.buf_id, r.uid);
  if (p->mem.error) return (void)(p->result = -p->mem.error);
  const uint64_t o = p->args.buf_off, l = p->args.io_len, bs = p->mem.block_size;
  if (o > p->mem.size || l > p->mem.size - o) return (void)(p->result = -EINVAL);
  if (l > 0 && o / bs != (o + l - 1) / bs) return (void)(p->result = -EINVAL);  // crosses a block
  const int fault = r.attrs.for_read ? faults.read_errno : faults.write_errno;
  if (fault) p->result = -fault;
}

// 3FS fails a whole read batch whose buffers overlap (its storage client's check), with EIO.
bool BuffersOverlap(const std::vector<Prepared>& ios) {
  std::vector<std::pair<const uint8_t*, uint64_t>> spans;
  for (const Prepared& p : ios)
    if (p.result >= 0 && p.args.io_len > 0) spans.emplace_back(p.mem.base + p.args.buf_off, p.args.io_len);
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); i++)
    if (spans[i - 1].first + spans[i - 1].second > spans[i].first) return true;
  return false;
}

// Posts a finished job's CQEs, moving the shared sqeTail past every job done in order.
void Complete(Ring& r, const Job& job, const std::vector<Prepared>& ios) {
  {
    std::lock_guard<std::mutex> lk(r.mu);
    const int n = r.entries, end = (job.start + job.count) % n;
    if (r.proc_tails.front() != end) {
      r.done_tails.insert(end);
    } else {
      Store(&r.markers[1], end);
      r.proc_tails.pop_front();
      while (!r.proc_tails.empty() && r.done_tails.erase(r.proc_tails.front())) {
        Store(&r.markers[1], r.proc_tails.front());
        r.proc_tails.pop_front();
      }
    }
    for (const Prepared& p : ios) {
      const int32_t h = Load(&r.markers[2]);
      IoCqe& c = r.cqes[h];
      c.index = p.sqe.index;
      c.reserved = 0;
      c.result = p.result;
      c.userdata = p.sqe.userdata;
      Store(&r.markers[2], (h + 1) % n);
    }
    r.processing -= job.count;
  }
  sem_post(r.sem);
}

void Run(const Job& job) {
  Ring& r = *job.ring;
  const Faults faults = FaultsFor(r.tgid);
  JobCache cache;
  std::vector<Prepared> ios(static_cast<size_t>(job.count));
  for (int i = 0; i < job.count; i++) {
    ios[static_cast<size_t>(i)].sqe = r.sqes[(job.start + i) % r.entries];
    Prepare(r, faults, cache, &ios[static_cast<size_t>(i)]);
  }
  const bool overlap = r.attrs.for_read && BuffersOverlap(ios);
  const bool allow_holes = !(r.attrs.flags & kForbidReadHoles);
  for (Prepared& p : ios) {
    if (p.result < 0) continue;
    uint8_t* buf = p.mem.base + p.args.buf_off;
    if (faults.delay_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(faults.delay_us));
    if (overlap) p.result = -EIO;
    else if (r.attrs.for_read) p.result = ChunkedRead(*p.file, buf, p.args.file_off, p.args.io_len, allow_holes);
    else p.result = WriteAll(p.file->fd, buf, p.args.file_off, p.args.io_len);
  }
  Complete(r, job, ios);
}

void Worker() {
  std::unique_lock<std::mutex> lk(g_mu);
  for (;;) {
    g_jobs_cv.wait(lk, [] { return g_stopping || !g_jobs.empty(); });
    if (g_jobs.empty()) return;
    Job job = std::move(g_jobs.front());
    g_jobs.pop_front();
    lk.unlock();
    for (;;) {  // then the ring's next job, as 3FS's workers do, while there is one
      Run(job);
      std::vector<Job> next = TakeJobs(job.ring, 1);
      if (next.empty()) break;
      job = std::move(next.front());
    }
    lk.lock();
  }
}

std::vector<std::shared_ptr<Ring>> RingsOf(int priority) {
  std::vector<std::shared_ptr<Ring>> out;
  std::lock_guard<std::mutex> lk(g_mu);
  for (auto& [handle, ring] : g_rings)
    if (ring->attrs.priority == priority) out.push_back(ring);
  return out;
}

void Watcher(int priority) {
  for (;;) {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += static_cast<long>(options().scan_ms) * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    sem_timedwait(g_submit[priority], &ts);
    {
      std::lock_guard<std::mutex> lk(g_mu);
      if (g_stopping) return;
    }
    for (bool found = true; found;) {  // until a scan finds nothing
      found = false;
      for (const auto& ring : RingsOf(priority)) {
        std::vector<Job> jobs = TakeJobs(ring, kMaxJobsPerScan);
        if (jobs.empty()) continue;
        found = true;
        std::lock_guard<std::mutex> lk(g_mu);
        for (Job& j : jobs) g_jobs.push_back(std::move(j));
        g_jobs_cv.notify_all();
      }
    }
  }
}

std::string RandomHex() {
  std::random_device rd;
  char s[33];
  for (int i = 0; i < 32; i++) s[i] = "0123456789abcdef"[rd() % 16];
  s[32] = '\0';
  return s;
}

}  // namespace

int RingEntries(size_t bytes) {
  const size_t fixed = 4096 + 16 + sizeof(sem_t), per = sizeof(IoArgs) + sizeof(IoCqe) + sizeof(IoSqe);
  if (bytes < fixed + 2 * per) return -1;
  return static_cast<int>(std::min<size_t>((bytes - fixed) / per, INT32_MAX)) - 1;
}

int AddRing(std::shared_ptr<void> owner, uint8_t* buf, size_t size, const RingAttrs& attrs, uid_t uid, pid_t tgid,
            int* err) {
  const int n = RingEntries(size);
  if (n <= 0) {
    *err = EINVAL;
    return 0;
  }
  auto r = std::make_shared<Ring>();
  r->owner = std::move(owner);
  r->attrs = attrs;
  r->uid = uid;
  r->tgid = tgid;
  r->entries = n + 1;
  r->markers = reinterpret_cast<int32_t*>(buf);
  r->args = reinterpret_cast<IoArgs*>(buf + 16);
  r->cqes = reinterpret_cast<IoCqe*>(r->args + r->entries);
  r->sqes = reinterpret_cast<IoSqe*>(r->cqes + r->entries);
  r->sem = reinterpret_cast<sem_t*>(r->sqes + r->entries);
  sem_init(r->sem, 1, 0);  // the completion semaphore: 3FS's daemon initialises it, not the library
  std::lock_guard<std::mutex> lk(g_mu);
  int handle = g_next_handle++;
  g_rings[handle] = std::move(r);
  return handle;
}

void RemoveRing(int handle) {
  std::lock_guard<std::mutex> lk(g_mu);
  g_rings.erase(handle);
}

std::string SubmitSemPath(int priority) { return "/dev/shm/sem." + g_sem_names[priority]; }

void RingsName() {
  for (int p = 0; p < 3; p++) g_sem_names[p] = "hf3fs-submit-ios." + RandomHex();
}

void RingsUnlink() {
  for (int p = 0; p < 3; p++) sem_unlink(("/" + g_sem_names[p]).c_str());
}

void RingsInit() {
  for (int p = 0; p < 3; p++) {
    g_submit[p] = sem_open(("/" + g_sem_names[p]).c_str(), O_CREAT, 0666, 0);
    if (g_submit[p] == SEM_FAILED) {
      std::perror("sem_open");
      std::exit(2);
    }
    chmod(SubmitSemPath(p).c_str(), 0666);
  }
  for (int p = 0; p < 3; p++) g_threads.emplace_back(Watcher, p);
  for (int i = 0; i < options().workers; i++) g_threads.emplace_back(Worker);
}

void RingsShutdown() {
  {
    std::lock_guard<std::mutex> lk(g_mu);
    g_stopping = true;
  }
  g_jobs_cv.notify_all();
  for (int p = 0; p < 3; p++) sem_post(g_submit[p]);
  for (std::thread& t : g_threads) t.join();
  g_threads.clear();
  for (int p = 0; p < 3; p++) sem_close(g_submit[p]);
  RingsUnlink();
  std::lock_guard<std::mutex> lk(g_mu);
  g_rings.clear();
}

}  // namespace hf3fs_test
