#include "util/crc32c.h"

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "util/checksum_pool.h"
#include "util/crc32c_kernels.h"
#include "util/errors.h"
#include "util/promise_worker.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#include <wmmintrin.h>
#include <smmintrin.h>
#define TFS_CRC32C_X86 1
#endif

namespace tfs {

namespace {

// CRC32C (our pages) and CRC-32 (zlib's, in ffrecord files) are both reflected with init and final
// XOR 0xFFFFFFFF; they differ only in the polynomial, so one table builder and loop serve both.
constexpr uint32_t kCastagnoli = crc32c::kPoly;
constexpr uint32_t kIeee = 0xEDB88320u;        // 0x04C11DB7 bit-reversed

// Slicing-by-8 tables: t[0][b] is the CRC of byte b; t[k][b] is the CRC of byte b followed by k
// zero bytes, so eight bytes fold into the state with eight independent lookups.
using Tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr Tables MakeTables(uint32_t poly) {
  Tables t{};
  for (uint32_t b = 0; b < 256; b++) {
    uint32_t c = b;
    for (int bit = 0; bit < 8; bit++) c = (c >> 1) ^ ((c & 1) ? poly : 0);
    t[0][b] = c;
  }
  for (size_t k = 1; k < 8; k++)
    for (size_t b = 0; b < 256; b++) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFF];
  return t;
}

constexpr Tables kTables = MakeTables(kCastagnoli);
constexpr Tables kIeeeTables = MakeTables(kIeee);
static_assert(kTables[0][1] == 0xF26B8303u && kTables[0][255] == 0xAD7D5351u, "CRC32C byte table");
static_assert(kIeeeTables[0][1] == 0x77073096u && kIeeeTables[0][255] == 0x2D02EF8Du, "CRC-32 byte table");

// Assembled byte by byte so that it is right on any byte order; compilers make it one load.
inline uint32_t LoadLe32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

// Works on the inverted state (the caller does the init/final XOR).
uint32_t SlicedRaw(const Tables& t, uint32_t crc, const uint8_t* p, size_t n) {
  for (; n >= 8; p += 8, n -= 8) {
    const uint32_t lo = crc ^ LoadLe32(p), hi = LoadLe32(p + 4);
    crc = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
          t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
  }
  for (; n > 0; p++, n--) crc = (crc >> 8) ^ t[0][(crc ^ *p) & 0xFF];
  return crc;
}

#ifdef TFS_CRC32C_X86
// CRC-32 by carry-less multiplication (Intel's "Fast CRC Computation for Generic Polynomials Using
// PCLMULQDQ", reflected): four lanes folded over 64-byte blocks, then one, then Barrett to 32 bits.
// Constants are x^k mod P, reflected and shifted left by one. Takes n >= 64.
#define TFS_CLMUL __attribute__((target("pclmul,sse4.1")))

TFS_CLMUL inline __m128i Load(const uint8_t* at) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(at)); }

// a * x^k (its two halves by the two constants in k) + b: moves a forward over b.
TFS_CLMUL inline __m128i Fold(__m128i a, __m128i k, __m128i b) {
  return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(a, k, 0x00), _mm_clmulepi64_si128(a, k, 0x11)), b);
}

TFS_CLMUL uint32_t IeeeClmulRaw(uint32_t crc, const uint8_t* p, size_t n) {
  const __m128i fold4 = _mm_set_epi64x(0x1c6e41596, 0x154442bd4);  // x^(4*128+32), x^(4*128-32)
  const __m128i fold1 = _mm_set_epi64x(0x0ccaa009e, 0x1751997d0);  // x^(128+32), x^(128-32)
  const __m128i fold32 = _mm_set_epi64x(0, 0x163cd6124);           // x^64
  const __m128i barrett = _mm_set_epi64x(0x1f7011641, 0x1db710641);  // floor(x^64 / P), P
  const __m128i low32 = _mm_set_epi32(0, 0, 0, -1);
  __m128i x1 = _mm_xor_si128(Load(p), _mm_cvtsi32_si128(static_cast<int>(crc)));
  __m128i x2 = Load(p + 16), x3 = Load(p + 32), x4 = Load(p + 48);
  p += 64, n -= 64;
  for (; n >= 64; p += 64, n -= 64) {
    x1 = Fold(x1, fold4, Load(p));
    x2 = Fold(x2, fold4, Load(p + 16));
    x3 = Fold(x3, fold4, Load(p + 32));
    x4 = Fold(x4, fold4, Load(p + 48));
  }
  x1 = Fold(Fold(Fold(x1, fold1, x2), fold1, x3), fold1, x4);
  for (; n >= 16; p += 16, n -= 16) x1 = Fold(x1, fold1, Load(p));
  // 128 -> 64 bits (appending 32 zero bits), 64 -> 32 + 32, then Barrett.
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), _mm_clmulepi64_si128(fold1, x1, 0x01));
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 4), _mm_clmulepi64_si128(_mm_and_si128(x1, low32), fold32, 0x00));
  __m128i t = _mm_clmulepi64_si128(_mm_and_si128(x1, low32), barrett, 0x10);
  t = _mm_clmulepi64_si128(_mm_and_si128(t, low32), barrett, 0x00);
  crc = static_cast<uint32_t>(_mm_extract_epi32(_mm_xor_si128(x1, t), 1));
  return SlicedRaw(kIeeeTables, crc, p, n);
}
#endif

