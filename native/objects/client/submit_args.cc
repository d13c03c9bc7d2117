// submit()'s arguments, decoded and checked before anything is queued (bad input loses nothing):
// the typed arrays, the batch's files and memory, and every op of the wire layout (wire.h).
#include "objects/client/submit_args.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>

#include "hf3fs/hf3fs.h"
#include "objects/client/client.h"
#include "objects/client/wire.h"
#include "objects/file/file.h"
#include "util/errors.h"

namespace tfs {
namespace {

using wire::kMaxOffset;
using wire::kNone;

using wire::IsIndex;

std::string OpPrefix(size_t i) { return "op " + std::to_string(i) + ": "; }

// The element type, length and data of a typed array, in one call (each of Napi::TypedArray's
// getters asks again); false if it is not one.
bool TypedArrayInfo(napi_env env, napi_value value, napi_typedarray_type* type, size_t* length, void** data) {
  return napi_get_typedarray_info(env, value, type, length, data, nullptr, nullptr) == napi_ok;
}

bool TypedArrayAt(const Napi::CallbackInfo& info, size_t at, napi_typedarray_type* type, size_t* length, void** data) {
  return info.Length() > at && TypedArrayInfo(info.Env(), info[at], type, length, data);
}

// The typed array at info[at] if it is one of `type` with `length` elements, else nullptr.
template <typename T>
T* TypedData(const Napi::CallbackInfo& info, size_t at, napi_typedarray_type type, size_t length) {
  napi_typedarray_type got;
  size_t elements;
  void* data;
  if (!TypedArrayAt(info, at, &got, &elements, &data) || got != type || elements != length) return nullptr;
  return static_cast<T*>(data);
}

bool Given(const Napi::CallbackInfo& info, size_t at) { return info.Length() > at && !info[at].IsUndefined(); }

// The op's file index, offsets and length: whole numbers the casts below keep exact.
void CheckOpNumbers(Napi::Env env, const double* d, size_t i, size_t files) {
  if (!IsIndex(d[wire::kFile], static_cast<double>(files)))
    throw CodeError(env, "ERR_INVALID_ARG_VALUE", OpPrefix(i) + "no such file");
  if (!IsIndex(d[wire::kLength], kMaxOffset + 1) || !IsIndex(d[wire::kBufferOffset], kMaxOffset + 1) ||
      !IsIndex(d[wire::kFileOffset], kMaxOffset + 1) || d[wire::kFileOffset] + d[wire::kLength] > kMaxOffset)
    throw CodeError(env, "ERR_OUT_OF_RANGE", OpPrefix(i) + "offset or length out of range");
}

// An op's checksum request, bounded by its length: the engine reads the range and writes 4 bytes
// at `at`. That `at` lies outside the range is meaning, checked in lib/core/batch.ts.
void SetChecksum(Napi::Env env, Op& op, size_t i, const double* sum) {
  const double op_length = static_cast<double>(op.remaining);
  const double from = sum[wire::kFrom], length = sum[wire::kSpan], at = sum[wire::kAt];
  if (!IsIndex(from, op_length + 1) || !IsIndex(length, op_length + 1) || from + length > op_length)
    throw CodeError(env, "ERR_OUT_OF_RANGE", OpPrefix(i) + "crc32c range goes past the op's length");
  if (op.write && (!IsIndex(at, op_length + 1) || at + 4 > op_length))
    throw CodeError(env, "ERR_OUT_OF_RANGE", OpPrefix(i) + "crc32c 'at' must leave 4 bytes inside the op");
  op.checksum.wanted = true;
  op.checksum.from = static_cast<uint64_t>(from);
  op.checksum.length = static_cast<uint64_t>(length);
  op.checksum.at = op.write ? static_cast<uint64_t>(at) : 0;
}

// Op i waits for op `after`: an earlier op only, so the waits form chains and trees, never a cycle.
void LinkAfter(Napi::Env env, Batch& batch, size_t i, int32_t after) {
  if (after < 0 || static_cast<size_t>(after) >= i)
    throw CodeError(env, "ERR_OUT_OF_RANGE", OpPrefix(i) + "'after' must name an earlier op of the batch");
  Op& first = batch.ops[static_cast<size_t>(after)];
  Op& op = batch.ops[i];
  op.after = after;
  op.next_waiter = first.first_waiter;
  first.first_waiter = static_cast<int32_t>(i);
}

// 3FS refuses an I/O whose memory crosses a block of its iov.
void CheckIovBlock(Napi::Env env, const Op& op) {
  if (!op.region || op.region->block_size() == 0 || op.remaining == 0) return;
  const size_t bs = op.region->block_size(), first = static_cast<size_t>(op.ptr - op.region->data());
  if (first / bs == (first + op.remaining - 1) / bs) return;
  Napi::Error e = OpError(env, "EINVAL", op.index, op.file->path,
                          "the buffer range crosses a " + std::to_string(bs) + "-byte block of its iov (3FS refuses that)");
  e.Set("errno", Napi::Number::New(env, -EINVAL));
  throw e;
}

// A file opened for O_DIRECT only: the kernel would refuse an unaligned op with EINVAL.
void CheckDirectAlignment(Napi::Env env, const Op& op) {
  const FileState& f = *op.file;
  if (f.direct != FileState::Direct::kAlways || op.remaining == 0) return;
  if (reinterpret_cast<uintptr_t>(op.ptr) % f.dio_mem_align == 0 && op.offset % f.dio_offset_align == 0 &&
      op.remaining % f.dio_offset_align == 0)
    return;
  throw OpError(env, "ERR_UNALIGNED_DIRECT", op.index, f.path,
                "direct I/O needs memory aligned to " + std::to_string(f.dio_mem_align) +
                    " and offset and length to " + std::to_string(f.dio_offset_align) + " bytes");
}

}  // namespace

Client::SubmitArgs Client::DecodeSubmitArgs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  napi_typedarray_type desc_type, results_type;
  size_t desc_length, results_length;
  void *desc, *results;
  if (info.Length() < 6 || !info[1].IsArray() || !info[2].IsArray() ||
      !TypedArrayAt(info, 3, &desc_type, &desc_length, &desc) || !TypedArrayAt(info, 4, &results_type, &results_length, &results))
    throw CodeError(env, "ERR_INVALID_ARG_TYPE", "submit(write, files, views, descriptors, results, failFast)");
  if (desc_type != napi_float64_array || results_type != napi_float64_array)
    throw CodeError(env, "ERR_INVALID_ARG_TYPE", "descriptors and results must be Float64Arrays");
  SubmitArgs args;
  args.n = desc_length / wire::kOpFields;
  if (desc_length % wire::kOpFields != 0 || results_length != wire::kResultFields * args.n)
    throw CodeError(env, "ERR_INVALID_ARG_VALUE", "descriptors and results do not match");
  args.write = info[0].ToBoolean();
  args.fail_fast = info[5].ToBoolean();
  args.files = info[1].As<Napi::Array>();
  args.views = info[2].As<Napi::Array>();
  args.results_js = info[4];
  args.results = static_cast<double*>(results);
  args.descriptors = static_cast<const double*>(desc);
  if (Given(info, 6)) {
    args.checksums = TypedData<double>(info, 6, napi_float64_array, wire::kChecksumFields * args.n);
    args.crcs = TypedData<uint32_t>(info, 7, napi_uint32_array, args.n);
    if (args.checksums == nullptr || args.crcs == nullptr)
      throw CodeError(env, "ERR_INVALID_ARG_TYPE", "checksums must be a Float64Array of 3 per op, crcs a Uint32Array of 1 per op");
  }
  if (Given(info, 8)) {
    args.after = TypedData<int32_t>(info, 8, napi_int32_array, args.n);
    if (args.after == nullptr) throw CodeError(env, "ERR_INVALID_ARG_TYPE", "after must be an Int32Array of 1 per op");
  }
  return args;
}

