// Shared by the two halves of the test-only USRBIO stand-in (build.ts builds both into one
// libhf3fs_api_shared.so): usrbio_standin.cc (the C ABI, and the in-process mode) and
// usrbio_protocol.cc (3FS's client side of the protocol, against a FUSE daemon's mount).
#pragma once

#include <sys/random.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "usrbio.h"

#define STANDIN_EXPORT extern "C" __attribute__((visibility("default")))

STANDIN_EXPORT size_t hf3fs_ior_size(int entries);

namespace standin {

[[noreturn]] __attribute__((format(printf, 1, 2))) void Die(const char* fmt, ...);

// Runs f, turning any C++ exception (std::bad_alloc, std::system_error from std::thread) into
// `fallback`: nothing may unwind through a C caller.
template <class R, class F>
R Guarded(R fallback, F&& f) noexcept {
  try {
    return f();
  } catch (...) {
    return fallback;
  }
}
template <class F>
void GuardedVoid(const char* what, F&& f) noexcept {
  try {
    f();
  } catch (...) {
    std::fprintf(stderr, "[hf3fs-standin] %s: internal error (exception)\n", what);
  }
}

// A positive integer from the environment, 0 when unset or not a positive number.
long EnvPositive(const char* name);
std::string RealPath(const std::string& p);
// Canonical form of a path that may not exist yet (realpath of its longest existing prefix).
std::string CanonicalPrefix(const char* path);
bool IsUnder(const std::string& path, const std::string& mp);

struct UniqueFd {
  int fd = -1;
  explicit UniqueFd(int f) : fd(f) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() {
    if (fd >= 0) ::close(fd);
  }
};

// Boost-style uuid text: lower-case hyphenated 8-4-4-4-12.
struct Uuid {
  uint8_t b[16];
  static Uuid Random() {
    Uuid u{};
    size_t got = 0;
    while (got < sizeof(u.b)) {
      ssize_t n = ::getrandom(u.b + got, sizeof(u.b) - got, 0);
      if (n > 0) got += static_cast<size_t>(n);
      else if (n < 0 && errno != EINTR) Die("getrandom failed: %s", std::strerror(errno));
    }
    u.b[6] = static_cast<uint8_t>((u.b[6] & 0x0f) | 0x40);  // version 4
    u.b[8] = static_cast<uint8_t>((u.b[8] & 0x3f) | 0x80);  // RFC 4122 variant
    return u;
  }
  std::string Text() const {
    static const char* hex = "0123456789abcdef";
    std::string s;
    for (int i = 0; i < 16; i++) {
      if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
      s += hex[b[i] >> 4];
      s += hex[b[i] & 15];
    }
    return s;
  }
};

// One registration. The dup keeps the file open while IOs that captured it are in flight, even
// after hf3fs_dereg_fd (3FS keeps the inode referenced the same way).
struct FdEntry {
  int orig = -1;
  int dup = -1;
  int accmode = 0;
  ino_t ino = 0;
  ~FdEntry() {
    if (dup >= 0) ::close(dup);
  }
};

struct FdTable {
  std::mutex mu;
  std::unordered_map<int, std::shared_ptr<FdEntry>> by_orig;
  std::unordered_map<int, int> dup_to_orig;
};

// Clears `flag` on scope exit; aborts if it was already set (a second thread is in the same role).
class RoleGuard {
 public:
  RoleGuard(std::atomic<bool>& flag, const char* who, const void* ior) : flag_(flag) {
    if (flag_.exchange(true, std::memory_order_acq_rel))
      Die("%s: two threads used ring %p at once; USRBIO allows one preparing and one waiting thread per ring",
          who, ior);
  }
  ~RoleGuard() { flag_.store(false, std::memory_order_release); }
  RoleGuard(const RoleGuard&) = delete;
  RoleGuard& operator=(const RoleGuard&) = delete;

 private:
  std::atomic<bool>& flag_;
};

FdTable& Fds();
// The real library sizes its fd table to the RLIMIT_NOFILE hard max when it loads.
int MaxFds();
// prep_io and punchhole use abs(fd), so both the original fd and reg_fd's -dupfd are accepted.
std::shared_ptr<FdEntry> LookupFd(int fd);

constexpr uint32_t kLive = 0x11fe11fe;
constexpr uint32_t kDead = 0xdeadd00d;

// Statistics (hf3fs_standin_stats), counted by both modes.
extern std::atomic<long long> g_prepped, g_submitted, g_started, g_completed, g_reaped, g_live_iovs, g_live_rings;

// ----- usrbio_protocol.cc: the protocol mode, on a fuse.hf3fs mount --------------------------
namespace proto {

// The fuse.hf3fs mounts with a 3fs-virt directory in /proc/self/mountinfo (any file system type
// with HF3FS_USRBIO_DONT_CHECKFS_FOR_MP=yes), canonical.
std::vector<std::string> Mounts();
bool IsMountPoint(const char* mp);
// ioctl(HF3FS_IOC_GET_MAGIC_NUM) answers HF3FS_SUPER_MAGIC.
bool IsHf3fs(int fd);
int IovCreate(hf3fs_iov* iov, const char* mp, size_t size, size_t block_size, int numa);
// True if the iov or ring was made by this mode.
bool OwnsIov(const hf3fs_iov* iov);
bool OwnsRing(const hf3fs_ior* ior);
void IovUnlink(hf3fs_iov* iov);
void IovDestroy(hf3fs_iov* iov);
int IorCreate(hf3fs_ior* ior, const char* mp, int entries, bool for_read, int io_depth, int priority, int timeout,
              int numa, uint64_t flags);
void IorDestroy(hf3fs_ior* ior);
int IoEntries(const hf3fs_ior* ior);
int PrepIo(const hf3fs_ior* ior, const hf3fs_iov* iov, bool read, void* ptr, int fd, size_t off, uint64_t len,
           const void* userdata);
int SubmitIos(const hf3fs_ior* ior);
int WaitForIos(const hf3fs_ior* ior, hf3fs_cqe* cqes, int cqec, int min_results, const timespec* abs_timeout);
int Hardlink(const char* target, const char* link_name);
int Punchhole(int fd, int n, const size_t* start, const size_t* end, size_t flags);

}  // namespace proto
}  // namespace standin
