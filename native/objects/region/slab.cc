#include "objects/region/slab.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

namespace tfs {

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

// The bits of units [first, first + units) of a slab's 32.
inline uint32_t RunMask(uint32_t first, uint32_t units) { return (units == 32 ? ~0u : (1u << units) - 1) << first; }

class Slab {
 public:
  static constexpr uint32_t kUnits = kHugePage / slabs::kUnit;
  explicit Slab(uint8_t* base) : base_(base) {}
  ~Slab() { munmap(base_, kHugePage); }

  // The first run of `units` free units, or -1.
  int FindRun(uint32_t units) const {
    for (uint32_t first = 0; first + units <= kUnits; first++)
      if ((used_ & RunMask(first, units)) == 0) return static_cast<int>(first);
    return -1;
  }
  // Marks the run used; zeroes what an earlier piece wrote (a fresh page is zero already).
  uint8_t* Claim(uint32_t first, uint32_t units) {
    const uint32_t run = RunMask(first, units);
    uint8_t* data = base_ + first * slabs::kUnit;
    for (uint32_t u = first; u < first + units; u++)
      if (dirty_ & (1u << u)) std::memset(base_ + u * slabs::kUnit, 0, slabs::kUnit);
    used_ |= run;
    dirty_ |= run;
    return data;
  }
  void Free(uint32_t first, uint32_t units) { used_ &= ~RunMask(first, units); }
  bool Empty() const { return used_ == 0; }

 private:
  uint8_t* base_;
  uint32_t used_ = 0;
  uint32_t dirty_ = 0;
};

namespace slabs {
namespace {

// Never destroyed: regions may be freed while the process exits.
struct Heap {
  std::mutex mu;
  std::vector<Slab*> slabs;
  Slab* spare = nullptr;  // an empty slab kept mapped, so alloc/free loops do not map and fault 2 MiB each time
};

Heap& TheHeap() {
  static Heap* heap = new Heap;
  return *heap;
}

}  // namespace

bool Take(size_t size, SlabPiece* piece, int* err) {
  const uint32_t units = static_cast<uint32_t>((size + kUnit - 1) / kUnit);
  Heap& heap = TheHeap();
  std::lock_guard<std::mutex> lock(heap.mu);
  for (Slab* slab : heap.slabs) {
    const int first = slab->FindRun(units);
    if (first < 0) continue;
    if (slab == heap.spare) heap.spare = nullptr;
    *piece = {slab, slab->Claim(first, units), static_cast<uint32_t>(first), units};
    return true;
  }
  void* p = MapAligned(kHugePage);
  if (p == MAP_FAILED) {
    *err = errno;
    return false;
  }
  Slab* slab = new Slab(static_cast<uint8_t*>(p));
  heap.slabs.push_back(slab);
  *piece = {slab, slab->Claim(0, units), 0, units};
  return true;
}

void Give(const SlabPiece& piece) {
  Heap& heap = TheHeap();
  std::lock_guard<std::mutex> lock(heap.mu);
  piece.slab->Free(piece.first, piece.units);
  if (!piece.slab->Empty()) return;
  if (heap.spare == nullptr) {
    heap.spare = piece.slab;
    return;
  }
  for (size_t i = 0; i < heap.slabs.size(); i++) {
    if (heap.slabs[i] != piece.slab) continue;
    heap.slabs[i] = heap.slabs.back();
    heap.slabs.pop_back();
    break;
  }
  delete piece.slab;
}

}  // namespace slabs
}  // namespace tfs