// The batch's files: native Files, open, and on 3FS registered with USRBIO (by a 3FS client).
std::vector<std::shared_ptr<FileState>> Client::DecodeFiles(Napi::Env env, Napi::Array files_js) const {
  std::vector<std::shared_ptr<FileState>> files(files_js.Length());
  for (uint32_t i = 0; i < files.size(); i++) {
    File* f = File::FromValue(files_js.Get(i));
    if (f == nullptr) throw CodeError(env, "ERR_INVALID_ARG_TYPE", "not a file");
    files[i] = f->state();
    if (files[i]->fd < 0) throw CodeError(env, "ERR_FILE_CLOSED", "file is closed: " + files[i]->path);
    if (hf3fs_ && files[i]->usrbio != hf3fs_->lib) {
      Napi::Error e = CodeError(env, "ERR_WRONG_ENGINE",
                                "file was not opened by a 3FS client, so it is not registered with USRBIO: " + files[i]->path);
      e.Set("path", files[i]->path);
      throw e;
    }
  }
  return files;
}

std::vector<Client::View> Client::DecodeViews(Napi::Env env, Napi::Array views_js) {
  std::vector<View> views(views_js.Length());
  for (uint32_t i = 0; i < views.size(); i++) {
    napi_typedarray_type type;
    size_t length;
    void* data;
    if (!TypedArrayInfo(env, views_js.Get(i), &type, &length, &data) || type != napi_uint8_array)
      throw CodeError(env, "ERR_INVALID_ARG_TYPE", "views must be Uint8Arrays");
    views[i] = {static_cast<uint8_t*>(data), length};
  }
  return views;
}

