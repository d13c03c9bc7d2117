// Large checksums spread over several cores: a CRC32C over fresh (DMA'd, not cached) memory is
// bound by one core's memory bandwidth, so an op's range is cut into pieces that the calling thread
// and the pool's threads checksum at once, then joined with Crc32cCombine.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tfs {

// CRC32C(data[0, n)) (from 0, like Crc32c(0, data, n)). A range of two 256 KiB pieces or more is
// checksummed piece by piece by the calling thread and the pool's threads at once, each taking the
// next piece left: the caller never waits on a busy pool for more than the pieces already taken.
uint32_t Crc32cSpread(const uint8_t* data, size_t n);

// The threads that checksum one range at most, the caller included: the machine's cores capped at
// 16, or TFS_CHECKSUM_THREADS. A change applies to the checksums that start after it; 1 turns
// spreading off.
void SetChecksumThreads(unsigned threads);
unsigned ChecksumThreads();

}  // namespace tfs
