// The CRC32C kernels: the x86 ones (crc32c_x86.cc) and the portable one (crc32c.cc), and the
// arithmetic they share. Every kernel works on the inverted register (the caller does the init and
// final XOR) and gives the same result; crc32c.cc picks the fastest the CPU runs.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tfs {
namespace crc32c {

constexpr uint32_t kPoly = 0x82F63B78u;  // Castagnoli's 0x1EDC6F41, bit-reversed

using RawFn = uint32_t (*)(uint32_t, const uint8_t*, size_t);

struct Kernel {
  const char* name;
  RawFn raw;
  bool (*supported)();  // whether this CPU runs it
};

// Every kernel compiled in, fastest first; the last, "software", runs everywhere.
const Kernel* Kernels(size_t* count);

// Slicing-by-8 tables, any CPU.
uint32_t SoftwareRaw(uint32_t crc, const uint8_t* p, size_t n);

// x^e mod P in the register's reflected form (bit 31 is x^0), for any reflected polynomial: the
// generator of every folding and joining constant, at compile time.
constexpr uint32_t XPowReflected(uint32_t poly, uint64_t e) {
  uint32_t r = 0x80000000u;
  for (uint64_t i = 0; i < e; i++) r = (r & 1) ? (r >> 1) ^ poly : r >> 1;
  return r;
}

// a * b mod P, both reflected: b is multiplied by x once per bit of a, from x^0 up.
constexpr uint32_t MulModP(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (uint32_t bit = 0x80000000u; bit != 0; bit >>= 1) {
    if (a & bit) product ^= b;
    b = (b & 1) ? (b >> 1) ^ kPoly : b >> 1;
  }
  return product;
}

// x^(8n) mod P by squaring: the factor that moves a register past n bytes.
uint32_t XPowBytes(uint64_t n);

}  // namespace crc32c

// The CRC32C of A||B from crc_a = CRC32C(A), crc_b = CRC32C(B) and B's length: CRC32C is linear,
// so A's part is moved past B's bytes (times x^(8|B|) mod P) and the init/final XORs cancel.
uint32_t Crc32cCombine(uint32_t crc_a, uint32_t crc_b, uint64_t length_b);

}  // namespace tfs