using RawFn = crc32c::RawFn;

// The kernel CRC32C runs: the fastest this CPU has, or the one TFS_CRC32C_KERNEL names (when this
// CPU has it), so a whole run can be pinned to one path; SetCrc32cKernel changes it for tests.
const crc32c::Kernel* FindKernel(const char* name) {
  size_t count;
  const crc32c::Kernel* all = crc32c::Kernels(&count);
  for (size_t i = 0; i < count; i++)
    if ((name == nullptr || std::strcmp(all[i].name, name) == 0) && all[i].supported()) return &all[i];
  return nullptr;
}

const crc32c::Kernel* PickKernel() {
  const crc32c::Kernel* named = FindKernel(std::getenv("TFS_CRC32C_KERNEL"));
  return named != nullptr ? named : FindKernel(nullptr);
}

// A function-local static is initialised thread-safely (pool threads call this too).
std::atomic<const crc32c::Kernel*>& Current() {
  static std::atomic<const crc32c::Kernel*> kernel{PickKernel()};
  return kernel;
}

RawFn Raw() { return Current().load(std::memory_order_relaxed)->raw; }

uint32_t IeeeTablesRaw(uint32_t crc, const uint8_t* p, size_t n) { return SlicedRaw(kIeeeTables, crc, p, n); }

#ifdef TFS_CRC32C_X86
uint32_t IeeeFastRaw(uint32_t crc, const uint8_t* p, size_t n) {
  return n >= 64 ? IeeeClmulRaw(crc, p, n) : SlicedRaw(kIeeeTables, crc, p, n);
}
#endif

RawFn PickIeeeRaw() {
#ifdef TFS_CRC32C_X86
  if (__builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1")) return IeeeFastRaw;
#endif
  return IeeeTablesRaw;
}

RawFn IeeeRaw() {
  static const RawFn fn = PickIeeeRaw();
  return fn;
}

struct Span {
  const uint8_t* data;
  size_t length;
};

// The bytes of a TypedArray or DataView; throws a JS TypeError-like error for anything else.
Span ViewSpan(Napi::Env env, Napi::Value v, const std::string& what) {
  if (v.IsTypedArray()) {
    auto ta = v.As<Napi::TypedArray>();
    return {static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset(), ta.ByteLength()};
  }
  if (v.IsDataView()) {
    auto dv = v.As<Napi::DataView>();
    return {static_cast<const uint8_t*>(dv.ArrayBuffer().Data()) + dv.ByteOffset(), dv.ByteLength()};
  }
  throw CodeError(env, "ERR_INVALID_ARG_TYPE", what + " must be a TypedArray or DataView");
}

using ChecksumFn = uint32_t (*)(uint32_t, const uint8_t*, size_t);

// checksum(span) of every span on libuv's pool, copied into the Uint32Array that is the last
// element of `keep`; `keep` also holds what the spans point into, so the collector cannot free it
// until the promise settles.
Napi::Value RunChecksums(Napi::Env env, const char* name, std::shared_ptr<std::vector<Span>> spans, Napi::Array keep,
                         ChecksumFn checksum) {
  const uint32_t out_at = keep.Length() - 1;
  // shared_ptr: std::function wants a copyable callable. The worker (and so this reference) is
  // destroyed on the JS thread after it settles, success or not, which is where it must go.
  auto ref = std::make_shared<Napi::Reference<Napi::Array>>(Napi::Persistent(keep));
  auto results = std::make_shared<std::vector<uint32_t>>(spans->size());
  return PromiseWorker::Run(
      env, name, "",
      [spans, results, checksum]() {
        for (size_t i = 0; i < spans->size(); i++) (*results)[i] = checksum(0, (*spans)[i].data, (*spans)[i].length);
        return 0;
      },
      [ref, results, out_at](Napi::Env env) -> Napi::Value {
        // Copied on the JS thread, not written by the pool thread: JS never sees `out` half-filled,
        // and a buffer detached meanwhile is caught here instead of written after free.
        auto out = ref->Value().Get(out_at).As<Napi::Uint32Array>();
        if (out.ElementLength() != results->size()) {
          // Not thrown: PromiseWorker turns a pending exception into the promise's rejection.
          CodeError(env, "ERR_INVALID_STATE", "out was detached or resized before the checksums were done")
              .ThrowAsJavaScriptException();
          return env.Undefined();
        }
        for (size_t i = 0; i < results->size(); i++) out[i] = (*results)[i];
        return env.Undefined();
      });
}

// out[i] = checksum(views[i]) for every view, on libuv's pool: the body of crc32c() and crc32().
Napi::Value ChecksumManyAsync(const Napi::CallbackInfo& info, const char* name, ChecksumFn checksum) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
    throw CodeError(env, "ERR_INVALID_ARG_TYPE", std::string(name) + "(views: ArrayBufferView[], out: Uint32Array)");
  auto views_js = info[0].As<Napi::Array>();
  auto out_js = info[1].As<Napi::Uint32Array>();
  const uint32_t n = views_js.Length();
  if (out_js.ElementLength() != n)
    throw CodeError(env, "ERR_INVALID_ARG_VALUE", "out must have one element per view");

  // Raw pointers are taken here, on the JS thread; the pool thread only reads through them. The
  // views themselves (not the caller's array, which it may change) are held by a reference until
  // the promise settles, so the collector cannot free their memory meanwhile.
  auto spans = std::make_shared<std::vector<Span>>();
  spans->reserve(n);
  Napi::Array keep = Napi::Array::New(env, n + 1);
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value v = views_js.Get(i);
    spans->push_back(ViewSpan(env, v, "views[" + std::to_string(i) + "]"));
    keep.Set(i, v);
  }
  keep.Set(n, out_js);
  return RunChecksums(env, name, spans, keep, checksum);
}

}  // namespace

