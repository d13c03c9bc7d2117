// CRC32C (Castagnoli), the checksum every stored payload carries: a plain function for native
// code, and the JS bindings that run it on libuv's pool so large payloads never stall the JS thread.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace tfs {

// The standard CRC32C of data[0, n) continued from `crc` (0 to start; pass a previous result to
// extend it over more bytes). Crc32c(0, "123456789", 9) == 0xE3069283. Uses the SSE4.2 crc32
// instruction when the CPU has it, else a table-driven software version.
uint32_t Crc32c(uint32_t crc, const uint8_t* data, size_t n);
// The software version alone, whatever the CPU: for tests, which must cover both.
uint32_t Crc32cSoftware(uint32_t crc, const uint8_t* data, size_t n);

// crc32c(views: ArrayBufferView[], out: Uint32Array) -> Promise<void>: out[i] = CRC32C(views[i]),
// computed on libuv's pool.
Napi::Value Crc32cAsync(const Napi::CallbackInfo& info);
// crc32cSync(view: ArrayBufferView, software?: boolean) -> number, on the JS thread.
Napi::Value Crc32cSync(const Napi::CallbackInfo& info);

}  // namespace tfs
