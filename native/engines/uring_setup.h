// One io_uring ring as both the ring threads' engine and the JS thread's direct ring make it.
#pragma once

#include <liburing.h>

#include <algorithm>

namespace tfs {

// A ring of queue_depth + 64 entries (room for cancels and the wake poll, within io_uring's
// limit) and twice as many CQEs; SUBMIT_ALL where the kernel has it. 0, or a negative errno.
inline int InitRing(io_uring* ring, unsigned queue_depth) {
  io_uring_params params{};
  const unsigned entries = std::min(queue_depth + 64, 32768u);
  params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
  params.cq_entries = entries * 2;
  int r = io_uring_queue_init_params(entries, ring, &params);
  if (r == -EINVAL) {  // older kernels: no SUBMIT_ALL
    params = {};
    params.flags = IORING_SETUP_CQSIZE;
    params.cq_entries = entries * 2;
    r = io_uring_queue_init_params(entries, ring, &params);
  }
  return r;
}

}  // namespace tfs
