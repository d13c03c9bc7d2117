// The x86 CRC32C kernels. Each is compiled for its instructions alone (target attributes), so the
// rest of the addon (and its callers' CPUs) need not have them; crc32c.cc calls one only after the
// CPU said it has what it needs.
//
// Folding (after Intel's "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ"): 128-bit
// lanes of the message move forward over the bytes after them by carry-less multiplication, until
// one lane is left, which the crc32 instruction reduces to the register. Constants come from
// XPowReflected (crc32c_kernels.h) at compile time.
#include "util/crc32c_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

namespace tfs {
namespace crc32c {
namespace {

#define TFS_SSE42 __attribute__((target("sse4.2")))
#define TFS_PCLMUL __attribute__((target("sse4.2,pclmul")))
#define TFS_VPCLMUL __attribute__((target("sse4.2,pclmul,avx2,vpclmulqdq")))

// One chain of crc32: for CPUs without carry-less multiplication, and the tails of the others.
TFS_SSE42 uint32_t Sse42Raw(uint32_t crc, const uint8_t* p, size_t n) {
  // Single bytes up to an 8-byte boundary, so the wide loads below do not straddle cache lines.
  for (; n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0; p++, n--) crc = _mm_crc32_u8(crc, *p);
  uint64_t c = crc;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t word;
    __builtin_memcpy(&word, p, 8);  // aligned by now; memcpy keeps it free of aliasing rules
    c = _mm_crc32_u64(c, word);
  }
  crc = static_cast<uint32_t>(c);
  for (; n > 0; p++, n--) crc = _mm_crc32_u8(crc, *p);
  return crc;
}

// Three crc32 chains side by side (one chain leaves the unit two thirds idle), joined by linearity:
// reg(A||B) = reg(A) * x^(8|B|) mod P xor reg(B). The product is a carry-less multiply by
// x^(8n-33), reduced by crc32 itself (it multiplies by x^32; the reflected product is one bit off).
constexpr size_t kStride = 1024;
constexpr uint32_t kPastOne = XPowReflected(kPoly, 8 * kStride - 33);   // past kStride bytes
constexpr uint32_t kPastTwo = XPowReflected(kPoly, 16 * kStride - 33);  // past 2 * kStride bytes
static_assert(XPowReflected(kPoly, 8 * 4096 - 33) == 0x82F89C77u, "x^(8*4096-33) mod P, reflected");

TFS_PCLMUL inline uint32_t MovePast(uint64_t crc, uint32_t x_pow) {
  const __m128i product = _mm_clmulepi64_si128(_mm_cvtsi64_si128(static_cast<int64_t>(crc)),
                                               _mm_cvtsi32_si128(static_cast<int>(x_pow)), 0x00);
  return static_cast<uint32_t>(_mm_crc32_u64(0, static_cast<uint64_t>(_mm_cvtsi128_si64(product))));
}

TFS_PCLMUL uint32_t StreamsRaw(uint32_t crc, const uint8_t* p, size_t n) {
  for (; n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0; p++, n--) crc = _mm_crc32_u8(crc, *p);
  uint64_t c0 = crc;
  for (; n >= 3 * kStride; p += 3 * kStride, n -= 3 * kStride) {
    uint64_t c1 = 0, c2 = 0;
    for (size_t i = 0; i < kStride; i += 8) {
      uint64_t w0, w1, w2;
      __builtin_memcpy(&w0, p + i, 8);
      __builtin_memcpy(&w1, p + kStride + i, 8);
      __builtin_memcpy(&w2, p + 2 * kStride + i, 8);
      c0 = _mm_crc32_u64(c0, w0);
      c1 = _mm_crc32_u64(c1, w1);
      c2 = _mm_crc32_u64(c2, w2);
    }
    c0 = MovePast(c0, kPastTwo) ^ MovePast(c1, kPastOne) ^ c2;
  }
  return Sse42Raw(static_cast<uint32_t>(c0), p, n);
}

// The constants that move a 128-bit lane `bits` forward. A lane's low half holds the message's
// earlier (higher-degree) 64 bits, so it goes by x^(bits+32), the high half by x^(bits-32); both
// are shifted left by one, which lines the reflected 95-bit products up with the lane they land in.
struct FoldPair {
  uint64_t low, high;
};
constexpr FoldPair FoldBy(unsigned bits) {
  return {uint64_t{XPowReflected(kPoly, bits + 32)} << 1, uint64_t{XPowReflected(kPoly, bits - 32)} << 1};
}
// The generator checked against the published CRC-32 (IEEE) folding constants, the same derivation.
static_assert((uint64_t{XPowReflected(0xEDB88320u, 4 * 128 + 32)} << 1) == 0x154442bd4u, "IEEE fold-by-4 low");
static_assert((uint64_t{XPowReflected(0xEDB88320u, 4 * 128 - 32)} << 1) == 0x1c6e41596u, "IEEE fold-by-4 high");
static_assert((uint64_t{XPowReflected(0xEDB88320u, 128 + 32)} << 1) == 0x1751997d0u, "IEEE fold-by-1 low");
static_assert((uint64_t{XPowReflected(0xEDB88320u, 128 - 32)} << 1) == 0x0ccaa009eu, "IEEE fold-by-1 high");

TFS_PCLMUL inline __m128i Pair128(FoldPair k) {
  return _mm_set_epi64x(static_cast<int64_t>(k.high), static_cast<int64_t>(k.low));
}
TFS_PCLMUL inline __m128i Load128(const uint8_t* at) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(at)); }

