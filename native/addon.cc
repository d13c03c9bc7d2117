// The addon's entry point: the two classes JS sees (NativeClient, NativeFile) and open().
#include <napi.h>

#include "addon.h"
#include "client.h"
#include "file.h"

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
  exports.Set("open", Napi::Function::New<&File::Open>(env, "open"));
  return exports;
}

}  // namespace tfs

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return tfs::Init(env, exports); }

NODE_API_MODULE(threefs_client, InitAddon)