namespace crc32c {

uint32_t SoftwareRaw(uint32_t crc, const uint8_t* p, size_t n) { return SlicedRaw(kTables, crc, p, n); }

// kXPow2[k] = x^(2^k) mod P: each the square of the one before.
constexpr std::array<uint32_t, 64> MakeXPow2() {
  std::array<uint32_t, 64> t{};
  t[0] = 0x40000000u;  // x^1
  for (size_t k = 1; k < t.size(); k++) t[k] = MulModP(t[k - 1], t[k - 1]);
  return t;
}
constexpr std::array<uint32_t, 64> kXPow2 = MakeXPow2();
static_assert(kXPow2[5] == XPowReflected(kPoly, 32) && kXPow2[10] == XPowReflected(kPoly, 1024), "x^(2^k) by squaring");

uint32_t XPowBytes(uint64_t n) {
  uint32_t r = 0x80000000u;  // x^0
  for (size_t k = 3; n != 0; k++, n >>= 1)
    if (n & 1) r = MulModP(r, kXPow2[k]);
  return r;
}

}  // namespace crc32c

uint32_t Crc32cCombine(uint32_t crc_a, uint32_t crc_b, uint64_t length_b) {
  return crc32c::MulModP(crc32c::XPowBytes(length_b), crc_a) ^ crc_b;
}

const char* Crc32cKernel() { return Current().load(std::memory_order_relaxed)->name; }

bool SetCrc32cKernel(const char* name) {
  const crc32c::Kernel* k = FindKernel(name);
  if (k == nullptr) return false;
  Current().store(k, std::memory_order_relaxed);
  return true;
}

uint32_t Crc32c(uint32_t crc, const uint8_t* data, size_t n) {
  return n == 0 ? crc : ~Raw()(~crc, data, n);
}

uint32_t Crc32cSoftware(uint32_t crc, const uint8_t* data, size_t n) {
  return n == 0 ? crc : ~crc32c::SoftwareRaw(~crc, data, n);
}

uint32_t Crc32(uint32_t crc, const uint8_t* data, size_t n) {
  return n == 0 ? crc : ~IeeeRaw()(~crc, data, n);
}

uint32_t Crc32Software(uint32_t crc, const uint8_t* data, size_t n) {
  return n == 0 ? crc : ~IeeeTablesRaw(~crc, data, n);
}

Napi::Value Crc32cAsync(const Napi::CallbackInfo& info) { return ChecksumManyAsync(info, "crc32c", Crc32c); }

Napi::Value Crc32Async(const Napi::CallbackInfo& info) { return ChecksumManyAsync(info, "crc32", Crc32); }

