// The backing files: lookups keep an O_PATH descriptor per inode (like libfuse's passthrough_ll),
// opens go through /proc/self/fd, and every reply carries 3FS's attributes (FillAttr). The
// 3fs-virt tree is virt.cc's; the ioctls 3FS's library sends are at the end.
#include <dirent.h>
#include <fcntl.h>
#include <linux/limits.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "daemon.h"

namespace hf3fs_test {
namespace {

struct Inode {
  int fd = -1;       // O_PATH
  int io_fd = -1;    // opened on first ring IO, for pread/pwrite
  uint64_t nlookup = 0;
};

std::mutex g_mu;
std::unordered_map<fuse_ino_t, Inode> g_inodes;
int g_root_fd = -1;
ino_t g_root_backing_ino = 0;

std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// The fuse inode number of a backing file.
fuse_ino_t FuseIno(const struct stat& st) { return st.st_ino == g_root_backing_ino ? FUSE_ROOT_ID : st.st_ino; }

int FdOf(fuse_ino_t ino) {
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_inodes.find(ino);
  return it == g_inodes.end() ? -1 : it->second.fd;
}

void Attr(struct stat* st) {
  const bool is_link = S_ISLNK(st->st_mode);
  st->st_ino = FuseIno(*st);
  st->st_blksize = is_link ? 0 : static_cast<blksize_t>(options().chunk);
  if (S_ISREG(st->st_mode)) st->st_blocks = (st->st_size + 511) / 512;  // 3FS: "we don't allow holes"
}

// Looks `name` up under `parent` and counts the lookup; fills `e` for a reply.
int DoLookup(fuse_ino_t parent, const char* name, fuse_entry_param* e) {
  std::memset(e, 0, sizeof(*e));
  int pfd = FdOf(parent);
  if (pfd < 0) return ENOENT;
  int fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno;
  if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
    int err = errno;
    close(fd);
    return err;
  }
  Attr(&e->attr);
  e->ino = e->attr.st_ino;
  e->entry_timeout = 1.0;
  e->attr_timeout = 0;  // ring writes change the length behind the kernel's back
  std::lock_guard<std::mutex> lk(g_mu);
  Inode& in = g_inodes[e->ino];
  if (in.fd < 0) {
    in.fd = fd;
  } else {
    close(fd);
  }
  in.nlookup++;
  return 0;
}

void Forget(fuse_ino_t ino, uint64_t n) {
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_inodes.find(ino);
  if (it == g_inodes.end() || ino == FUSE_ROOT_ID) return;
  it->second.nlookup -= std::min(n, it->second.nlookup);
  if (it->second.nlookup > 0) return;
  close(it->second.fd);
  if (it->second.io_fd >= 0) close(it->second.io_fd);
  g_inodes.erase(it);
}

void ReplyEntry(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_entry_param e;
  int err = DoLookup(parent, name, &e);
  if (err != 0) fuse_reply_err(req, err);
  else fuse_reply_entry(req, &e);
}

void ReplyAttr(fuse_req_t req, fuse_ino_t ino) {
  struct stat st;
  int fd = FdOf(ino);
  if (fd < 0) return (void)fuse_reply_err(req, ENOENT);
  if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return (void)fuse_reply_err(req, errno);
  Attr(&st);
  fuse_reply_attr(req, &st, 0);
}

// ----- operations ------------------------------------------------------------------------------

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (VirtLookup(req, parent, name)) return;
  ReplyEntry(req, parent, name);
}

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t n) {
  if (!IsVirtual(ino)) Forget(ino, n);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; i++)
    if (!IsVirtual(forgets[i].ino)) Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  if (VirtGetattr(req, ino)) return;
  ReplyAttr(req, ino);
}

int SetAttrs(fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  int fd = FdOf(ino);
  if (fd < 0) return ENOENT;
  std::string proc = ProcPath(fd);
  if ((to_set & FUSE_SET_ATTR_MODE) && chmod(proc.c_str(), attr->st_mode) != 0) return errno;
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    uid_t u = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
    gid_t g = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
    if (fchownat(fd, "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno;
  }
  if (to_set & FUSE_SET_ATTR_SIZE) {
    int r = fi != nullptr ? ftruncate(static_cast<int>(fi->fh), attr->st_size) : truncate(proc.c_str(), attr->st_size);
    if (r != 0) return errno;
  }
  if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
    timespec tv[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) tv[0].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_ATIME) tv[0] = attr->st_atim;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) tv[1].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_MTIME) tv[1] = attr->st_mtim;
    if (utimensat(AT_FDCWD, proc.c_str(), tv, 0) != 0) return errno;
  }
  return 0;
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  if (VirtRefuse(req, ino)) return;
  int err = SetAttrs(ino, attr, to_set, fi);
  if (err != 0) return (void)fuse_reply_err(req, err);
  ReplyAttr(req, ino);
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  if (VirtReadlink(req, ino)) return;
  char buf[PATH_MAX + 1];
  ssize_t n = readlinkat(FdOf(ino), "", buf, PATH_MAX);
  if (n < 0) return (void)fuse_reply_err(req, errno);
  buf[n] = '\0';
  fuse_reply_readlink(req, buf);
}

