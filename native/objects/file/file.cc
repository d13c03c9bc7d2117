#include "objects/file/file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>

#include "objects/addon/addon.h"
#include "objects/client/client.h"
#include "util/errors.h"
#include "util/promise_worker.h"

namespace tfs {

FileState::~FileState() { CloseNow(); }

int FileState::CloseNow() {
  int err = 0;
  // USRBIO keys registrations by descriptor number: deregister before the number can be reused.
  if (usrbio && fd >= 0) usrbio->dereg_fd(fd);
  usrbio.reset();
  const int dfd = direct_fd.exchange(-1);
  if (dfd >= 0 && close(dfd) != 0) err = errno;
  if (fd >= 0 && close(fd) != 0 && err == 0) err = errno;
  fd = -1;
  return err;
}

namespace {

// Opens the O_DIRECT twin of an open descriptor through /proc, so it names the same inode even if
// the path changed meanwhile, and reads the alignment direct I/O needs there. The alignments are
// set before the descriptor is published: engines read them only once they see it.
void OpenDirectTwin(FileState& f) {
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", f.fd);
  int dfd = open(proc, f.open_flags | O_DIRECT | O_CLOEXEC);
  if (dfd < 0) {
    f.direct_errno = errno;
    return;
  }
  struct statx sx {};
  if (statx(dfd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN)) {
    if (sx.stx_dio_mem_align == 0) {  // the file system says: no direct I/O here
      close(dfd);
      f.direct_errno = EINVAL;
      return;
    }
    f.dio_mem_align = sx.stx_dio_mem_align;
    f.dio_offset_align = sx.stx_dio_offset_align;
  }
  f.direct_fd.store(dfd);
}

}  // namespace

int FileState::DirectFd() {
  if (direct != Direct::kAuto) return direct_fd.load();
  std::call_once(direct_once, [this] {
    if (fd >= 0 && direct_fd.load() < 0) OpenDirectTwin(*this);
  });
  return direct_fd.load();
}

namespace {

constexpr napi_type_tag kFileTag = {0x3f5c1e0a8d2b4c71ULL, 0x9a6e0d4b7c3f2e15ULL};  // a File made by open()

double Ms(const struct timespec& t) { return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }

// A path from JS. One with a NUL byte would be cut short at it by the system call ("dir/a\0b"
// opens "dir/a"), so it is refused, as node:fs does.
std::string PathArg(Napi::Env env, Napi::Value v, const char* what) {
  std::string path = v.As<Napi::String>().Utf8Value();
  if (path.find('\0') != std::string::npos)
    throw CodeError(env, "ERR_INVALID_ARG_VALUE", std::string(what) + " must be a string without null bytes");
  return path;
}

}  // namespace

Napi::Function File::Init(Napi::Env env) {
  return DefineClass(env, "NativeFile",
                     {InstanceMethod<&File::Describe>("describe"), InstanceMethod<&File::Stat>("stat"),
                      InstanceMethod<&File::Truncate>("truncate"), InstanceMethod<&File::Sync>("sync"),
                      InstanceMethod<&File::ForceFsync>("forceFsync"),
                      InstanceMethod<&File::PunchHoles>("punchHoles"),
                      InstanceMethod<&File::LockRange>("lockRange"),
                      InstanceMethod<&File::OpenDirect>("openDirect"),
                      InstanceMethod<&File::Close>("close"), InstanceMethod<&File::Closed>("closed")});
}

File::File(const Napi::CallbackInfo& info) : Napi::ObjectWrap<File>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    throw CodeError(info.Env(), "ERR_ILLEGAL_CONSTRUCTOR", "files are made by open()");
  state_ = *info[0].As<Napi::External<std::shared_ptr<FileState>>>().Data();
  info.This().As<Napi::Object>().TypeTag(&kFileTag);
}

