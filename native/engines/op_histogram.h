// Per-op distributions the engines record as ops settle: log-linear histograms of relaxed atomic
// counters (no lock, no allocation) and errno counts. JS reads the buckets out and computes the
// summaries per interval itself (lib/core/metrics.ts), so the native side stays this small.
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>

namespace tfs {

// Buckets: values 0..7 have one each; above that, every power of two [2^e, 2^(e+1)) is split into
// 8 equal sub-buckets, so a bucket's width is at most 1/8 of its lower bound (12.5% relative
// error), over the whole uint64 range. lib/core/metrics.ts mirrors this layout (bucketBounds).
inline constexpr unsigned kHistogramSubBits = 3;
inline constexpr unsigned kHistogramSub = 1u << kHistogramSubBits;
inline constexpr unsigned kHistogramBuckets = (64 - kHistogramSubBits + 1) * kHistogramSub;  // 496

inline unsigned HistogramBucket(uint64_t v) {
  if (v < kHistogramSub) return static_cast<unsigned>(v);
  const unsigned e = 63 - static_cast<unsigned>(__builtin_clzll(v));  // e >= kHistogramSubBits
  const unsigned sub = static_cast<unsigned>(v >> (e - kHistogramSubBits)) & (kHistogramSub - 1);
  return (e - kHistogramSubBits + 1) * kHistogramSub + sub;
}

struct Histogram {
  std::atomic<uint64_t> buckets[kHistogramBuckets] = {};
  std::atomic<uint64_t> sum{0};  // exact, so the mean is exact though the buckets are not

  void Record(uint64_t v) {
    buckets[HistogramBucket(v)].fetch_add(1, std::memory_order_relaxed);
    sum.fetch_add(v, std::memory_order_relaxed);
  }
};

// Failed ops by errno; errnos past the table (none on Linux today) share the last slot.
inline constexpr unsigned kErrnoSlots = 160;

struct OpDistributions {
  // [0] reads, [1] writes. Latency in ns from the batch's submission to the op's settlement
  // (3FS's storage_client.overall_latency); bandwidth in bytes/s of each op that moved bytes
  // (storage_client.request_bw).
  Histogram latency_ns[2];
  Histogram bandwidth[2];
  std::atomic<uint64_t> errnos[kErrnoSlots] = {};

  void Record(bool write, uint64_t latency, uint64_t bytes, int err) {
    latency_ns[write].Record(latency);
    if (bytes > 0 && err == 0) bandwidth[write].Record(static_cast<uint64_t>(static_cast<double>(bytes) * 1e9 / static_cast<double>(latency > 0 ? latency : 1)));
    if (err != 0) errnos[static_cast<unsigned>(err) < kErrnoSlots ? err : kErrnoSlots - 1].fetch_add(1, std::memory_order_relaxed);
  }
};

inline uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace tfs
