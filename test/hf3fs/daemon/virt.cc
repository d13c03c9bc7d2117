// <mount>/3fs-virt, as 3FS's FUSE daemon serves it:
//   iovs/      symlink(/dev/shm/<shm>, iovs/<uuid>[.b<block>][.r|.w<depth>][.p<h|l|n>][.t<ms>][.f<binary flags>])
//              maps the shared memory at once and registers it (a ring: starts serving it);
//              unlink(iovs/<exact key>) unregisters; submit-ios{.ph,,.pl} link to the named
//              semaphores a library posts to submit; a list shows the caller's own entries.
//              When the last descriptor of an iovs directory opened by a thread closes, every
//              entry that thread registered goes (3FS's crash cleanup).
//   rm-rf/     symlink(<path on this mount>, rm-rf/<name>) removes the path recursively.
//   get-conf/, set-conf/  present and empty (no configuration is modelled).
#include <fcntl.h>
#include <ftw.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "daemon.h"

namespace hf3fs_test {
namespace {

struct Mapping {
  uint8_t* base = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (base != nullptr) munmap(base, size);
  }
};

struct IovEntry {
  std::string key;
  std::array<uint8_t, 16> id{};
  std::string target;
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;  // the registering thread (fuse_req_ctx's pid is a thread id)
  size_t block_size = 0;
  std::shared_ptr<Mapping> mem;
  int ring = 0;  // its ring handle, 0 for a data iov
};

std::mutex g_mu;
std::vector<std::shared_ptr<IovEntry>> g_iovs;  // by descriptor; null = free
std::map<std::string, int> g_by_key;
std::map<std::array<uint8_t, 16>, int> g_by_id;
std::atomic<uint64_t> g_temp_ino{0};

const char* const kSemNames[3] = {"submit-ios.ph", "submit-ios", "submit-ios.pl"};
struct TopDir {
  const char* name;
  fuse_ino_t ino;
  mode_t mode;
};
const TopDir kTopDirs[] = {{"rm-rf", kRmRfDir, 0777}, {"iovs", kIovsDir, 0777}, {"get-conf", kGetConfDir, 0555},
                           {"set-conf", kSetConfDir, 0777}};

// ----- attributes -----------------------------------------------------------------------------

struct stat DirAttr(fuse_ino_t ino, mode_t mode) {
  struct stat st{};
  st.st_ino = ino;
  st.st_mode = S_IFDIR | mode;
  st.st_nlink = 2;
  st.st_blksize = static_cast<blksize_t>(options().chunk);
  return st;
}

struct stat LinkAttr(fuse_ino_t ino, const std::string& target, mode_t mode, uid_t uid, gid_t gid) {
  struct stat st{};
  st.st_ino = ino;
  st.st_mode = S_IFLNK | mode;
  st.st_nlink = 1;
  st.st_uid = uid;
  st.st_gid = gid;
  st.st_size = static_cast<off_t>(target.size());
  return st;
}

void ReplyEntry(fuse_req_t req, const struct stat& st) {
  fuse_entry_param e{};
  e.ino = st.st_ino;
  e.attr = st;
  fuse_reply_entry(req, &e);  // timeouts 0: every use comes back here
}

std::optional<struct stat> DirAttrOf(fuse_ino_t ino) {
  if (ino == kVirtDir) return DirAttr(ino, 0555);
  for (const TopDir& d : kTopDirs)
    if (d.ino == ino) return DirAttr(ino, d.mode);
  return std::nullopt;
}

int SemPriority(const char* name) {
  for (int p = 0; p < 3; p++)
    if (std::strcmp(name, kSemNames[p]) == 0) return p;
  return -1;
}

struct stat SemAttr(int p) { return LinkAttr(kSemBase + p, SubmitSemPath(p), 0666, 0, 0); }
struct stat IovAttr(int iovd, const IovEntry& e) { return LinkAttr(kIovBase + iovd, e.target, 0400, e.uid, e.gid); }

// ----- the key grammar ------------------------------------------------------------------------

struct Key {
  std::array<uint8_t, 16> id{};
  size_t block_size = 0;
  bool ring = false;
  bool ring_attrs = false;  // .t, .f or .p seen
  RingAttrs attrs;
};

// A uuid as 32 hex digits, with or without the four hyphens of the 8-4-4-4-12 form.
bool ParseUuid(const std::string& s, std::array<uint8_t, 16>* out) {
  std::string hex;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '-' && s.size() == 36 && (i == 8 || i == 13 || i == 18 || i == 23)) continue;
    if (!std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
    hex += s[i];
  }
  if (hex.size() != 32) return false;
  for (int i = 0; i < 16; i++) (*out)[i] = static_cast<uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
  return true;
}