// Points op i at its memory (a region of this client, or a view) and checks the op fits in it.
void Client::SetOpMemory(Napi::Env env, Op& op, size_t i, const double* d, const std::vector<View>& views) const {
  const double ref = d[wire::kBufferRef];
  uint8_t* base;
  size_t size;
  if (ref >= 0) {
    if (!IsIndex(ref, kMaxOffset + 1))  // 1e300 or 1.5: no region, and a cast would be UB
      throw CodeError(env, "ERR_INVALID_ARG_VALUE", OpPrefix(i) + "no such buffer");
    auto it = regions_->regions.find(static_cast<uint64_t>(ref));
    if (it == regions_->regions.end()) throw CodeError(env, "ERR_BUFFER_FREED", OpPrefix(i) + "buffer was freed");
    op.region = it->second;
    base = op.region->data();
    size = op.region->size();
  } else {
    if (!IsIndex(-ref - 1, static_cast<double>(views.size())))
      throw CodeError(env, "ERR_INVALID_ARG_VALUE", OpPrefix(i) + "no such buffer");
    const View& v = views[static_cast<size_t>(-ref - 1)];
    base = v.data;
    size = v.size;
  }
  if (d[wire::kBufferOffset] + d[wire::kLength] > static_cast<double>(size))
    throw CodeError(env, "ERR_OUT_OF_RANGE", OpPrefix(i) + "length goes past the buffer");
  op.ptr = base + static_cast<size_t>(d[wire::kBufferOffset]);
}

// Every op of the batch, decoded and checked before anything is queued: bad input loses nothing.
std::unique_ptr<Batch> Client::DecodeOps(Napi::Env env, const SubmitArgs& args) const {
  const std::vector<std::shared_ptr<FileState>> files = DecodeFiles(env, args.files);
  const std::vector<View> views = DecodeViews(env, args.views);
  auto batch = std::make_unique<Batch>();
  batch->ops.resize(args.n);
  for (size_t i = 0; i < args.n; i++) {
    const double* d = args.descriptors + i * wire::kOpFields;
    CheckOpNumbers(env, d, i, files.size());
    Op& op = batch->ops[i];
    SetOpMemory(env, op, i, d, views);
    op.batch = batch.get();
    op.index = static_cast<uint32_t>(i);
    op.write = args.write;
    op.file = files[static_cast<size_t>(d[wire::kFile])];
    op.offset = static_cast<uint64_t>(d[wire::kFileOffset]);
    op.remaining = static_cast<uint64_t>(d[wire::kLength]);
    CheckIovBlock(env, op);
    const double* sum = args.checksums ? args.checksums + i * wire::kChecksumFields : nullptr;
    if (sum != nullptr && sum[wire::kFrom] != kNone) SetChecksum(env, op, i, sum);
    if (args.after != nullptr && args.after[i] != kNone) LinkAfter(env, *batch, i, args.after[i]);
    CheckDirectAlignment(env, op);
  }
  if (!args.write) CheckReadsApart(env, *batch);
  return batch;
}

// Two reads of one batch into the same bytes would race; 3FS fails the whole batch with EIO for
// it. Both engines refuse it up front, naming the ops.
void Client::CheckReadsApart(Napi::Env env, const Batch& batch) {
  if (batch.ops.size() < 2) return;
  std::vector<const Op*> ops;
  ops.reserve(batch.ops.size());
  for (const Op& op : batch.ops)
    if (op.remaining > 0) ops.push_back(&op);
  std::sort(ops.begin(), ops.end(), [](const Op* a, const Op* b) { return a->ptr < b->ptr; });
  for (size_t k = 1; k < ops.size(); k++) {
    const Op* a = ops[k - 1];
    const Op* b = ops[k];
    if (a->ptr + a->remaining > b->ptr) {
      const uint32_t lo = std::min(a->index, b->index), hi = std::max(a->index, b->index);
      throw OpError(env, "ERR_OVERLAPPING_BUFFERS", hi, batch.ops[hi].file->path,
                    "its buffer overlaps op " + std::to_string(lo) +
                        "'s: the reads of one batch need separate memory (3FS fails the whole batch otherwise)");
    }
  }
}

}  // namespace tfs
