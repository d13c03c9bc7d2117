// The addon's entry point: the two classes JS sees (NativeClient, NativeFile) and open().
#include <napi.h>

#include "hf3fs/usrbio_lib.h"
#include "objects/addon/addon.h"
#include "objects/client/client.h"
#include "objects/file/file.h"
#include "probes/probe.h"
#include "util/crc32c.h"
#include "util/key_ids.h"

namespace tfs {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);
  Napi::Function client = Client::Init(env);
  Napi::Function file = File::Init(env);
  data->client_class = Napi::Persistent(client);
  data->file_class = Napi::Persistent(file);
  exports.Set("NativeClient", client);
  exports.Set("NativeFile", file);
  exports.Set("wire", Client::Wire(env));
  exports.Set("open", Napi::Function::New<&File::Open>(env, "open"));
  exports.Set("hardlink", Napi::Function::New<&File::Hardlink>(env, "hardlink"));
  exports.Set("usrbioProbe", Napi::Function::New<&UsrbioProbe>(env, "usrbioProbe"));
  exports.Set("ioUringProbe", Napi::Function::New<&IoUringProbe>(env, "ioUringProbe"));
  exports.Set("rdmaDevices", Napi::Function::New<&RdmaDevices>(env, "rdmaDevices"));
  exports.Set("crc32c", Napi::Function::New<&Crc32cAsync>(env, "crc32c"));
  exports.Set("crc32cSync", Napi::Function::New<&Crc32cSync>(env, "crc32cSync"));
  exports.Set("crc32cKernels", Napi::Function::New<&Crc32cKernels>(env, "crc32cKernels"));
  exports.Set("setCrc32cKernel", Napi::Function::New<&SetCrc32cKernelJs>(env, "setCrc32cKernel"));
  exports.Set("crc32cCombine", Napi::Function::New<&Crc32cCombineJs>(env, "crc32cCombine"));
  exports.Set("crc32cSpread", Napi::Function::New<&Crc32cSpreadJs>(env, "crc32cSpread"));
  exports.Set("checksumThreads", Napi::Function::New<&ChecksumThreadsJs>(env, "checksumThreads"));
  exports.Set("crc32", Napi::Function::New<&Crc32Async>(env, "crc32"));
  exports.Set("crc32Ranges", Napi::Function::New<&Crc32RangesAsync>(env, "crc32Ranges"));
  exports.Set("crc32Sync", Napi::Function::New<&Crc32Sync>(env, "crc32Sync"));
  if (KeyIdsAvailable()) exports.Set("keyIds", Napi::Function::New<&KeyIds>(env, "keyIds"));
  return exports;
}

}  // namespace tfs

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return tfs::Init(env, exports); }

NODE_API_MODULE(threefs_client, InitAddon)
