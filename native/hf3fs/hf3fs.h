// The 3FS engine's shared parts: what every ring of one client needs to know about its mount, the
// iovs it allocates (registered memory that 3FS moves data into and out of by RDMA), and the engine.
#pragma once

#include <memory>
#include <string>

#include "engines/engine.h"
#include "hf3fs/usrbio_lib.h"

namespace tfs {

struct Hf3fsContext {
  std::shared_ptr<UsrbioLib> lib;
  std::string mount;        // as hf3fs_extract_mount_point found it
  int numa = -1;            // NUMA node for iovs and rings; -1: no binding
  size_t block_size = 0;    // iov block size for alloc(); 0: one block
  uint64_t read_flags = 0;  // HF3FS_IOR_* for the read rings
  size_t bounce_bytes = 0;  // per ring pair, for ops on memory that is not an iov
};

// Creates an iov of `size` bytes on the mount (shared memory registered through 3fs-virt/iovs),
// unlinked from /dev/shm at once so a crash leaves nothing behind. nullptr and *err (errno) on failure.
std::shared_ptr<Region> CreateIovRegion(const Hf3fsContext& context, size_t size, size_t block_size, int* err);

// One read ring and one write ring with their threads. nullptr and *err (errno) on failure.
std::unique_ptr<Engine> MakeHf3fsEngine(const EngineOptions& options, std::shared_ptr<const Hf3fsContext> context,
                                        CompletionSink* sink, int* err);

}  // namespace tfs
