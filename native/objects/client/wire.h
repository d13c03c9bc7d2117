// The submit wire: the typed arrays lib/core/batch.ts hands to Client::Submit, owned by JS and kept
// alive until the batch settles. lib/core/wire.ts is its twin and says which side checks what; the
// addon exports these constants (Client::Wire) so test/core/local/wire.test.ts can compare them.
#pragma once

#include <cmath>
#include <cstddef>

namespace tfs {
namespace wire {

// descriptors: Float64Array, kOpFields per op. kBufferRef is a region id (>= 0), or -(i + 1) for
// views[i] (memory the client did not allocate).
enum OpField : size_t { kFile, kBufferRef, kBufferOffset, kLength, kFileOffset, kOpFields };

// results: Float64Array, kResultFields per op, written by the engine as the op settles.
enum ResultField : size_t { kBytes, kErrno, kResultFields };

// checksums: Float64Array, kChecksumFields per op (offsets within the op; kAt for writes only);
// crcs: Uint32Array, one per op, where a read's CRC32C lands.
enum ChecksumField : size_t { kFrom, kSpan, kAt, kChecksumFields };

// after: Int32Array, one per op: the index of an earlier op it waits for.
// kNone marks "no checksum" (in kFrom) and "waits for nothing" (in after).
constexpr double kNone = -1;
// Offsets, lengths and their sums stay exact doubles: Number.MAX_SAFE_INTEGER.
constexpr double kMaxOffset = 9007199254740991.0;


// A whole number in [0, limit): an index or offset the casts that follow keep exact.
inline bool IsIndex(double v, double limit) { return v >= 0 && v < limit && std::floor(v) == v; }

}  // namespace wire
}  // namespace tfs