Napi::Value Crc32RangesAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      !info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
    throw CodeError(env, "ERR_INVALID_ARG_TYPE", "crc32Ranges(view: ArrayBufferView, ranges: Float64Array, out: Uint32Array)");
  const Span whole = ViewSpan(env, info[0], "view");
  auto ranges_js = info[1].As<Napi::Float64Array>();
  auto out_js = info[2].As<Napi::Uint32Array>();
  const size_t n = out_js.ElementLength();
  if (ranges_js.ElementLength() != 2 * n) throw CodeError(env, "ERR_INVALID_ARG_VALUE", "ranges must hold a [start, length] pair per element of out");
  // Checked here, on the JS thread: the pool thread reads only within the view.
  auto spans = std::make_shared<std::vector<Span>>(n);
  for (size_t i = 0; i < n; i++) {
    const double start = ranges_js[2 * i], length = ranges_js[2 * i + 1];
    if (!(start >= 0 && length >= 0 && start + length <= static_cast<double>(whole.length)) || std::floor(start) != start ||
        std::floor(length) != length)
      throw CodeError(env, "ERR_OUT_OF_RANGE", "range " + std::to_string(i) + " is not within the view");
    (*spans)[i] = {whole.data + static_cast<size_t>(start), static_cast<size_t>(length)};
  }
  Napi::Array keep = Napi::Array::New(env, 2);
  keep.Set(0u, info[0]);
  keep.Set(1u, out_js);
  return RunChecksums(env, "crc32", spans, keep, Crc32);
}

Napi::Value Crc32cSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1) throw CodeError(env, "ERR_INVALID_ARG_TYPE", "crc32cSync(view: ArrayBufferView, kernel?: string)");
  const Span s = ViewSpan(env, info[0], "view");
  if (info.Length() < 2 || info[1].IsUndefined()) return Napi::Number::New(env, Crc32c(0, s.data, s.length));
  const std::string name = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "software";
  const crc32c::Kernel* k = FindKernel(name.c_str());
  if (k == nullptr) throw CodeError(env, "ERR_INVALID_ARG_VALUE", "no CRC32C kernel '" + name + "' on this CPU");
  return Napi::Number::New(env, s.length == 0 ? 0 : ~k->raw(~0u, s.data, s.length));
}

Napi::Value Crc32cKernels(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t count;
  const crc32c::Kernel* all = crc32c::Kernels(&count);
  Napi::Array supported = Napi::Array::New(env);
  for (size_t i = 0; i < count; i++)
    if (all[i].supported()) supported.Set(supported.Length(), Napi::String::New(env, all[i].name));
  Napi::Object out = Napi::Object::New(env);
  out.Set("current", Napi::String::New(env, Crc32cKernel()));
  out.Set("supported", supported);
  return out;
}

Napi::Value SetCrc32cKernelJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw CodeError(env, "ERR_INVALID_ARG_TYPE", "setCrc32cKernel(name: string)");
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  const std::string before = Crc32cKernel();
  if (!SetCrc32cKernel(name.c_str())) throw CodeError(env, "ERR_INVALID_ARG_VALUE", "no CRC32C kernel '" + name + "' on this CPU");
  return Napi::String::New(env, before);
}

Napi::Value Crc32cSpreadJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1) throw CodeError(env, "ERR_INVALID_ARG_TYPE", "crc32cSpread(view: ArrayBufferView)");
  const Span s = ViewSpan(env, info[0], "view");
  return Napi::Number::New(env, Crc32cSpread(s.data, s.length));
}

Napi::Value ChecksumThreadsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const unsigned before = ChecksumThreads();
  if (info.Length() > 0 && info[0].IsNumber()) SetChecksumThreads(info[0].As<Napi::Number>().Uint32Value());
  return Napi::Number::New(env, before);
}

Napi::Value Crc32cCombineJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber())
    throw CodeError(env, "ERR_INVALID_ARG_TYPE", "crc32cCombine(crcA: number, crcB: number, lengthB: number)");
  const double length = info[2].As<Napi::Number>().DoubleValue();
  if (!(length >= 0 && length <= 9007199254740991.0) || std::floor(length) != length)
    throw CodeError(env, "ERR_OUT_OF_RANGE", "lengthB must be a safe integer >= 0");
  return Napi::Number::New(env, Crc32cCombine(info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::Number>().Uint32Value(),
                                              static_cast<uint64_t>(length)));
}

Napi::Value Crc32Sync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1) throw CodeError(env, "ERR_INVALID_ARG_TYPE", "crc32Sync(view: ArrayBufferView, crc?: number)");
  const Span s = ViewSpan(env, info[0], "view");
  const uint32_t start = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
  const bool software = info.Length() > 2 && info[2].ToBoolean();
  return Napi::Number::New(env, software ? Crc32Software(start, s.data, s.length) : Crc32(start, s.data, s.length));
}

}  // namespace tfs