// mkdir, mknod, symlink and link: make it, then answer with a lookup.
void MakeAndReply(fuse_req_t req, fuse_ino_t parent, const char* name, int r) {
  if (r != 0) return (void)fuse_reply_err(req, errno);
  ReplyEntry(req, parent, name);
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  if (VirtRefuse(req, parent)) return;
  MakeAndReply(req, parent, name, mkdirat(FdOf(parent), name, mode));
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  if (VirtRefuse(req, parent)) return;
  MakeAndReply(req, parent, name, mknodat(FdOf(parent), name, mode, rdev));
}

void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  if (VirtSymlink(req, link, parent, name)) return;
  MakeAndReply(req, parent, name, symlinkat(link, FdOf(parent), name));
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name) {
  if (IsVirtual(ino)) return (void)fuse_reply_err(req, EISDIR);
  if (VirtRefuse(req, parent)) return;
  std::string proc = ProcPath(FdOf(ino));
  MakeAndReply(req, parent, name, linkat(AT_FDCWD, proc.c_str(), FdOf(parent), name, AT_SYMLINK_FOLLOW));
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (VirtUnlink(req, parent, name)) return;
  fuse_reply_err(req, unlinkat(FdOf(parent), name, 0) == 0 ? 0 : errno);
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (VirtRefuse(req, parent)) return;
  fuse_reply_err(req, unlinkat(FdOf(parent), name, AT_REMOVEDIR) == 0 ? 0 : errno);
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
              unsigned int flags) {
  if (VirtRefuse(req, parent) || VirtRefuse(req, newparent)) return;
  if (flags != 0) return (void)fuse_reply_err(req, EINVAL);  // 3FS has no RENAME_NOREPLACE/EXCHANGE
  fuse_reply_err(req, renameat(FdOf(parent), name, FdOf(newparent), newname) == 0 ? 0 : errno);
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (IsVirtual(ino)) return (void)fuse_reply_err(req, EISDIR);
  int fd = open(ProcPath(FdOf(ino)).c_str(), (fi->flags & ~O_NOFOLLOW) | O_CLOEXEC);
  if (fd < 0) return (void)fuse_reply_err(req, errno);
  fi->fh = static_cast<uint64_t>(fd);
  fi->direct_io = 1;  // no page cache: ring IO writes the backing file behind the kernel's back
  fuse_reply_open(req, fi);
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  if (VirtRefuse(req, parent)) return;
  int fd = openat(FdOf(parent), name, (fi->flags | O_CREAT) & ~O_NOFOLLOW, mode);
  if (fd < 0) return (void)fuse_reply_err(req, errno);
  fuse_entry_param e;
  int err = DoLookup(parent, name, &e);
  if (err != 0) {
    close(fd);
    return (void)fuse_reply_err(req, err);
  }
  fi->fh = static_cast<uint64_t>(fd);
  fi->direct_io = 1;
  fuse_reply_create(req, &e, fi);
}

void OpRead(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  std::vector<char> buf(size);
  ssize_t n = pread(static_cast<int>(fi->fh), buf.data(), size, off);
  if (n < 0) return (void)fuse_reply_err(req, errno);
  fuse_reply_buf(req, buf.data(), static_cast<size_t>(n));
}

void OpWrite(fuse_req_t req, fuse_ino_t, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  ssize_t n = pwrite(static_cast<int>(fi->fh), buf, size, off);
  if (n < 0) return (void)fuse_reply_err(req, errno);
  fuse_reply_write(req, static_cast<size_t>(n));
}

void OpFlush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  int r = close(dup(static_cast<int>(fi->fh)));
  fuse_reply_err(req, r == 0 ? 0 : errno);
}

void OpRelease(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  close(static_cast<int>(fi->fh));
  fuse_reply_err(req, 0);
}

void OpFsync(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  int fd = static_cast<int>(fi->fh);
  fuse_reply_err(req, (datasync ? fdatasync(fd) : fsync(fd)) == 0 ? 0 : errno);
}