// By type tag, not instanceof: every submit() checks its files, and instanceof walks prototypes
// (and is fooled by one set by hand).
File* File::FromValue(Napi::Value value) {
  if (!value.IsObject()) return nullptr;
  Napi::Object object = value.As<Napi::Object>();
  if (!object.CheckTypeTag(&kFileTag)) return nullptr;
  return Napi::ObjectWrap<File>::Unwrap(object);
}

Napi::Value File::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber() ||
      !info[3].IsNumber())
    throw CodeError(env, "ERR_INVALID_ARG_TYPE", "open(path, flags, mode, direct)");
  auto state = std::make_shared<FileState>();
  state->path = PathArg(env, info[0], "path");
  const int flags = info[1].As<Napi::Number>().Int32Value();
  const mode_t mode = info[2].As<Napi::Number>().Uint32Value();
  state->open_flags = flags & (O_ACCMODE | O_SYNC | O_DSYNC);  // the O_DIRECT twin needs them too
  state->direct = static_cast<FileState::Direct>(info[3].As<Napi::Number>().Uint32Value() % 3);
  std::shared_ptr<UsrbioLib> usrbio;
  if (Client* client = info.Length() > 4 ? Client::FromValue(info[4]) : nullptr)
    if (client->hf3fs()) usrbio = client->hf3fs()->lib;
  if (usrbio) state->direct = FileState::Direct::kNever;  // 3FS moves data by RDMA; no page cache to avoid
  return PromiseWorker::Run(
      env, "open", state->path,
      PromiseWorker::NamedWork([state, flags, mode, usrbio](const char** syscall) -> int {
        state->fd = open(state->path.c_str(), flags | O_CLOEXEC, mode);
        if (state->fd < 0) return errno;
        if (usrbio) {
          const int r = usrbio->reg_fd(state->fd, 0);  // <= 0: registered; > 0: an errno
          if (r > 0) {
            *syscall = "hf3fs_reg_fd";
            state->CloseNow();
            return r;
          }
          state->usrbio = usrbio;
          return 0;
        }
        // 'auto' opens its twin when an op first may go direct (OpenDirect): until then, one descriptor.
        if (state->direct == FileState::Direct::kAlways) OpenDirectTwin(*state);
        if (state->direct == FileState::Direct::kAlways && state->direct_fd < 0) return state->direct_errno;
        return 0;
      }),
      [state](Napi::Env env) -> Napi::Value {
        auto* holder = new std::shared_ptr<FileState>(state);
        auto external = Napi::External<std::shared_ptr<FileState>>::New(
            env, holder, [](Napi::Env, std::shared_ptr<FileState>* h) { delete h; });
        return AddonData::Of(env).file_class.New({external});
      });
}

// What the JS File needs to know, once:
// [fd, directFd, directErrno, dioMemAlign, dioOffsetAlign, accessMode, usrbioRegistered]
Napi::Value File::Describe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const FileState& f = *state_;
  Napi::Array out = Napi::Array::New(env, 7);
  out.Set(0u, f.fd);
  out.Set(1u, f.direct_fd.load());
  out.Set(2u, f.direct_errno);
  out.Set(3u, f.dio_mem_align);
  out.Set(4u, f.dio_offset_align);
  out.Set(5u, f.open_flags);
  out.Set(6u, f.usrbio != nullptr);
  return out;
}

// openDirect() -> Promise<void>: opens the O_DIRECT twin of a file opened with direct 'auto' if
// no op has yet; a file system that refuses it leaves direct_errno set, not an error.
Napi::Value File::OpenDirect(const Napi::CallbackInfo& info) {
  auto state = state_;
  return PromiseWorker::Run(info.Env(), "open", state->path, [state]() -> int {
    if (state->fd < 0) return EBADF;
    state->DirectFd();
    return 0;
  }, nullptr);
}