// Digits only, in `base`, no sign; nullopt if empty, not all digits, or too big.
std::optional<uint64_t> ParseDigits(const std::string& s, int base, uint64_t max) {
  if (s.empty() || s.size() > 64) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    int d = c - '0';
    if (d < 0 || d >= base) return std::nullopt;
    if (v > (max - static_cast<uint64_t>(d)) / static_cast<uint64_t>(base)) return std::nullopt;
    v = v * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
  }
  return v;
}

bool ParseAttr(const std::string& part, Key* k) {
  const std::string rest = part.substr(1);
  switch (part[0]) {
    case 'b': {
      auto v = ParseDigits(rest, 10, UINT64_MAX);
      if (!v || *v == 0) return false;
      k->block_size = *v;
      return true;
    }
    case 'r':
    case 'w': {  // the depth is not negative: 3FS refuses ".r-1"
      auto v = ParseDigits(rest, 10, INT32_MAX);
      if (!v) return false;
      k->ring = true;
      k->attrs.for_read = part[0] == 'r';
      k->attrs.io_depth = static_cast<int>(*v);
      return true;
    }
    case 't': {
      auto v = ParseDigits(rest, 10, INT32_MAX);
      if (!v) return false;
      k->ring_attrs = true;
      k->attrs.timeout_ms = static_cast<int>(*v);
      return true;
    }
    case 'f': {  // binary, as the library writes it at creation
      auto v = ParseDigits(rest, 2, UINT64_MAX);
      if (!v) return false;
      k->ring_attrs = true;
      k->attrs.flags = *v;
      return true;
    }
    case 'p': {
      k->ring_attrs = true;
      if (rest == "h") k->attrs.priority = 0;
      else if (rest == "l") k->attrs.priority = 2;
      else if (rest == "n" || rest.empty()) k->attrs.priority = 1;
      else return false;
      return true;
    }
    default:
      return false;
  }
}

std::optional<Key> ParseKey(const std::string& key) {
  Key k;
  size_t pos = 0;
  std::vector<std::string> parts;
  for (;;) {
    size_t dot = key.find('.', pos);
    parts.push_back(key.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos));
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  if (!ParseUuid(parts[0], &k.id)) return std::nullopt;
  for (size_t i = 1; i < parts.size(); i++)
    if (parts[i].empty() || !ParseAttr(parts[i], &k)) return std::nullopt;
  if (k.ring_attrs && !k.ring) return std::nullopt;  // ".t/.f/.p" only on a ring
  return k;
}

// ----- registration -------------------------------------------------------------------------

