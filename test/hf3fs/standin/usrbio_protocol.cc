// The stand-in's protocol mode: on a fuse.hf3fs mount (the test daemon of test/hf3fs/daemon, or
// 3FS's own) it does what 3FS's client library does, and nothing in-process:
//   - an iov is /dev/shm/hf3fs-iov-<uuid>, registered by symlink(<that>, <mp>/3fs-virt/iovs/<id>[.b<bs>]);
//   - a ring is shared memory laid out as 3FS's IoRing (4 int32 markers, IoArgs[n+1], IoCqe[n+1],
//     IoSqe[n+1], the completion sem_t the daemon initialises), registered by symlink with the key
//     <id>.r|w<depth>[.p<h|l>].t<ms>[.f<flags in binary>], its /dev/shm name unlinked at once;
//   - prep_io writes IoArgs and an SQE and moves sqeHead; submit_ios posts the mount's submit
//     semaphore (iovs/submit-ios{.ph,,.pl}); wait_for_ios takes the daemon's CQEs, polling the ring's
//     semaphore in HF3FS_USRBIO_WAIT_JITTER_MS steps (1 ms), and posts the submit semaphore after;
//   - the first registration on a mount opens <mp>/3fs-virt/iovs and keeps that descriptor (not
//     close-on-exec) for the life of the process: its release is the daemon's crash cleanup;
//   - hardlink and punchhole are ioctls; st_ino (statx) is the file id an IO names.
// Like 3FS's library, hf3fs_iordestroy rebuilds the ring's key with its flags in decimal, not
// binary: a ring with flags 2 (FORBID_READ_HOLES) is not unregistered by it (the key it unlinks
// does not exist). The engine works around that; tests check it does.
// On top of 3FS's behaviour the stand-in aborts loudly on misuse, as its in-process mode does: two
// threads preparing (or waiting) on one ring, use after destroy, an iov destroyed with IOs in flight.
#include <fcntl.h>
#include <semaphore.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>

#include "usrbio_standin.h"