Napi::Value File::Stat(const Napi::CallbackInfo& info) {
  auto state = state_;
  auto st = std::make_shared<struct stat>();
  return PromiseWorker::Run(
      info.Env(), "fstat", state->path,
      [state, st]() -> int {
        if (state->fd < 0) return EBADF;
        return fstat(state->fd, st.get()) == 0 ? 0 : errno;
      },
      [st](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("dev", static_cast<double>(st->st_dev));
        o.Set("ino", static_cast<double>(st->st_ino));
        o.Set("mode", st->st_mode);
        o.Set("nlink", static_cast<double>(st->st_nlink));
        o.Set("uid", st->st_uid);
        o.Set("gid", st->st_gid);
        o.Set("size", static_cast<double>(st->st_size));
        o.Set("blksize", static_cast<double>(st->st_blksize));
        o.Set("blocks", static_cast<double>(st->st_blocks));
        o.Set("atimeMs", Ms(st->st_atim));
        o.Set("mtimeMs", Ms(st->st_mtim));
        o.Set("ctimeMs", Ms(st->st_ctim));
        return o;
      });
}

Napi::Value File::Truncate(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber())
    throw CodeError(info.Env(), "ERR_INVALID_ARG_TYPE", "truncate(length)");
  const off_t length = static_cast<off_t>(info[0].As<Napi::Number>().Int64Value());
  auto state = state_;
  return PromiseWorker::Run(info.Env(), "ftruncate", state->path, [state, length]() -> int {
    if (state->fd < 0) return EBADF;
    return ftruncate(state->fd, length) == 0 ? 0 : errno;
  }, nullptr);
}

Napi::Value File::Sync(const Napi::CallbackInfo& info) {
  const bool data_only = info.Length() > 0 && info[0].ToBoolean();
  auto state = state_;
  return PromiseWorker::Run(info.Env(), data_only ? "fdatasync" : "fsync", state->path,
                            [state, data_only]() -> int {
                              if (state->fd < 0) return EBADF;
                              int r = data_only ? fdatasync(state->fd) : fsync(state->fd);
                              return r == 0 ? 0 : errno;
                            }, nullptr);
}

// forceFsync(): on 3FS, settles the file's length on the meta service so stat sees what was
// written (HF3FS_IOC_FSYNC); elsewhere, and where that ioctl is unknown, an fsync.
Napi::Value File::ForceFsync(const Napi::CallbackInfo& info) {
  auto state = state_;
  return PromiseWorker::Run(info.Env(), "ioctl(HF3FS_IOC_FSYNC)", state->path, [state]() -> int {
    if (state->fd < 0) return EBADF;
    if (state->usrbio) {
      uint32_t unused = 0;
      if (ioctl(state->fd, HF3FS_IOC_FSYNC, &unused) == 0) return 0;
      if (errno != ENOTTY) return errno;
    }
    return fsync(state->fd) == 0 ? 0 : errno;
  }, nullptr);
}

// punchHoles(starts: Float64Array, ends: Float64Array) -> Promise<void>. The JS side checked the
// ranges (whole chunks on 3FS). 3FS removes whole chunks; elsewhere fallocate punches the range.
Napi::Value File::PunchHoles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  // Float64Arrays only: elements of any other typed array read as doubles would run past its memory.
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw CodeError(env, "ERR_INVALID_ARG_TYPE", "punchHoles(starts: Float64Array, ends: Float64Array)");
  Napi::Float64Array starts_js = info[0].As<Napi::Float64Array>();
  Napi::Float64Array ends_js = info[1].As<Napi::Float64Array>();
  if (starts_js.ElementLength() != ends_js.ElementLength())
    throw CodeError(env, "ERR_INVALID_ARG_VALUE", "punchHoles: starts and ends differ in length");
  auto starts = std::make_shared<std::vector<size_t>>(), ends = std::make_shared<std::vector<size_t>>();
  for (size_t i = 0; i < starts_js.ElementLength(); i++) {
    // Whole numbers below 2^53, start <= end: anything else (NaN, -1, 1e300) would be UB to cast.
    const double start = starts_js[i], end = ends_js[i];
    if (!(start >= 0 && end >= start && end <= 9007199254740991.0) || std::floor(start) != start || std::floor(end) != end)
      throw CodeError(env, "ERR_OUT_OF_RANGE", "punchHoles: range " + std::to_string(i) + " is not whole numbers 0 <= start <= end < 2^53");
    starts->push_back(static_cast<size_t>(start));
    ends->push_back(static_cast<size_t>(end));
  }
  auto state = state_;
  return PromiseWorker::Run(env, state->usrbio ? "hf3fs_punchhole" : "fallocate", state->path,
                            [state, starts, ends]() -> int {
    if (state->fd < 0) return EBADF;
    for (size_t i = 0; i < starts->size();) {
      if (state->usrbio) {
        const int n = static_cast<int>(std::min<size_t>(starts->size() - i, HF3FS_PUNCH_HOLE_MAX));
        const int r = state->usrbio->punchhole(state->fd, n, starts->data() + i, ends->data() + i, 0);
        if (r != 0) return r;
        i += static_cast<size_t>(n);
      } else {
        const off_t len = static_cast<off_t>((*ends)[i] - (*starts)[i]);
        if (len > 0 &&
            fallocate(state->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>((*starts)[i]), len) != 0)
          return errno;
        i++;
      }
    }
    return 0;
  }, nullptr);
}

