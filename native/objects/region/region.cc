#include "objects/region/region.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

namespace tfs {

std::shared_ptr<Region> Region::Map(size_t size, int* err) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t mapped = size == 0 ? page : (size + page - 1) / page * page;
  void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    *err = errno;
    return nullptr;
  }
  // Large buffers on huge pages need fewer page-table walks when the kernel pins them.
  if (mapped >= (2u << 20)) madvise(p, mapped, MADV_HUGEPAGE);
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