pid_t TgidOf(pid_t tid) {
  std::ifstream f("/proc/" + std::to_string(tid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("Tgid:", 0) == 0) return static_cast<pid_t>(std::stol(line.substr(5)));
  return tid;
}

// Maps the shared memory behind `target`, which must be a /dev/shm file.
int MapShm(const std::string& target, size_t size, std::shared_ptr<Mapping>* out) {
  if (target.rfind("/dev/shm/", 0) != 0 || target.find("/..") != std::string::npos) return EACCES;
  int fd = open(target.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return EACCES;
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return EACCES;
  auto m = std::make_shared<Mapping>();
  m->base = static_cast<uint8_t*>(p);
  m->size = size;
  *out = std::move(m);
  return 0;
}

// The symlink handler of iovs/: 0 and the entry's attributes, or an errno.
int Register(const fuse_ctx* ctx, const char* target, const char* name, struct stat* attr) {
  std::optional<Key> k = ParseKey(name);
  if (!k) return EINVAL;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    if (g_by_key.count(name) || g_by_id.count(k->id)) return EEXIST;
  }
  struct stat st;
  if (stat(target, &st) != 0 || !S_ISREG(st.st_mode)) return EINVAL;
  const size_t size = static_cast<size_t>(st.st_size);
  if (k->block_size > size) return EINVAL;
  if (k->ring && k->attrs.io_depth > RingEntries(size)) return EINVAL;
  auto e = std::make_shared<IovEntry>();
  if (int err = MapShm(target, size, &e->mem)) return err;
  e->key = name;
  e->id = k->id;
  e->target = target;
  e->uid = ctx->uid;
  e->gid = ctx->gid;
  e->pid = ctx->pid;
  e->block_size = k->block_size != 0 ? k->block_size : size;
  if (k->ring) {
    int err = 0;
    e->ring = AddRing(e->mem, e->mem->base, size, k->attrs, ctx->uid, TgidOf(ctx->pid), &err);
    if (e->ring == 0) return err;
  }
  std::lock_guard<std::mutex> lk(g_mu);
  if (g_by_key.count(name) || g_by_id.count(k->id)) {
    if (e->ring) RemoveRing(e->ring);
    return EEXIST;
  }
  int iovd = 0;
  while (iovd < static_cast<int>(g_iovs.size()) && g_iovs[static_cast<size_t>(iovd)]) iovd++;
  if (iovd == static_cast<int>(g_iovs.size())) g_iovs.emplace_back();
  g_iovs[static_cast<size_t>(iovd)] = e;
  g_by_key[e->key] = iovd;
  g_by_id[e->id] = iovd;
  *attr = IovAttr(iovd, *e);
  return 0;
}

// With g_mu held: forgets entry `iovd` and stops its ring.
void RemoveLocked(int iovd) {
  std::shared_ptr<IovEntry> e = std::move(g_iovs[static_cast<size_t>(iovd)]);
  g_by_key.erase(e->key);
  g_by_id.erase(e->id);
  if (e->ring) RemoveRing(e->ring);  // the ring's jobs in flight keep the mapping until they finish
}

int Unregister(const fuse_ctx* ctx, const char* name) {
  if (SemPriority(name) >= 0) return EPERM;
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_by_key.find(name);
  if (it == g_by_key.end()) return ENOENT;
  if (g_iovs[static_cast<size_t>(it->second)]->uid != ctx->uid) return EPERM;
  RemoveLocked(it->second);
  return 0;
}

// The iov with descriptor `iovd` if the caller may see it.
std::shared_ptr<IovEntry> IovFor(fuse_ino_t ino, uid_t uid, int* err) {
  const uint64_t iovd = ino - kIovBase;
  std::lock_guard<std::mutex> lk(g_mu);
  if (iovd >= g_iovs.size() || !g_iovs[iovd]) {
    *err = ENOENT;
    return nullptr;
  }
  if (g_iovs[iovd]->uid != uid) {
    *err = EPERM;
    return nullptr;
  }
  return g_iovs[iovd];
}

// ----- rm-rf ----------------------------------------------------------------------------------

int RemoveOne(const char* path, const struct stat*, int flag, FTW*) {
  return (flag == FTW_DP ? rmdir(path) : unlink(path)) == 0 ? 0 : errno;
}

// symlink(<absolute path on this mount>, rm-rf/<name>): removes the path and all below it.
int RemoveTree(const char* link) {
  std::string p(link);
  const std::string& mp = options().mount;
  if (p.empty() || p[0] != '/') return EINVAL;
  if (p.compare(0, mp.size(), mp) != 0 || (p.size() > mp.size() && p[mp.size()] != '/')) return EINVAL;
  std::string rel = p.substr(mp.size());
  if (rel.empty() || rel == "/" || rel.find("/..") != std::string::npos || rel.rfind("/3fs-virt", 0) == 0) return EINVAL;
  std::string backing = options().backing + rel;
  struct stat st;
  if (lstat(backing.c_str(), &st) != 0) return errno;
  return nftw(backing.c_str(), RemoveOne, 16, FTW_DEPTH | FTW_PHYS);
}

struct VirtDirHandle {
  pid_t pid;
  bool iovs;
};

}  // namespace

// ----- the operations ---------------------------------------------------------------------------

bool VirtLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (parent == FUSE_ROOT_ID && std::strcmp(name, "3fs-virt") == 0) {
    ReplyEntry(req, *DirAttrOf(kVirtDir));
    return true;
  }
  if (!IsVirtual(parent)) return false;
  if (parent == kVirtDir) {
    for (const TopDir& d : kTopDirs)
      if (std::strcmp(d.name, name) == 0) return ReplyEntry(req, DirAttr(d.ino, d.mode)), true;
  } else if (parent == kIovsDir) {
    if (int p = SemPriority(name); p >= 0) return ReplyEntry(req, SemAttr(p)), true;
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_by_key.find(name);
    if (it != g_by_key.end()) {
      const IovEntry& e = *g_iovs[static_cast<size_t>(it->second)];
      if (e.uid != fuse_req_ctx(req)->uid) return fuse_reply_err(req, EPERM), true;
      return ReplyEntry(req, IovAttr(it->second, e)), true;
    }
  }
  fuse_reply_err(req, ENOENT);
  return true;
}

bool VirtGetattr(fuse_req_t req, fuse_ino_t ino) {
  if (!IsVirtual(ino)) return false;
  if (auto st = DirAttrOf(ino)) return fuse_reply_attr(req, &*st, 0), true;
  if (ino >= kSemBase && ino < kSemBase + 3) {
    struct stat st = SemAttr(static_cast<int>(ino - kSemBase));
    return fuse_reply_attr(req, &st, 0), true;
  }
  if (ino >= kTempBase) return fuse_reply_err(req, ENOENT), true;
  int err = 0;
  auto e = IovFor(ino, fuse_req_ctx(req)->uid, &err);
  if (!e) return fuse_reply_err(req, err), true;
  struct stat st = IovAttr(static_cast<int>(ino - kIovBase), *e);
  fuse_reply_attr(req, &st, 0);
  return true;
}

