// How an op on a local file moves, piece by piece: which descriptor and how many bytes the next
// piece takes, and what its result means. Shared by the two embedded engines (io_uring and the
// thread pool) so they cannot drift apart in what a short transfer, EOF or O_DIRECT means.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include "engines/engine.h"

namespace tfs {

constexpr uint64_t kMaxPiece = 1ull << 30;  // the kernel caps one transfer near 2 GiB anyway

inline bool Aligned(uint64_t v, uint32_t a) { return a == 0 || v % a == 0; }

// Whether a piece of `len` bytes of the op could go O_DIRECT at all: the file allows it, and memory,
// offset and length are aligned to 512 bytes, the least any file system asks.
inline bool MayGoDirect(const Op& op, uint64_t len) {
  return op.file->direct != FileState::Direct::kNever && Aligned(reinterpret_cast<uintptr_t>(op.ptr), 512) &&
         Aligned(op.offset, 512) && Aligned(len, 512);
}

// Sizes the op's next piece and picks its descriptor: the O_DIRECT twin when memory, offset and
// length are aligned for it, the buffered one otherwise (decided per piece, so an op may switch).
// Only a piece aligned to 512 bytes, the least any file system asks, opens the twin.
// Sets op->direct; returns the piece's length and sets *fd.
inline uint64_t NextPiece(Op* op, int* fd) {
  FileState& f = *op->file;
  const uint64_t len = std::min(op->remaining, kMaxPiece);
  const int direct_fd = MayGoDirect(*op, len) ? f.DirectFd() : -1;  // the alignments are read only after it
  op->direct = direct_fd >= 0 &&
               Aligned(reinterpret_cast<uintptr_t>(op->ptr), f.dio_mem_align) &&
               Aligned(op->offset, f.dio_offset_align) && Aligned(len, f.dio_offset_align);
  *fd = op->direct ? direct_fd : f.fd;
  return len;
}

// What comes after a piece that moved `n` bytes.
enum class PieceOutcome {
  kMore,     // go on where it stopped (a short transfer, or the next 1 GiB piece)
  kDone,     // settle with 0: every byte moved, or a read reached the end of the file
  kStalled,  // settle with EIO: a write that moves nothing would loop forever
};

// Counts the piece's bytes and moves the op past them; a read that is done has its checksum taken.
// `registered`: the piece went through a fixed buffer of the engine.
inline PieceOutcome AdvanceOp(Op* op, uint64_t n, bool registered, EngineCounters& counters) {
  (op->write ? counters.write_bytes : counters.read_bytes) += n;
  (op->direct ? counters.direct_bytes : counters.buffered_bytes) += n;
  (registered ? counters.registered_bytes : counters.unregistered_bytes) += n;
  op->done += n;
  op->ptr += n;
  op->offset += n;
  op->remaining -= n;
  if (op->remaining == 0 || (!op->write && n == 0)) {
    TakeChecksum(*op);  // on the engine's thread, while the batch's other ops are still moving
    return PieceOutcome::kDone;
  }
  if (n == 0) return PieceOutcome::kStalled;
  if (n < std::min(op->remaining + n, kMaxPiece)) counters.short_transfers++;
  return PieceOutcome::kMore;
}

}  // namespace tfs
