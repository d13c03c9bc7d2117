// Per-environment data: every worker_thread that loads the addon gets its own.
#pragma once

#include <napi.h>

namespace tfs {

struct AddonData {
  Napi::FunctionReference file_class;
  Napi::FunctionReference client_class;
  static AddonData& Of(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }
};

}  // namespace tfs