// lockRange(offset, length, lock) -> boolean: an OFD write lock on the byte range, tried without
// waiting (false: another open file description holds part of it), or (lock false) its release.
// Never waits, so it runs on the JS thread; the lock belongs to this descriptor and goes with it.
Napi::Value File::LockRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsBoolean())
    throw CodeError(env, "ERR_INVALID_ARG_TYPE", "lockRange(offset, length, lock)");
  const double offset = info[0].As<Napi::Number>().DoubleValue(), length = info[1].As<Napi::Number>().DoubleValue();
  if (!(offset >= 0 && length >= 1 && offset + length <= 9007199254740991.0) || std::floor(offset) != offset ||
      std::floor(length) != length)
    throw CodeError(env, "ERR_OUT_OF_RANGE", "lockRange: offset and length must be whole numbers, length >= 1");
  if (state_->fd < 0) throw ErrnoError(env, EBADF, "fcntl(F_OFD_SETLK)", state_->path);
  struct flock fl {};
  fl.l_type = info[2].As<Napi::Boolean>().Value() ? F_WRLCK : F_UNLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(offset);
  fl.l_len = static_cast<off_t>(length);
  if (fcntl(state_->fd, F_OFD_SETLK, &fl) == 0) return Napi::Boolean::New(env, true);
  if (errno == EAGAIN || errno == EACCES) return Napi::Boolean::New(env, false);
  throw ErrnoError(env, errno, "fcntl(F_OFD_SETLK)", state_->path);
}

Napi::Value File::Hardlink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
    throw CodeError(env, "ERR_INVALID_ARG_TYPE", "hardlink(target, linkPath, client?)");
  const std::string target = PathArg(env, info[0], "target"), link_path = PathArg(env, info[1], "linkPath");
  std::shared_ptr<UsrbioLib> usrbio;
  if (Client* client = info.Length() > 2 ? Client::FromValue(info[2]) : nullptr)
    if (client->hf3fs()) usrbio = client->hf3fs()->lib;
  return PromiseWorker::Run(env, usrbio ? "hf3fs_hardlink" : "link", link_path, [target, link_path, usrbio]() -> int {
    if (usrbio) return usrbio->hardlink(target.c_str(), link_path.c_str());  // 0 or a positive errno
    return link(target.c_str(), link_path.c_str()) == 0 ? 0 : errno;
  }, nullptr);
}

// The JS side waits for this file's I/O to drain before it calls close.
Napi::Value File::Close(const Napi::CallbackInfo& info) {
  auto state = state_;
  return PromiseWorker::Run(info.Env(), "close", state->path, [state]() -> int { return state->CloseNow(); },
                            nullptr);
}

Napi::Value File::Closed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), state_->fd < 0);
}

}  // namespace tfs
