// The native side of a JS File: its descriptors (FileState) and the metadata calls on them, each
// run on libuv's pool.
#pragma once

#include <napi.h>

#include <memory>

#include "engines/engine.h"

namespace tfs {

class File : public Napi::ObjectWrap<File> {
 public:
  static Napi::Function Init(Napi::Env env);
  // open(path, flags, mode, direct: 0 auto | 1 always | 2 never, client?) -> Promise<File>
  // With a 3FS client the descriptor is registered with USRBIO (and no O_DIRECT twin is made).
  static Napi::Value Open(const Napi::CallbackInfo& info);
  // hardlink(target, linkPath, client?) -> Promise<void>: through 3FS's ioctl with a 3FS client.
  static Napi::Value Hardlink(const Napi::CallbackInfo& info);
  static File* FromValue(Napi::Value value);  // nullptr when `value` is not a native File (see Client::FromValue)

  explicit File(const Napi::CallbackInfo& info);
  const std::shared_ptr<FileState>& state() const { return state_; }

 private:
  Napi::Value Describe(const Napi::CallbackInfo& info);
  Napi::Value Stat(const Napi::CallbackInfo& info);
  Napi::Value Truncate(const Napi::CallbackInfo& info);
  Napi::Value Sync(const Napi::CallbackInfo& info);
  Napi::Value ForceFsync(const Napi::CallbackInfo& info);
  Napi::Value PunchHoles(const Napi::CallbackInfo& info);
  Napi::Value LockRange(const Napi::CallbackInfo& info);
  Napi::Value OpenDirect(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Closed(const Napi::CallbackInfo& info);

  std::shared_ptr<FileState> state_;
};

}  // namespace tfs
