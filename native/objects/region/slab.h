// Buffers from 64 KiB up to 2 MiB are carved from 2 MiB slabs on huge pages, where each is one
// physical segment. On 4 KiB pages it is a segment per page, and a virtio queue without indirect
// descriptors spends a descriptor per segment: one 1 MiB op fills it. Shared by the process's
// clients; any thread may free.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tfs {

constexpr size_t kHugePage = 2u << 20;

// An anonymous mapping of `mapped` bytes that starts on a 2 MiB boundary (and is marked for huge
// pages) when it spans one or more; MAP_FAILED and errno on failure.
void* MapAligned(size_t mapped);

class Slab;

// A run of a slab's units, as a region holds it.
struct SlabPiece {
  Slab* slab = nullptr;
  uint8_t* data = nullptr;
  uint32_t first = 0;
  uint32_t units = 0;
};

namespace slabs {

constexpr size_t kUnit = 64u << 10;

// Whether a buffer of `size` bytes is carved from a slab.
inline bool Carves(size_t size) { return size >= kUnit && size < kHugePage; }

// `size` zeroed bytes from a slab (a new one if none has room); false with *err set if no slab
// could be mapped.
bool Take(size_t size, SlabPiece* piece, int* err);

// Hands the piece's units back; a slab with none in use is unmapped, except one kept for reuse.
void Give(const SlabPiece& piece);

}  // namespace slabs
}  // namespace tfs
