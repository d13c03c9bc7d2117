// libhf3fs_api_shared.so, opened with dlopen: the addon loads and runs without 3FS installed, and
// a missing or mismatched library is an error at connect time, not a failed require().
#pragma once

#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "hf3fs/usrbio.h"

namespace tfs {

class UsrbioLib {
 public:
  // Opens the library: `path` if given, else $HF3FS_LIB, else the dynamic linker's search
  // (LD_LIBRARY_PATH, ld.so.cache). One handle per resolved path, shared by every client.
  // On failure returns nullptr and sets *error to what went wrong.
  static std::shared_ptr<UsrbioLib> Load(const std::string& path, std::string* error);
  ~UsrbioLib();
  UsrbioLib(const UsrbioLib&) = delete;
  UsrbioLib& operator=(const UsrbioLib&) = delete;

  const std::string& path() const { return path_; }

  hf3fs_is_hf3fs_fn is_hf3fs = nullptr;
  hf3fs_extract_mount_point_fn extract_mount_point = nullptr;
  hf3fs_iovcreate_fn iovcreate = nullptr;
  hf3fs_iovunlink_fn iovunlink = nullptr;
  hf3fs_iovdestroy_fn iovdestroy = nullptr;
  hf3fs_ior_size_fn ior_size = nullptr;
  hf3fs_iorcreate4_fn iorcreate4 = nullptr;
  hf3fs_iordestroy_fn iordestroy = nullptr;
  hf3fs_reg_fd_fn reg_fd = nullptr;
  hf3fs_dereg_fd_fn dereg_fd = nullptr;
  hf3fs_io_entries_fn io_entries = nullptr;
  hf3fs_prep_io_fn prep_io = nullptr;
  hf3fs_submit_ios_fn submit_ios = nullptr;
  hf3fs_wait_for_ios_fn wait_for_ios = nullptr;
  hf3fs_hardlink_fn hardlink = nullptr;
  hf3fs_punchhole_fn punchhole = nullptr;

 private:
  UsrbioLib() = default;
  // Resolves every function; the names of those the library lacks go to *missing.
  void Bind(std::vector<std::string>* missing);
  void* handle_ = nullptr;
  std::string path_;
};

// usrbioProbe(path?) -> { loaded, path, error, missing: string[], iorSize: number }: for doctor.
Napi::Value UsrbioProbe(const Napi::CallbackInfo& info);

}  // namespace tfs
