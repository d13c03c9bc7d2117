// CRC32C (Castagnoli), the checksum every stored payload carries, and CRC-32 (zlib's), the one
// ffrecord files carry: plain functions for native code, and the JS bindings that run them on
// libuv's pool so large payloads never stall the JS thread.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace tfs {

// The standard CRC32C of data[0, n) continued from `crc` (0 to start; pass a previous result to
// extend it over more bytes). Crc32c(0, "123456789", 9) == 0xE3069283. Runs the fastest kernel the
// CPU has (carry-less multiplication folding, the SSE4.2 crc32 instruction, else software).
uint32_t Crc32c(uint32_t crc, const uint8_t* data, size_t n);
// The software version alone, whatever the CPU: for tests, which must cover both.
uint32_t Crc32cSoftware(uint32_t crc, const uint8_t* data, size_t n);
// The kernel Crc32c runs (crc32c_kernels.h), and a change of it to the named one: false, and no
// change, when this CPU lacks it. TFS_CRC32C_KERNEL in the environment names the first one.
const char* Crc32cKernel();
bool SetCrc32cKernel(const char* name);

// crc32c(views: ArrayBufferView[], out: Uint32Array) -> Promise<void>: out[i] = CRC32C(views[i]),
// computed on libuv's pool.
Napi::Value Crc32cAsync(const Napi::CallbackInfo& info);
// crc32cSync(view: ArrayBufferView, kernel?: string) -> number, on the JS thread; `kernel` runs
// that one (tests check each against their oracle).
Napi::Value Crc32cSync(const Napi::CallbackInfo& info);
// Test hooks: crc32cKernels() -> { current, supported: names, fastest first };
// setCrc32cKernel(name) -> the previous name; crc32cCombine(crcA, crcB, lengthB) -> number;
// crc32cSpread(view) -> number, split over the checksum threads as engines do (checksum_pool.h);
// checksumThreads(n?: number) -> the count before, set to n when given.
Napi::Value Crc32cKernels(const Napi::CallbackInfo& info);
Napi::Value Crc32cSpreadJs(const Napi::CallbackInfo& info);
Napi::Value ChecksumThreadsJs(const Napi::CallbackInfo& info);
Napi::Value SetCrc32cKernelJs(const Napi::CallbackInfo& info);
Napi::Value Crc32cCombineJs(const Napi::CallbackInfo& info);

// zlib's crc32(crc, data, n): CRC-32/ISO-HDLC (IEEE 802.3, reflected, init and final XOR
// 0xFFFFFFFF), continued from `crc`. Crc32(0, "123456789", 9) == 0xCBF43926. Carry-less
// multiplication (PCLMULQDQ) when the CPU has it, else table-driven.
uint32_t Crc32(uint32_t crc, const uint8_t* data, size_t n);
// The table-driven version alone, for tests.
uint32_t Crc32Software(uint32_t crc, const uint8_t* data, size_t n);
// crc32(views: ArrayBufferView[], out: Uint32Array) -> Promise<void>: out[i] = CRC-32(views[i]),
// computed on libuv's pool.
Napi::Value Crc32Async(const Napi::CallbackInfo& info);
// crc32Ranges(view, ranges: Float64Array [start, length, ...], out: Uint32Array) -> Promise<void>:
// out[i] = CRC-32 of view[start_i, start_i + length_i), on libuv's pool. One view for a whole
// batch of samples: no JS object per range.
Napi::Value Crc32RangesAsync(const Napi::CallbackInfo& info);
// crc32Sync(view: ArrayBufferView, crc?: number, software?: boolean) -> number, on the JS thread.
Napi::Value Crc32Sync(const Napi::CallbackInfo& info);

}  // namespace tfs