struct DirHandle {
  DIR* dir = nullptr;
  off_t offset = 0;
};

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (VirtOpendir(req, ino, fi)) return;
  int fd = openat(FdOf(ino), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return (void)fuse_reply_err(req, errno);
  auto* d = new DirHandle;
  d->dir = fdopendir(fd);
  if (d->dir == nullptr) {
    int err = errno;
    close(fd);
    delete d;
    return (void)fuse_reply_err(req, err);
  }
  fi->fh = reinterpret_cast<uint64_t>(d);
  fuse_reply_open(req, fi);
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  if (VirtReaddir(req, ino, size, off, fi)) return;
  auto* d = reinterpret_cast<DirHandle*>(fi->fh);
  if (off != d->offset) {
    seekdir(d->dir, off);
    d->offset = off;
  }
  std::vector<char> buf(size);
  size_t used = 0;
  for (;;) {
    errno = 0;
    dirent* ent = readdir(d->dir);
    if (ent == nullptr) break;
    struct stat st{};
    st.st_ino = ent->d_ino;
    st.st_mode = static_cast<mode_t>(ent->d_type) << 12;
    off_t next = telldir(d->dir);
    size_t n = fuse_add_direntry(req, buf.data() + used, size - used, ent->d_name, &st, next);
    if (n > size - used) {
      seekdir(d->dir, d->offset);  // did not fit: the next call starts here
      break;
    }
    used += n;
    d->offset = next;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (VirtReleasedir(req, ino, fi)) return;
  auto* d = reinterpret_cast<DirHandle*>(fi->fh);
  closedir(d->dir);
  delete d;
  fuse_reply_err(req, 0);
}

void OpStatfs(fuse_req_t req, fuse_ino_t) {
  struct statvfs sv;
  if (fstatvfs(g_root_fd, &sv) != 0) return (void)fuse_reply_err(req, errno);
  fuse_reply_statfs(req, &sv);
}

void OpFallocate(fuse_req_t req, fuse_ino_t, int mode, off_t off, off_t len, fuse_file_info* fi) {
  fuse_reply_err(req, fallocate(static_cast<int>(fi->fh), mode, off, len) == 0 ? 0 : errno);
}

void OpLseek(fuse_req_t req, fuse_ino_t, off_t off, int whence, fuse_file_info* fi) {
  off_t r = lseek(static_cast<int>(fi->fh), off, whence);
  if (r < 0) return (void)fuse_reply_err(req, errno);
  fuse_reply_lseek(req, r);
}

// ----- ioctls: the requests 3FS's library and tools send -----------------------------------------

constexpr unsigned kIocGetMountName = 0x80206800;  // _IOR('h', 0, char[32])
constexpr unsigned kIocGetPathOffset = 0x80046801;  // _IOR('h', 1, uint32_t)
constexpr unsigned kIocGetMagicNum = 0x80046802;    // _IOR('h', 2, uint32_t)
constexpr unsigned kIocGetVersion = 0x80046803;     // _IOR('h', 3, uint32_t)
constexpr unsigned kIocFsync = 0x8004680b;          // _IOR('h', 11, uint32_t)
constexpr unsigned kIocHardlink = 0x4108680c;       // _IOW('h', 12, {ino_t; char[NAME_MAX]})
constexpr unsigned kIocPunchHole = 0x7e90680d;      // _IOW('h', 13, {int; size_t; size_t[1000] x2})
constexpr uint32_t kSuperMagic = 0x8f3f5fff;
constexpr int kPunchHoleMax = 1000;

struct HardlinkArg {
  ino_t ino;
  char name[NAME_MAX];
};
struct PunchHoleArg {
  int n;
  size_t flags;
  size_t start[kPunchHoleMax];
  size_t end[kPunchHoleMax];
};
static_assert(sizeof(HardlinkArg) == 264 && sizeof(PunchHoleArg) == 16016, "3FS's ioctl argument layouts");

void ReplyU32(fuse_req_t req, uint32_t v) { fuse_reply_ioctl(req, 0, &v, sizeof(v)); }

void Hardlink(fuse_req_t req, fuse_ino_t ino, const void* in, size_t in_size) {
  if (in_size < sizeof(HardlinkArg)) return (void)fuse_reply_err(req, EINVAL);
  const auto* a = static_cast<const HardlinkArg*>(in);
  std::string name(a->name, strnlen(a->name, sizeof(a->name)));
  int pfd = FdOf(a->ino == g_root_backing_ino ? FUSE_ROOT_ID : a->ino);
  if (pfd < 0) return (void)fuse_reply_err(req, ENOENT);
  std::string proc = ProcPath(FdOf(ino));
  int r = linkat(AT_FDCWD, proc.c_str(), pfd, name.c_str(), AT_SYMLINK_FOLLOW);
  if (r != 0) return (void)fuse_reply_err(req, errno);
  fuse_reply_ioctl(req, 0, nullptr, 0);
}

// 3FS removes whole chunks: every range must be chunk-aligned, checked before anything is removed.
void PunchHole(fuse_req_t req, fuse_file_info* fi, const void* in, size_t in_size) {
  if (in_size < sizeof(PunchHoleArg)) return (void)fuse_reply_err(req, EINVAL);
  const auto* a = static_cast<const PunchHoleArg*>(in);
  const uint64_t chunk = options().chunk;
  if (a->n < 0 || a->n > kPunchHoleMax) return (void)fuse_reply_err(req, EINVAL);
  for (int i = 0; i < a->n; i++)
    if (a->start[i] % chunk != 0 || a->end[i] % chunk != 0) return (void)fuse_reply_err(req, EINVAL);
  for (int i = 0; i < a->n; i++) {
    if (a->end[i] <= a->start[i]) continue;
    int r = fallocate(static_cast<int>(fi->fh), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      static_cast<off_t>(a->start[i]), static_cast<off_t>(a->end[i] - a->start[i]));
    if (r != 0) return (void)fuse_reply_err(req, errno);
  }
  fuse_reply_ioctl(req, 0, nullptr, 0);
}

void OpIoctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void*, fuse_file_info* fi, unsigned flags,
             const void* in, size_t in_size, size_t out_size) {
  if (flags & FUSE_IOCTL_COMPAT) return (void)fuse_reply_err(req, ENOSYS);
  const bool reads = (cmd >> 30) & 2;
  if (reads && out_size < 4) return (void)fuse_reply_err(req, EINVAL);
  switch (cmd) {
    case kIocGetMagicNum: return ReplyU32(req, kSuperMagic);
    case kIocGetVersion: return ReplyU32(req, 1);
    case kIocGetPathOffset: return ReplyU32(req, static_cast<uint32_t>(options().mount.size()));
    case kIocGetMountName: {
      char name[32] = "hf3fs-test";
      return (void)fuse_reply_ioctl(req, 0, name, sizeof(name));
    }
    case kIocFsync:
      if (fsync(static_cast<int>(fi->fh)) != 0) return (void)fuse_reply_err(req, errno);
      return (void)fuse_reply_ioctl(req, 0, nullptr, 0);
    case kIocHardlink: return Hardlink(req, ino, in, in_size);
    case kIocPunchHole: return PunchHole(req, fi, in, in_size);
    default: return (void)fuse_reply_err(req, EINVAL);  // as 3FS answers an ioctl it does not know
  }
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops{};
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetattr;
  ops.setattr = OpSetattr;
  ops.readlink = OpReadlink;
  ops.mknod = OpMknod;
  ops.mkdir = OpMkdir;
  ops.unlink = OpUnlink;
  ops.rmdir = OpRmdir;
  ops.symlink = OpSymlink;
  ops.rename = OpRename;
  ops.link = OpLink;
  ops.open = OpOpen;
  ops.read = OpRead;
  ops.write = OpWrite;
  ops.flush = OpFlush;
  ops.release = OpRelease;
  ops.fsync = OpFsync;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.releasedir = OpReleasedir;
  ops.statfs = OpStatfs;
  ops.create = OpCreate;
  ops.ioctl = OpIoctl;
  ops.fallocate = OpFallocate;
  ops.lseek = OpLseek;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops kPassthroughOps = MakeOps();

void PassthroughInit(const std::string& backing) {
  g_root_fd = open(backing.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  struct stat st;
  if (g_root_fd < 0 || fstat(g_root_fd, &st) != 0) {
    std::perror(backing.c_str());
    std::exit(2);
  }
  g_root_backing_ino = st.st_ino;
  Inode root;
  root.fd = g_root_fd;
  root.nlookup = 1;
  g_inodes[FUSE_ROOT_ID] = root;
}

int IoFdOf(fuse_ino_t ino) {
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_inodes.find(ino);
  if (it == g_inodes.end() || ino == FUSE_ROOT_ID) return -1;
  Inode& in = it->second;
  if (in.io_fd < 0) {
    std::string proc = ProcPath(in.fd);
    in.io_fd = open(proc.c_str(), O_RDWR | O_CLOEXEC);
    if (in.io_fd < 0) in.io_fd = open(proc.c_str(), O_RDONLY | O_CLOEXEC);
  }
  return in.io_fd < 0 ? -1 : fcntl(in.io_fd, F_DUPFD_CLOEXEC, 0);
}

}  // namespace hf3fs_test
