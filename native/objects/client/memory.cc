// The client's memory, as JS sees it: alloc() maps a region (an iov on 3FS) and registers it with
// the engines; free() lets JS go of it, and the region is unmapped once no op uses it.
#include <cerrno>
#include <cmath>

#include "hf3fs/hf3fs.h"
#include "objects/client/client.h"
#include "objects/client/wire.h"
#include "util/errors.h"

namespace tfs {
namespace {

using wire::IsIndex;
using wire::kMaxOffset;

// What the ArrayBuffer's finalizer needs to drop the region from the client's table.
struct RegionHint {
  std::weak_ptr<RegionTable> table;
  uint64_t id;
};

}  // namespace

// Local memory: a pooled region of that size if there is one, else a new mapping registered with
// every ring. A table full of pooled regions' slots (or memlock taken by them) gives way.
std::shared_ptr<Region> Client::MapRegion(Napi::Env env, size_t bytes, bool want_registered) {
  const bool registers = want_registered && engines_[0]->registered_slots() > 0;
  if (std::shared_ptr<Region> pooled = regions_->pool.Take(bytes, registers)) {
    if (registers) register_refusal_ = kRegistered;
    return pooled;
  }
  int err = 0;
  std::shared_ptr<Region> region = Region::Map(bytes, &err);
  if (!region) throw ErrnoError(env, err, "mmap", "");
  if (!want_registered) return region;
  int why = RegisterEverywhere(*region);
  if (registers && !region->registered() && regions_->pool.Clear()) why = RegisterEverywhere(*region);
  // A huge page counts whole against RLIMIT_MEMLOCK: a buffer refused on a slab may fit on its own pages.
  if (registers && why == ENOMEM && region->carved()) {
    if (std::shared_ptr<Region> plain = Region::Map(bytes, &err, false)) {
      region = std::move(plain);
      why = RegisterEverywhere(*region);
    }
  }
  register_refusal_ = region->registered() ? kRegistered : why;
  return region;
}

// Registers the region with every ring, the direct ring's included; returns the first ring's
// refusal, if any (info() says it).
int Client::RegisterEverywhere(Region& region) {
  int why = kRegistered;
  for (auto& e : engines_) {
    const int r = e->Register(region);
    if (why == kRegistered) why = r;
  }
  if (direct_) direct_->Register(region);
  return why;
}

// alloc(bytes, register, blockSize?) -> [id, ArrayBuffer, registered]
// On 3FS the memory is an iov (always registered: 3FS moves data into it by RDMA).
Napi::Value Client::Alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  if (info.Length() < 1 || !info[0].IsNumber())
    throw CodeError(env, "ERR_INVALID_ARG_TYPE", "alloc(bytes): bytes must be a number");
  const double bytes = info[0].As<Napi::Number>().DoubleValue();
  if (!(bytes >= 0 && bytes <= kMaxOffset) || std::floor(bytes) != bytes)
    throw CodeError(env, "ERR_OUT_OF_RANGE", "alloc(bytes): bytes must be a whole number >= 0");
  const size_t size = static_cast<size_t>(bytes);
  const bool want_registered = info.Length() < 2 || info[1].ToBoolean();
  return Lend(env, hf3fs_ && size > 0 ? MapIov(info, size) : MapRegion(env, size, want_registered));
}

// An iov of `bytes` on the client's mount. The client's block size applies to buffers it fits in
// (a smaller buffer is one block anyway); alloc's third argument overrides it.
std::shared_ptr<Region> Client::MapIov(const Napi::CallbackInfo& info, size_t bytes) {
  Napi::Env env = info.Env();
  size_t block_size = hf3fs_->block_size <= bytes ? hf3fs_->block_size : 0;
  if (info.Length() > 2 && info[2].IsNumber()) {
    const double bs = info[2].As<Napi::Number>().DoubleValue();
    if (!IsIndex(bs, static_cast<double>(bytes) + 1))
      throw CodeError(env, "ERR_OUT_OF_RANGE", "alloc: blockSize must be a whole number from 0 to bytes");
    block_size = static_cast<size_t>(bs);
  }
  int err = 0;
  std::shared_ptr<Region> region = CreateIovRegion(*hf3fs_, bytes, block_size, &err);
  if (!region) throw ErrnoError(env, err, "hf3fs_iovcreate", hf3fs_->mount);
  return region;
}

// Enters the region in the client's table and lends it to JS: [id, ArrayBuffer, registered]. The
// ArrayBuffer's finalizer takes it out of the table again.
Napi::Value Client::Lend(Napi::Env env, std::shared_ptr<Region> region) {
  const uint64_t id = regions_->next_id++;
  regions_->regions[id] = region;
  regions_->bytes += region->size();
  auto* hint = new RegionHint{regions_, id};
  // napi directly: when node refuses the buffer (over buffer.constants.MAX_LENGTH) it may run the
  // finalizer before failing, and Napi::ArrayBuffer::New would then free its own data twice. The
  // hint is the finalizer's to free; the region is released here.
  napi_value raw = nullptr;
  const napi_status status = napi_create_external_arraybuffer(
      env, region->data(), region->size(),
      [](napi_env, void*, void* data) {
        auto* h = static_cast<RegionHint*>(data);
        if (auto table = h->table.lock()) table->Release(h->id);
        delete h;
      },
      hint, &raw);
  if (status != napi_ok) {
    regions_->regions.erase(id);
    regions_->bytes -= region->size();
    if (env.IsExceptionPending()) throw env.GetAndClearPendingException();
    throw CodeError(env, "ERR_OUT_OF_RANGE", "alloc(bytes): node refused an ArrayBuffer of " +
                                                 std::to_string(region->size()) + " bytes (buffer.constants.MAX_LENGTH)");
  }
  Napi::Array out = Napi::Array::New(env, 3);
  out.Set(0u, Napi::Number::New(env, static_cast<double>(id)));
  out.Set(1u, Napi::ArrayBuffer(env, raw));
  out.Set(2u, Napi::Boolean::New(env, region->registered() || region->iov() != nullptr));
  return out;
}

// free(id, ArrayBuffer): JS loses sight of the memory at once; it is unmapped when no op uses it.
Napi::Value Client::Free(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsArrayBuffer())
    throw CodeError(env, "ERR_INVALID_ARG_TYPE", "free(id, arrayBuffer)");
  Napi::ArrayBuffer ab = info[1].As<Napi::ArrayBuffer>();
  // Only the region this ArrayBuffer shows: free(id, otherBuffer) must not unmap memory that
  // another ArrayBuffer still shows (a use after free from JS), nor detach memory not ours.
  const double id = info[0].As<Napi::Number>().DoubleValue();
  auto it = IsIndex(id, kMaxOffset + 1) ? regions_->regions.find(static_cast<uint64_t>(id)) : regions_->regions.end();
  if (it == regions_->regions.end() || ab.IsDetached()) return env.Undefined();  // freed already
  if (ab.ByteLength() != it->second->size() || (ab.ByteLength() > 0 && ab.Data() != it->second->data()))
    throw CodeError(env, "ERR_INVALID_ARG_VALUE", "free(id, arrayBuffer): the ArrayBuffer is not that region's");
  // Detached first: the memory may go to the next alloc() at once.
  ab.Detach();
  regions_->Release(it->first);
  return env.Undefined();
}

}  // namespace tfs
