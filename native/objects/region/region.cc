#include "objects/region/region.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace tfs {

std::shared_ptr<Region> Region::Map(size_t size, int* err, bool carve) {
  if (carve && slabs::Carves(size)) {
    SlabPiece piece;
    if (!slabs::Take(size, &piece, err)) return nullptr;
    std::shared_ptr<Region> region(new Region(piece.data, size, 0));
    region->piece_ = piece;
    return region;
  }
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
  else if (piece_.slab)
    slabs::Give(piece_);
  else
    munmap(data_, mapped_);
}

}  // namespace tfs
