// A test-only FUSE daemon that plays 3FS's side of USRBIO over a backing directory (built by
// test/hf3fs/daemon/build.ts, started by test/hf3fs/daemon/daemon.ts; see README.md here).
// Ordinary file operations pass through to the backing directory; <mount>/3fs-virt holds what 3FS's
// FUSE daemon serves there: iov and ring registration by symlink, the submit semaphores, rm-rf.
#pragma once

#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
#include <semaphore.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace hf3fs_test {

struct Options {
  std::string backing;   // the directory whose files the mount shows
  std::string mount;     // the mount point
  std::string control;   // a directory of fault files, one per client process (faults.cc)
  uint64_t chunk = 512 << 10;  // st_blksize of files and directories: 3FS's chunk size
  int scan_ms = 10;      // how often the watchers scan the rings without a submit
  int workers = 4;       // threads that run ring jobs
};

const Options& options();

// ---------------------------------------------------------------------------------------------
// Inode numbers. Files keep their backing st_ino (3FS: the inode id, which the library takes from
// statx and puts in each IO); the backing root is FUSE_ROOT_ID; virtual entries live above 2^60.
constexpr fuse_ino_t kVirtBase = 0xF000000000000000ull;
constexpr fuse_ino_t kVirtDir = kVirtBase + 1;  // 3fs-virt
constexpr fuse_ino_t kRmRfDir = kVirtBase + 2;
constexpr fuse_ino_t kIovsDir = kVirtBase + 3;
constexpr fuse_ino_t kGetConfDir = kVirtBase + 4;
constexpr fuse_ino_t kSetConfDir = kVirtBase + 5;
constexpr fuse_ino_t kSemBase = kVirtBase + 0x10;      // + priority 0 (high), 1 (normal), 2 (low)
constexpr fuse_ino_t kIovBase = kVirtBase + 0x100000;  // + iov descriptor
constexpr fuse_ino_t kTempBase = kVirtBase + 0x800000000ull;  // answers to rm-rf symlinks

inline bool IsVirtual(fuse_ino_t ino) { return ino >= kVirtBase; }

// ---------------------------------------------------------------------------------------------
// passthrough.cc: the backing files.

void PassthroughInit(const std::string& backing);
// A new O_RDWR (or O_RDONLY) descriptor of a known file inode for ring IO, which the caller
// closes; -1 if the kernel holds no such inode (3FS looks a ring IO's file up the same way).
int IoFdOf(fuse_ino_t ino);
extern const fuse_lowlevel_ops kPassthroughOps;

// ---------------------------------------------------------------------------------------------
// virt.cc: the 3fs-virt tree. Each returns true if `parent`/`ino` was virtual and it replied.

void VirtInit();
void VirtShutdown();
bool VirtLookup(fuse_req_t req, fuse_ino_t parent, const char* name);
bool VirtGetattr(fuse_req_t req, fuse_ino_t ino);
bool VirtReadlink(fuse_req_t req, fuse_ino_t ino);
bool VirtSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name);
bool VirtUnlink(fuse_req_t req, fuse_ino_t parent, const char* name);
bool VirtOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
bool VirtReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
bool VirtReleasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
// Anything else that would change the virtual tree: EPERM, as 3FS answers.
bool VirtRefuse(fuse_req_t req, fuse_ino_t ino);

// A registered iov's memory, for ring IO: `base` is valid while the returned owner lives.
struct IovMemory {
  std::shared_ptr<void> owner;
  uint8_t* base = nullptr;
  size_t size = 0;
  size_t block_size = 0;
  int error = 0;  // EINVAL: unknown id; EPERM: another user's
};
IovMemory FindIov(const uint8_t id[16], uid_t requester);

// ---------------------------------------------------------------------------------------------
// rings.cc: the io rings and the threads that run them.

struct RingAttrs {
  bool for_read = true;
  int io_depth = 0;
  int priority = 1;  // 0 high, 1 normal, 2 low (3FS's order)
  int timeout_ms = 0;
  uint64_t flags = 0;
};
// Entries a ring of `bytes` bytes holds (3FS's ioRingEntries); < 0 if too small.
int RingEntries(size_t bytes);
// Starts serving a mapped ring; returns its handle (0 on failure, with *err set).
int AddRing(std::shared_ptr<void> owner, uint8_t* buf, size_t size, const RingAttrs& attrs, uid_t uid, pid_t tgid,
            int* err);
void RemoveRing(int handle);
// Names the submission semaphores: before the fork, so that the supervisor knows them too.
void RingsName();
void RingsInit();
void RingsShutdown();
// Removes the submission semaphores (ENOENT if gone already).
void RingsUnlink();
// The path of the named semaphore of a priority, as the submit-ios symlinks show it.
std::string SubmitSemPath(int priority);

// ---------------------------------------------------------------------------------------------
// faults.cc: faults a test asks for, per client process.

struct Faults {
  int read_errno = 0;
  int write_errno = 0;
  long delay_us = 0;
};
Faults FaultsFor(pid_t tgid);

}  // namespace hf3fs_test