// a moved forward over b (by the distance k was made for), plus b.
TFS_PCLMUL inline __m128i Fold128(__m128i a, __m128i k, __m128i b) {
  return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(a, k, 0x00), _mm_clmulepi64_si128(a, k, 0x11)), b);
}

// The register after one last lane: crc32 over its 16 bytes from 0 is the lane times x^32 mod P.
TFS_PCLMUL inline uint32_t Reduce128(__m128i x) {
  const uint64_t c = _mm_crc32_u64(0, static_cast<uint64_t>(_mm_cvtsi128_si64(x)));
  return static_cast<uint32_t>(_mm_crc32_u64(c, static_cast<uint64_t>(_mm_extract_epi64(x, 1))));
}

// Folds 16-byte lanes from `x` on while whole ones are left, then reduces and finishes the tail.
TFS_PCLMUL inline uint32_t Finish128(__m128i x, const uint8_t* p, size_t n) {
  const __m128i k1 = Pair128(FoldBy(128));
  for (; n >= 16; p += 16, n -= 16) x = Fold128(x, k1, Load128(p));
  return Sse42Raw(Reduce128(x), p, n);
}

// Four xmm lanes over 64-byte blocks. The register enters as the message's first 32 bits.
TFS_PCLMUL uint32_t PclmulRaw(uint32_t crc, const uint8_t* p, size_t n) {
  if (n < 64) return Sse42Raw(crc, p, n);
  const __m128i k4 = Pair128(FoldBy(4 * 128)), k1 = Pair128(FoldBy(128));
  __m128i x0 = _mm_xor_si128(Load128(p), _mm_cvtsi32_si128(static_cast<int>(crc)));
  __m128i x1 = Load128(p + 16), x2 = Load128(p + 32), x3 = Load128(p + 48);
  for (p += 64, n -= 64; n >= 64; p += 64, n -= 64) {
    x0 = Fold128(x0, k4, Load128(p));
    x1 = Fold128(x1, k4, Load128(p + 16));
    x2 = Fold128(x2, k4, Load128(p + 32));
    x3 = Fold128(x3, k4, Load128(p + 48));
  }
  return Finish128(Fold128(Fold128(Fold128(x0, k1, x1), k1, x2), k1, x3), p, n);
}

TFS_VPCLMUL inline __m256i Pair256(FoldPair k) {
  return _mm256_set_epi64x(static_cast<int64_t>(k.high), static_cast<int64_t>(k.low), static_cast<int64_t>(k.high),
                           static_cast<int64_t>(k.low));
}
TFS_VPCLMUL inline __m256i Load256(const uint8_t* at) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at));
}
TFS_VPCLMUL inline __m256i Fold256(__m256i a, __m256i k, __m256i b) {
  return _mm256_xor_si256(_mm256_xor_si256(_mm256_clmulepi64_epi128(a, k, 0x00), _mm256_clmulepi64_epi128(a, k, 0x11)), b);
}

// Four ymm registers (eight lanes) over 128-byte blocks, two lanes per carry-less multiply.
TFS_VPCLMUL uint32_t VpclmulRaw(uint32_t crc, const uint8_t* p, size_t n) {
  if (n < 256) return PclmulRaw(crc, p, n);
  const __m256i k8 = Pair256(FoldBy(8 * 128)), k2 = Pair256(FoldBy(2 * 128));
  __m256i y0 = _mm256_xor_si256(Load256(p), _mm256_zextsi128_si256(_mm_cvtsi32_si128(static_cast<int>(crc))));
  __m256i y1 = Load256(p + 32), y2 = Load256(p + 64), y3 = Load256(p + 96);
  for (p += 128, n -= 128; n >= 128; p += 128, n -= 128) {
    y0 = Fold256(y0, k8, Load256(p));
    y1 = Fold256(y1, k8, Load256(p + 32));
    y2 = Fold256(y2, k8, Load256(p + 64));
    y3 = Fold256(y3, k8, Load256(p + 96));
  }
  __m256i y = Fold256(Fold256(Fold256(y0, k2, y1), k2, y2), k2, y3);
  for (; n >= 32; p += 32, n -= 32) y = Fold256(y, k2, Load256(p));
  const __m128i x = Fold128(_mm256_castsi256_si128(y), Pair128(FoldBy(128)), _mm256_extracti128_si256(y, 1));
  return Finish128(x, p, n);
}

bool HasSse42() { return __builtin_cpu_supports("sse4.2"); }
bool HasPclmul() { return HasSse42() && __builtin_cpu_supports("pclmul"); }
bool HasVpclmul() {
  return HasPclmul() && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("vpclmulqdq");
}
bool Always() { return true; }

constexpr Kernel kKernels[] = {
    {"vpclmul", VpclmulRaw, HasVpclmul},
    {"sse4.2-streams", StreamsRaw, HasPclmul},
    {"pclmul", PclmulRaw, HasPclmul},
    {"sse4.2", Sse42Raw, HasSse42},
    {"software", SoftwareRaw, Always},
};

}  // namespace

const Kernel* Kernels(size_t* count) {
  *count = sizeof kKernels / sizeof kKernels[0];
  return kKernels;
}

}  // namespace crc32c
}  // namespace tfs

#else

namespace tfs {
namespace crc32c {
namespace {
bool Always() { return true; }
constexpr Kernel kKernels[] = {{"software", SoftwareRaw, Always}};
}  // namespace

const Kernel* Kernels(size_t* count) {
  *count = 1;
  return kKernels;
}

}  // namespace crc32c
}  // namespace tfs

#endif
