#include "hf3fs/usrbio_lib.h"

#include <dlfcn.h>
#include <link.h>

#include <cstdlib>
#include <map>
#include <mutex>

namespace tfs {

namespace {

constexpr const char* kDefaultName = "libhf3fs_api_shared.so";

// Libraries stay loaded for the life of the process: 3FS's library starts threads and registers
// static destructors, so unloading it under a running Node is not safe.
std::mutex loaded_mu;
std::map<std::string, std::shared_ptr<UsrbioLib>>& Loaded() {
  static auto* loaded = new std::map<std::string, std::shared_ptr<UsrbioLib>>();
  return *loaded;
}

std::string Requested(const std::string& path) {
  if (!path.empty()) return path;
  const char* env = std::getenv("HF3FS_LIB");
  if (env != nullptr && *env != '\0') return env;
  return kDefaultName;
}

template <typename Fn>
void Resolve(void* handle, const char* name, Fn* fn, std::vector<std::string>* missing) {
  *fn = reinterpret_cast<Fn>(dlsym(handle, name));
  if (*fn == nullptr) missing->push_back(name);
}

}  // namespace

UsrbioLib::~UsrbioLib() = default;

void UsrbioLib::Bind(std::vector<std::string>* missing) {
  Resolve(handle_, "hf3fs_is_hf3fs", &is_hf3fs, missing);
  Resolve(handle_, "hf3fs_extract_mount_point", &extract_mount_point, missing);
  Resolve(handle_, "hf3fs_iovcreate", &iovcreate, missing);
  Resolve(handle_, "hf3fs_iovunlink", &iovunlink, missing);
  Resolve(handle_, "hf3fs_iovdestroy", &iovdestroy, missing);
  Resolve(handle_, "hf3fs_ior_size", &ior_size, missing);
  Resolve(handle_, "hf3fs_iorcreate4", &iorcreate4, missing);
  Resolve(handle_, "hf3fs_iordestroy", &iordestroy, missing);
  Resolve(handle_, "hf3fs_reg_fd", &reg_fd, missing);
  Resolve(handle_, "hf3fs_dereg_fd", &dereg_fd, missing);
  Resolve(handle_, "hf3fs_io_entries", &io_entries, missing);
  Resolve(handle_, "hf3fs_prep_io", &prep_io, missing);
  Resolve(handle_, "hf3fs_submit_ios", &submit_ios, missing);
  Resolve(handle_, "hf3fs_wait_for_ios", &wait_for_ios, missing);
  Resolve(handle_, "hf3fs_hardlink", &hardlink, missing);
  Resolve(handle_, "hf3fs_punchhole", &punchhole, missing);
}

std::shared_ptr<UsrbioLib> UsrbioLib::Load(const std::string& path, std::string* error) {
  const std::string requested = Requested(path);
  std::lock_guard<std::mutex> lock(loaded_mu);
  auto hit = Loaded().find(requested);
  if (hit != Loaded().end()) return hit->second;

  void* handle = dlopen(requested.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    *error = "cannot load " + requested + ": " + (why != nullptr ? why : "unknown error") +
             " (set HF3FS_LIB or the client's library option to the path of libhf3fs_api_shared.so)";
    return nullptr;
  }
  std::shared_ptr<UsrbioLib> lib(new UsrbioLib());
  lib->handle_ = handle;
  lib->path_ = requested;
  struct link_map* map = nullptr;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map != nullptr && map->l_name != nullptr && *map->l_name)
    lib->path_ = map->l_name;
  std::vector<std::string> missing;
  lib->Bind(&missing);
  if (!missing.empty()) {
    std::string names;
    for (const std::string& m : missing) names += (names.empty() ? "" : ", ") + m;
    *error = lib->path_ + " is not a USRBIO library this client understands: it lacks " + names;
    return nullptr;  // the handle stays open; dlclose of a half-understood library is not worth the risk
  }
  Loaded()[requested] = lib;
  return lib;
}

Napi::Value UsrbioProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  std::string error;
  std::shared_ptr<UsrbioLib> lib = UsrbioLib::Load(path, &error);
  Napi::Object out = Napi::Object::New(env);
  out.Set("requested", Requested(path));
  out.Set("loaded", lib != nullptr);
  if (lib == nullptr) {
    out.Set("error", error);
    return out;
  }
  out.Set("path", lib->path());
  // hf3fs_ior_size follows the ring layout the library was built with; for entries = 1 the
  // documented x86_64 layout gives 16 + 32 + 96 * 2 + 4096 bytes.
  out.Set("iorSize1", static_cast<double>(lib->ior_size(1)));
  out.Set("iorSizeExpected", 16 + 32 + 96 * 2 + 4096);
  return out;
}

}  // namespace tfs
