// The engines' side of IoOp.crc32c (see OpChecksum in engine.h).
#include "engines/engine.h"
#include "util/checksum_pool.h"

namespace tfs {
namespace {

// The op's first byte: ptr advances as short transfers continue, by exactly what was moved.
uint8_t* Start(const Op& op) { return op.ptr - op.done; }

}  // namespace

void SealChecksum(Op& op) {
  if (!NeedsSeal(op)) return;
  uint8_t* start = Start(op);
  const uint32_t crc = Crc32cSpread(start + op.checksum.from, op.checksum.length);
  uint8_t* at = start + op.checksum.at;
  for (int i = 0; i < 4; i++) at[i] = static_cast<uint8_t>(crc >> (8 * i));
  op.checksum.done = true;
}

void TakeChecksum(Op& op) {
  if (op.write || !op.checksum.wanted || op.checksum.done) return;
  // A read that stopped short (end of file) is checksummed over the whole range all the same: the
  // caller compares it with what it expects, and a mismatch is what a short page should give.
  op.batch->crcs[op.index] = Crc32cSpread(Start(op) + op.checksum.from, op.checksum.length);
  op.checksum.done = true;
}

}  // namespace tfs