bool VirtReadlink(fuse_req_t req, fuse_ino_t ino) {
  if (!IsVirtual(ino)) return false;
  if (ino >= kSemBase && ino < kSemBase + 3) {
    return fuse_reply_readlink(req, SubmitSemPath(static_cast<int>(ino - kSemBase)).c_str()), true;
  }
  if (ino < kIovBase || ino >= kTempBase) return fuse_reply_err(req, EINVAL), true;
  int err = 0;
  auto e = IovFor(ino, fuse_req_ctx(req)->uid, &err);
  if (!e) return fuse_reply_err(req, err), true;
  fuse_reply_readlink(req, e->target.c_str());
  return true;
}

bool VirtSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  if (!IsVirtual(parent)) return false;
  if (parent == kIovsDir) {
    struct stat attr;
    int err = Register(fuse_req_ctx(req), link, name, &attr);
    if (err != 0) return fuse_reply_err(req, err), true;
    return ReplyEntry(req, attr), true;
  }
  if (parent == kRmRfDir) {
    int err = RemoveTree(link);
    if (err != 0) return fuse_reply_err(req, err), true;
    return ReplyEntry(req, LinkAttr(kTempBase + g_temp_ino++, link, 0777, 0, 0)), true;
  }
  fuse_reply_err(req, EPERM);
  return true;
}

bool VirtUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (!IsVirtual(parent)) return false;
  fuse_reply_err(req, parent == kIovsDir ? Unregister(fuse_req_ctx(req), name) : EPERM);
  return true;
}

bool VirtOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (!IsVirtual(ino)) return false;
  if (!DirAttrOf(ino)) return fuse_reply_err(req, ENOTDIR), true;
  fi->fh = reinterpret_cast<uint64_t>(new VirtDirHandle{fuse_req_ctx(req)->pid, ino == kIovsDir});
  fuse_reply_open(req, fi);
  return true;
}

bool VirtReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  if (!IsVirtual(ino)) return false;
  std::vector<std::pair<std::string, struct stat>> all;
  if (ino == kVirtDir) {
    for (const TopDir& d : kTopDirs) all.emplace_back(d.name, DirAttr(d.ino, d.mode));
  } else if (ino == kIovsDir) {
    for (int p = 0; p < 3; p++) all.emplace_back(kSemNames[p], SemAttr(p));
    std::lock_guard<std::mutex> lk(g_mu);
    for (size_t i = 0; i < g_iovs.size(); i++)
      if (g_iovs[i] && g_iovs[i]->uid == fuse_req_ctx(req)->uid) all.emplace_back(g_iovs[i]->key, IovAttr(static_cast<int>(i), *g_iovs[i]));
  }
  std::vector<char> buf(size);
  size_t used = 0;
  for (size_t i = static_cast<size_t>(off); i < all.size(); i++) {
    size_t n = fuse_add_direntry(req, buf.data() + used, size - used, all[i].first.c_str(), &all[i].second,
                                 static_cast<off_t>(i + 1));
    if (n > size - used) break;
    used += n;
  }
  fuse_reply_buf(req, buf.data(), used);
  return true;
}

bool VirtReleasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (!IsVirtual(ino)) return false;
  auto* h = reinterpret_cast<VirtDirHandle*>(fi->fh);
  if (h->iovs) {  // the last holder of an iovs descriptor is gone: so is what its opener registered
    std::lock_guard<std::mutex> lk(g_mu);
    for (size_t i = 0; i < g_iovs.size(); i++)
      if (g_iovs[i] && g_iovs[i]->pid == h->pid) RemoveLocked(static_cast<int>(i));
  }
  delete h;
  fuse_reply_err(req, 0);
  return true;
}

bool VirtRefuse(fuse_req_t req, fuse_ino_t ino) {
  if (!IsVirtual(ino)) return false;
  fuse_reply_err(req, EPERM);
  return true;
}

IovMemory FindIov(const uint8_t id[16], uid_t requester) {
  IovMemory m;
  std::array<uint8_t, 16> key;
  std::memcpy(key.data(), id, 16);
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_by_id.find(key);
  if (it == g_by_id.end()) {
    m.error = EINVAL;  // 3FS: "buf id not found"
    return m;
  }
  const IovEntry& e = *g_iovs[static_cast<size_t>(it->second)];
  if (e.uid != requester) {
    m.error = EPERM;
    return m;
  }
  m.owner = e.mem;
  m.base = e.mem->base;
  m.size = e.mem->size;
  m.block_size = e.block_size;
  return m;
}

void VirtInit() {}

void VirtShutdown() {
  std::lock_guard<std::mutex> lk(g_mu);
  for (size_t i = 0; i < g_iovs.size(); i++)
    if (g_iovs[i]) RemoveLocked(static_cast<int>(i));
}

}  // namespace hf3fs_test
