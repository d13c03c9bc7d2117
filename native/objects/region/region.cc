#include "objects/region/region.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace tfs {

namespace {

constexpr size_t kHugePage = 2u << 20;

// An anonymous mapping of `mapped` bytes that starts on a 2 MiB boundary when it spans one or more:
// the kernel backs only aligned 2 MiB ranges with huge pages, and a buffer on 4 KiB pages reaches
// the device as one segment per page, so an op of a few MiB splits at the queue's segment limit
// (254 segments: about 1 MiB per request) where one on huge pages goes as one request.
void* MapAligned(size_t mapped) {
  if (mapped < kHugePage) return mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const size_t spare = kHugePage - static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* p = mmap(nullptr, mapped + spare, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return p;
  const uintptr_t at = reinterpret_cast<uintptr_t>(p);
  const uintptr_t start = (at + kHugePage - 1) & ~uintptr_t{kHugePage - 1};
  if (start > at) munmap(p, start - at);
  if (at + spare > start) munmap(reinterpret_cast<void*>(start + mapped), at + spare - start);
  madvise(reinterpret_cast<void*>(start), mapped, MADV_HUGEPAGE);
  return reinterpret_cast<void*>(start);
}

}  // namespace

std::shared_ptr<Region> Region::Map(size_t size, int* err) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t mapped = size == 0 ? page : (size + page - 1) / page * page;
  void* p = MapAligned(mapped);
  if (p == MAP_FAILED) {
    *err = errno;
    return nullptr;
  }
  return std::shared_ptr<Region>(new Region(static_cast<uint8_t*>(p), size, mapped));
}

std::shared_ptr<Region> Region::Adopt(uint8_t* data, size_t size, size_t block_size, const hf3fs_iov* iov,
                                      std::unique_ptr<RegionBacking> backing) {
  std::shared_ptr<Region> region(new Region(data, size, 0));
  region->block_size_ = block_size;
  region->iov_ = iov;
  region->backing_ = std::move(backing);
  return region;
}

Region::~Region() {
  for (const Registration& r : registrations_) r.registrar->Unregister(r.slot);
  if (backing_)
    backing_.reset();
  else
    munmap(data_, mapped_);
}

}  // namespace tfs