namespace standin {
namespace proto {
namespace {

constexpr uint32_t kProtoLive = 0x9a0c11fe;
constexpr uint32_t kProtoDead = 0x9a0cd00d;
constexpr unsigned long kIocHardlink = 0x4108680c;   // _IOW('h', 12, {ino_t; char[NAME_MAX]})
constexpr unsigned long kIocPunchHole = 0x7e90680d;  // _IOW('h', 13, {int; size_t; size_t[1000] x2})

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
struct HardlinkArg {
  ino_t ino;
  char name[NAME_MAX];
};
struct PunchHoleArg {
  int n;
  size_t flags;
  size_t start[HF3FS_PUNCH_HOLE_MAX];
  size_t end[HF3FS_PUNCH_HOLE_MAX];
};
static_assert(sizeof(IoArgs) == 56 && sizeof(IoCqe) == 24 && sizeof(IoSqe) == 16, "3FS's ring entry layouts");
static_assert(sizeof(HardlinkArg) == 264 && sizeof(PunchHoleArg) == 16016, "3FS's ioctl argument layouts");

int32_t Load(const int32_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
void Store(int32_t* p, int32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

// Shared memory of this process: an iov's data, or a ring.
struct Shm {
  uint8_t* base = nullptr;
  size_t size = 0;
  std::string name;  // "/hf3fs-iov-<uuid>"
  bool named = false;
  int Create(size_t bytes) {
    name = "/hf3fs-iov-" + Uuid::Random().Text();
    UniqueFd fd(::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0666));
    if (fd.fd < 0) return EIO;
    named = true;
    if (::ftruncate(fd.fd, static_cast<off_t>(bytes)) != 0) return EIO;
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.fd, 0);
    if (p == MAP_FAILED) return EIO;
    base = static_cast<uint8_t*>(p);
    size = bytes;
    return 0;
  }
  void Unlink() {
    if (named) ::shm_unlink(name.c_str());
    named = false;
  }
  void Release() {
    Unlink();
    if (base != nullptr) ::munmap(base, size);
    base = nullptr;
  }
  ~Shm() { Release(); }
};

struct Iov {
  uint32_t magic = kProtoLive;  // first, like the in-process handles: tells the modes apart
  std::mutex mu;
  Shm shm;
  std::string link;
  std::atomic<int> pending{0};
};

struct Ring {
  uint32_t magic = kProtoLive;
  Shm shm;
  std::string link;  // the key as registered (flags in binary)
  int slots = 0;     // n: the ring's capacity
  int32_t* markers = nullptr;  // sqeHead, sqeTail, cqeHead, cqeTail
  IoArgs* args = nullptr;
  IoCqe* cqes = nullptr;
  IoSqe* sqes = nullptr;
  sem_t* done = nullptr;    // in the ring, initialised by the daemon
  sem_t* submit = nullptr;  // the mount's submit semaphore
  std::mutex mu;
  std::vector<int> free_slots;
  std::vector<Iov*> slot_iov;  // the iov each prepared slot uses, for the in-flight check
  std::atomic<bool> preparing{false}, waiting{false};
  int Entries() const { return slots + 1; }
};

std::string UuidText(const char id[16]) {
  Uuid u;
  std::memcpy(u.b, id, 16);
  return u.Text();
}

// The descriptor of <mp>/3fs-virt/iovs that 3FS's library opens once per mount and never closes.
int HoldIovsDir(const std::string& mp) {
  static std::mutex mu;
  static std::map<std::string, int> held;
  std::lock_guard<std::mutex> lk(mu);
  if (held.count(mp)) return 0;
  int fd = ::open((mp + "/3fs-virt/iovs").c_str(), O_DIRECTORY);  // no O_CLOEXEC, as 3FS's
  if (fd < 0) return errno;
  held[mp] = fd;
  return 0;
}

std::string MountinfoPath(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); i++) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      out += static_cast<char>(std::stoi(field.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

// readlink(<mp>/3fs-virt/iovs/submit-ios[.ph|.pl]) must be /dev/shm/sem.<name>: opens "/<name>".
int OpenSubmitSem(const std::string& mp, int priority, sem_t** sem) {
  const char* suffix = priority == 0 ? "" : priority < 0 ? ".ph" : ".pl";
  char target[256];
  ssize_t n = ::readlink((mp + "/3fs-virt/iovs/submit-ios" + suffix).c_str(), target, sizeof(target));
  if (n < 0) return -errno;
  if (n >= static_cast<ssize_t>(sizeof(target))) return -EIO;
  const std::string t(target, static_cast<size_t>(n)), prefix = "/dev/shm/sem.";
  if (t.compare(0, prefix.size(), prefix) != 0 || t.size() == prefix.size() || t.find('/', prefix.size()) != std::string::npos)
    return -EIO;
  *sem = ::sem_open(("/" + t.substr(prefix.size())).c_str(), 0);
  return *sem == SEM_FAILED ? -errno : 0;
}

std::string RingKey(const char id[16], bool for_read, int io_depth, int priority, int timeout, uint64_t flags,
                    bool flags_binary) {
  std::string key = UuidText(id) + "." + (for_read ? "r" : "w") + std::to_string(io_depth);
  if (priority != 0) key += priority < 0 ? ".ph" : ".pl";
  key += ".t" + std::to_string(timeout);
  if (flags != 0) {
    std::string bits;
    for (uint64_t f = flags; f != 0; f >>= 1) bits.insert(bits.begin(), static_cast<char>('0' + (f & 1)));
    key += ".f" + (flags_binary ? bits : std::to_string(flags));
  }
  return key;
}

Ring* RingOf(const hf3fs_ior* ior, const char* who) {
  auto* r = static_cast<Ring*>(ior->iorh);
  if (r->magic == kProtoDead) Die("%s: ring %p was already destroyed", who, static_cast<const void*>(ior));
  return r;
}

Iov* IovOf(const hf3fs_iov* iov, const char* who) {
  auto* h = static_cast<Iov*>(iov->iovh);
  if (h->magic == kProtoDead) Die("%s: iov %p was already destroyed", who, static_cast<const void*>(iov));
  return h;
}

// Lays the ring out over its shared memory (3FS's IoRing, entries = n + 1).
void MapRing(Ring* r) {
  const int e = r->Entries();
  r->markers = reinterpret_cast<int32_t*>(r->shm.base);
  r->args = reinterpret_cast<IoArgs*>(r->shm.base + 16);
  r->cqes = reinterpret_cast<IoCqe*>(r->args + e);
  r->sqes = reinterpret_cast<IoSqe*>(r->cqes + e);
  r->done = reinterpret_cast<sem_t*>(r->sqes + e);
  for (int i = r->slots; i-- > 0;) r->free_slots.push_back(i);
  r->slot_iov.assign(static_cast<size_t>(r->slots), nullptr);
}

void AbsDeadline(timespec* ts, long ms) {
  ts->tv_nsec += ms * 1000000L;
  ts->tv_sec += ts->tv_nsec / 1000000000L;
  ts->tv_nsec %= 1000000000L;
}

// Takes the CQEs that are in; returns how many went into `out`.
int Reap(Ring* r, hf3fs_cqe* out, int room) {
  const int e = r->Entries();
  int n = 0;
  while (n < room) {
    const int32_t tail = Load(&r->markers[3]);
    if (tail == Load(&r->markers[2])) break;
    const IoCqe& c = r->cqes[tail];
    out[n].index = c.index;
    out[n].reserved = 0;
    out[n].result = c.result;
    out[n].userdata = c.userdata;
    Store(&r->markers[3], (tail + 1) % e);
    std::lock_guard<std::mutex> lk(r->mu);
    if (c.index < 0 || c.index >= r->slots) Die("hf3fs_wait_for_ios: the daemon completed slot %d of %d", c.index, r->slots);
    if (Iov* h = r->slot_iov[static_cast<size_t>(c.index)]) h->pending--;
    r->slot_iov[static_cast<size_t>(c.index)] = nullptr;
    r->free_slots.push_back(c.index);
    n++;
  }
  return n;
}

}  // namespace

std::vector<std::string> Mounts() {
  const char* s = std::getenv("HF3FS_USRBIO_DONT_CHECKFS_FOR_MP");
  const bool check_fs = !(s != nullptr && std::strcmp(s, "yes") == 0);
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::vector<std::string> parts;
    for (std::string w; words >> w;) parts.push_back(w);
    if (parts.size() < 10) continue;
    if (check_fs && parts[parts.size() - 3] != "fuse.hf3fs") continue;
    std::string mp = MountinfoPath(parts[4]);
    if (mp.size() > 9 && mp.compare(mp.size() - 9, 9, "/3fs-virt") == 0) {
      out.push_back(mp.substr(0, mp.size() - 9));
    } else {
      struct stat st;
      if (::stat((mp + "/3fs-virt").c_str(), &st) == 0) out.push_back(mp);
    }
  }
  return out;
}

bool IsMountPoint(const char* mp) {
  const std::string canon = RealPath(mp);
  if (canon.empty()) return false;
  for (const std::string& m : Mounts())
    if (m == canon) return true;
  return false;
}

bool IsHf3fs(int fd) {
  uint32_t magic = 0;
  return fd >= 0 && ::ioctl(fd, HF3FS_IOC_GET_MAGIC_NUM, &magic) == 0 && magic == HF3FS_SUPER_MAGIC;
}

bool OwnsIov(const hf3fs_iov* iov) {
  const uint32_t m = *static_cast<const uint32_t*>(iov->iovh);
  return m == kProtoLive || m == kProtoDead;
}

bool OwnsRing(const hf3fs_ior* ior) {
  const uint32_t m = *static_cast<const uint32_t*>(ior->iorh);
  return m == kProtoLive || m == kProtoDead;
}

int IovCreate(hf3fs_iov* iov, const char* mp, size_t size, size_t block_size, int numa) {
  if (block_size > size) return -EIO;  // 3FS throws creating the Shm, reported as -EIO
  auto h = std::make_unique<Iov>();
  if (h->shm.Create(size) != 0) return -EIO;
  const Uuid id = Uuid::Random();
  h->link = std::string(mp) + "/3fs-virt/iovs/" + id.Text() + (block_size ? ".b" + std::to_string(block_size) : "");
  if (int err = HoldIovsDir(mp)) return -err;
  if (::symlink(("/dev/shm" + h->shm.name).c_str(), h->link.c_str()) != 0) return -errno;
  std::memset(iov, 0, sizeof(*iov));
  iov->base = h->shm.base;
  std::memcpy(iov->id, id.b, sizeof(iov->id));
  std::strcpy(iov->mount_point, mp);
  iov->size = size;
  iov->block_size = block_size;
  iov->numa = numa;
  iov->iovh = h.release();
  g_live_iovs++;
  return 0;
}

void IovUnlink(hf3fs_iov* iov) {
  Iov* h = IovOf(iov, "hf3fs_iovunlink");
  std::lock_guard<std::mutex> lk(h->mu);
  h->shm.Unlink();  // the mapping, and the daemon's, stay
}

void IovDestroy(hf3fs_iov* iov) {
  Iov* h = IovOf(iov, "hf3fs_iovdestroy");
  if (int n = h->pending.load())
    Die("hf3fs_iovdestroy: iov %p still has %d IO(s) in flight (destroy the ring or reap first)",
        static_cast<const void*>(iov), n);
  std::lock_guard<std::mutex> lk(h->mu);
  ::unlink(h->link.c_str());  // unregisters it in the daemon
  h->shm.Release();
  h->magic = kProtoDead;  // a tombstone, never freed: later misuse is caught
  g_live_iovs--;
}

int IorCreate(hf3fs_ior* ior, const char* mp, int entries, bool for_read, int io_depth, int priority, int timeout,
              int numa, uint64_t flags) {
  if (*mp == '\0' || timeout < 0) return -EINVAL;
  if (entries < 0) return -EIO;  // hf3fs_ior_size of it cannot be allocated
  auto r = std::make_unique<Ring>();
  if (r->shm.Create(hf3fs_ior_size(entries)) != 0) return -EIO;
  const Uuid id = Uuid::Random();
  char idb[16];
  std::memcpy(idb, id.b, 16);
  r->link = std::string(mp) + "/3fs-virt/iovs/" + RingKey(idb, for_read, io_depth, priority, timeout, flags, true);
  if (int err = HoldIovsDir(mp)) return -err;
  if (::symlink(("/dev/shm" + r->shm.name).c_str(), r->link.c_str()) != 0) return -errno;
  r->shm.Unlink();  // the daemon mapped it inside symlink()
  r->slots = entries;
  if (r->slots <= 0) {
    ::unlink(r->link.c_str());
    return -EINVAL;
  }
  if (int err = OpenSubmitSem(mp, priority, &r->submit)) {
    ::unlink(r->link.c_str());
    return err;
  }
  MapRing(r.get());
  std::memset(ior, 0, sizeof(*ior));
  ior->iov.base = r->shm.base;
  std::memcpy(ior->iov.id, id.b, sizeof(ior->iov.id));
  std::strcpy(ior->iov.mount_point, mp);
  ior->iov.size = r->shm.size;
  ior->iov.numa = numa;
  ior->iorh = r.release();
  std::strcpy(ior->mount_point, mp);
  ior->for_read = for_read;
  ior->io_depth = io_depth;
  ior->priority = priority;
  ior->timeout = timeout;
  ior->flags = flags;
  g_live_rings++;
  return 0;
}

void IorDestroy(hf3fs_ior* ior) {
  Ring* r = RingOf(ior, "hf3fs_iordestroy");
  if (r->preparing.load() || r->waiting.load())
    Die("hf3fs_iordestroy: ring %p destroyed while another thread is in prep_io or wait_for_ios",
        static_cast<const void*>(ior));
  // 3FS's library rebuilds the key with the flags in decimal here (see the top of this file).
  const std::string key = RingKey(ior->iov.id, ior->for_read, ior->io_depth, ior->priority, ior->timeout, ior->flags, false);
  ::unlink((std::string(ior->iov.mount_point) + "/3fs-virt/iovs/" + key).c_str());
  if (r->submit != nullptr) ::sem_close(r->submit);
  std::lock_guard<std::mutex> lk(r->mu);
  for (Iov* h : r->slot_iov)
    if (h != nullptr) h->pending--;  // never completed here: the daemon writes into its own mapping
  r->shm.Release();
  r->magic = kProtoDead;
  g_live_rings--;
}

int IoEntries(const hf3fs_ior* ior) { return RingOf(ior, "hf3fs_io_entries")->slots; }

int PrepIo(const hf3fs_ior* ior, const hf3fs_iov* iov, bool read, void* ptr, int fd, size_t off, uint64_t len,
           const void* userdata) {
  Ring* r = RingOf(ior, "hf3fs_prep_io");
  RoleGuard role(r->preparing, "hf3fs_prep_io", ior);
  if (read != ior->for_read || iov == nullptr || ptr == nullptr || iov->base == nullptr || len == 0 || fd == INT_MIN)
    return -EINVAL;
  const auto base = reinterpret_cast<uintptr_t>(iov->base), at = reinterpret_cast<uintptr_t>(ptr);
  if (iov->size > UINTPTR_MAX - base || at < base) return -EINVAL;
  const uint64_t buf_off = at - base;
  if (buf_off > iov->size || len > iov->size - buf_off) return -EINVAL;
  if ((fd < 0 ? -fd : fd) >= MaxFds()) return -EINVAL;
  std::shared_ptr<FdEntry> f = LookupFd(fd);
  if (!f) return -EBADF;
  if ((read && f->accmode == O_WRONLY) || (!read && f->accmode == O_RDONLY)) return -EACCES;
  Iov* h = (iov->iovh != nullptr && OwnsIov(iov)) ? IovOf(iov, "hf3fs_prep_io") : nullptr;
  std::lock_guard<std::mutex> lk(r->mu);
  if (r->free_slots.empty()) return -EAGAIN;
  const int idx = r->free_slots.back(), e = r->Entries();
  const int32_t head = Load(&r->markers[0]);
  if ((head + 1) % e == Load(&r->markers[1])) return -EAGAIN;  // no SQE room: 3FS's addSqe
  r->free_slots.pop_back();
  IoArgs& a = r->args[idx];
  std::memcpy(a.buf_id, iov->id, sizeof(a.buf_id));
  a.buf_off = buf_off;
  a.file_iid = f->ino;
  a.file_off = off;
  a.io_len = len;
  a.userdata = userdata;
  r->sqes[head] = IoSqe{idx, userdata};
  Store(&r->markers[0], (head + 1) % e);  // the daemon may take it from here, before any submit
  r->slot_iov[static_cast<size_t>(idx)] = h;
  if (h != nullptr) h->pending++;
  g_prepped++;
  return idx;
}

int SubmitIos(const hf3fs_ior* ior) {
  ::sem_post(RingOf(ior, "hf3fs_submit_ios")->submit);
  g_submitted++;
  return 0;
}

int WaitForIos(const hf3fs_ior* ior, hf3fs_cqe* cqes, int cqec, int min_results, const timespec* abs_timeout) {
  if (cqec <= 0) return -EINVAL;
  Ring* r = RingOf(ior, "hf3fs_wait_for_ios");
  RoleGuard role(r->waiting, "hf3fs_wait_for_ios", ior);
  min_results = std::min(min_results, cqec);
  const long jitter = EnvPositive("HF3FS_USRBIO_WAIT_JITTER_MS") ?: 1;
  int filled = 0;
  while (filled < cqec) {
    if (int n = Reap(r, cqes + filled, cqec - filled)) {
      filled += n;
      g_reaped += n;
      g_completed += n;
      g_started += n;
      ::sem_post(r->submit);  // as 3FS's: CQE room came back
      continue;
    }
    if (filled >= min_results) break;
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (abs_timeout != nullptr && (abs_timeout->tv_sec < now.tv_sec ||
                                   (abs_timeout->tv_sec == now.tv_sec && abs_timeout->tv_nsec <= now.tv_nsec)))
      break;
    timespec until = now;
    AbsDeadline(&until, jitter);
    if (abs_timeout != nullptr && until.tv_sec >= abs_timeout->tv_sec) {
      until.tv_sec = abs_timeout->tv_sec;
      until.tv_nsec = std::min(until.tv_nsec, abs_timeout->tv_nsec);
    }
    ::sem_timedwait(r->done, &until);  // whatever it says, the CQEs are looked at again
  }
  return filled;
}

int Hardlink(const char* target, const char* link_name) {
  UniqueFd fd(::open(target, O_RDONLY | O_CLOEXEC));
  if (fd.fd < 0) return errno;
  std::string link(link_name);
  const size_t slash = link.rfind('/');
  const std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : link.substr(0, slash);
  const std::string name = slash == std::string::npos ? link : link.substr(slash + 1);
  struct stat st;
  if (::stat(parent.c_str(), &st) != 0) return errno;
  if (name.size() >= NAME_MAX) return ENAMETOOLONG;
  HardlinkArg arg{};
  arg.ino = st.st_ino;
  std::memcpy(arg.name, name.c_str(), name.size() + 1);
  return ::ioctl(fd.fd, kIocHardlink, &arg) == 0 ? 0 : errno;
}

int Punchhole(int fd, int n, const size_t* start, const size_t* end, size_t flags) {
  auto arg = std::make_unique<PunchHoleArg>();
  arg->n = n;
  arg->flags = flags;
  for (int i = 0; i < n; i++) {
    arg->start[i] = start[i];
    arg->end[i] = end[i];
  }
  return ::ioctl(fd, kIocPunchHole, arg.get()) == 0 ? 0 : errno;
}

}  // namespace proto
}  // namespace standin
