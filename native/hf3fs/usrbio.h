// 3FS's USRBIO C ABI, declared from its documented header (hf3fs_usrbio.h) so the addon builds
// without 3FS installed and loads the library at run time. The struct layouts are checked at
// compile time against the sizes and offsets of x86_64 builds.
//
// Return conventions differ from call to call:
//   iovcreate / iorcreate*      0 or -errno
//   prep_io                     slot index >= 0 or -errno (-EAGAIN: the ring is full)
//   wait_for_ios                CQEs filled (0 on timeout) or -errno
//   reg_fd                      <= 0 on success (minus a dup'd fd), a positive errno on failure
//   hardlink / punchhole        0 or a positive errno
//   CQE result                  bytes moved or -errno
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
#include <cstddef>
extern "C" {
#endif

#define HF3FS_SUPER_MAGIC 0x8f3f5fff
#define HF3FS_IOR_ALLOW_READ_UNCOMMITTED 1
#define HF3FS_IOR_FORBID_READ_HOLES 2
// ioctls on any file of a 3FS mount: _IOR('h', 2, uint32_t) answers HF3FS_SUPER_MAGIC;
// _IOR('h', 11, uint32_t) settles the file's length on the meta service (what stat will see).
#define HF3FS_IOC_GET_MAGIC_NUM 0x80046802u
#define HF3FS_IOC_FSYNC 0x8004680bu
// hf3fs_punchhole takes at most this many ranges per call.
#define HF3FS_PUNCH_HOLE_MAX 1000

typedef void* hf3fs_iov_handle;
typedef void* hf3fs_ior_handle;

struct hf3fs_iov {
  uint8_t* base;
  hf3fs_iov_handle iovh;
  char id[16];
  char mount_point[256];
  size_t size;
  size_t block_size;
  int numa;
};

struct hf3fs_ior {
  struct hf3fs_iov iov;
  hf3fs_ior_handle iorh;
  char mount_point[256];
  bool for_read;
  int io_depth;
  int priority;
  int timeout;
  uint64_t flags;
};

struct hf3fs_cqe {
  int32_t index;
  int32_t reserved;
  int64_t result;
  const void* userdata;
};

// The functions, as pointer types: the library is opened with dlopen, never linked.
typedef bool (*hf3fs_is_hf3fs_fn)(int fd);
typedef int (*hf3fs_extract_mount_point_fn)(char* hf3fs_mount_point, int size, const char* path);
typedef int (*hf3fs_iovcreate_fn)(struct hf3fs_iov* iov, const char* hf3fs_mount_point, size_t size,
                                  size_t block_size, int numa);
typedef void (*hf3fs_iovunlink_fn)(struct hf3fs_iov* iov);
typedef void (*hf3fs_iovdestroy_fn)(struct hf3fs_iov* iov);
typedef size_t (*hf3fs_ior_size_fn)(int entries);
typedef int (*hf3fs_iorcreate4_fn)(struct hf3fs_ior* ior, const char* hf3fs_mount_point, int entries, bool for_read,
                                   int io_depth, int timeout, int numa, uint64_t flags);
typedef void (*hf3fs_iordestroy_fn)(struct hf3fs_ior* ior);
typedef int (*hf3fs_reg_fd_fn)(int fd, uint64_t flags);
typedef void (*hf3fs_dereg_fd_fn)(int fd);
typedef int (*hf3fs_io_entries_fn)(const struct hf3fs_ior* ior);
typedef int (*hf3fs_prep_io_fn)(const struct hf3fs_ior* ior, const struct hf3fs_iov* iov, bool read, void* ptr, int fd,
                                size_t off, uint64_t len, const void* userdata);
typedef int (*hf3fs_submit_ios_fn)(const struct hf3fs_ior* ior);
typedef int (*hf3fs_wait_for_ios_fn)(const struct hf3fs_ior* ior, struct hf3fs_cqe* cqes, int cqec, int min_results,
                                     const struct timespec* abs_timeout);
typedef int (*hf3fs_hardlink_fn)(const char* target, const char* link_name);
typedef int (*hf3fs_punchhole_fn)(int fd, int n, const size_t* start, const size_t* end, size_t flags);

#ifdef __cplusplus
}  // extern "C"

#if defined(__x86_64__)
static_assert(sizeof(hf3fs_iov) == 312, "hf3fs_iov layout");
static_assert(offsetof(hf3fs_iov, id) == 16 && offsetof(hf3fs_iov, mount_point) == 32, "hf3fs_iov layout");
static_assert(offsetof(hf3fs_iov, size) == 288 && offsetof(hf3fs_iov, block_size) == 296, "hf3fs_iov layout");
static_assert(offsetof(hf3fs_iov, numa) == 304, "hf3fs_iov layout");
static_assert(sizeof(hf3fs_ior) == 600, "hf3fs_ior layout");
static_assert(offsetof(hf3fs_ior, iorh) == 312 && offsetof(hf3fs_ior, mount_point) == 320, "hf3fs_ior layout");
static_assert(offsetof(hf3fs_ior, for_read) == 576 && offsetof(hf3fs_ior, io_depth) == 580, "hf3fs_ior layout");
static_assert(offsetof(hf3fs_ior, priority) == 584 && offsetof(hf3fs_ior, timeout) == 588, "hf3fs_ior layout");
static_assert(offsetof(hf3fs_ior, flags) == 592, "hf3fs_ior layout");
static_assert(sizeof(hf3fs_cqe) == 24, "hf3fs_cqe layout");
static_assert(offsetof(hf3fs_cqe, result) == 8 && offsetof(hf3fs_cqe, userdata) == 16, "hf3fs_cqe layout");
#endif
#endif
