// Page-aligned memory owned by the native layer and lent to JS as an external ArrayBuffer.
// An engine may register it (io_uring fixed buffer, USRBIO iov); the registration is undone when
// the last holder (the ArrayBuffer or an op in flight) lets go, even if the engine closed first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "objects/region/slab.h"

struct hf3fs_iov;

namespace tfs {

// Memory that is not a plain anonymous mapping (a USRBIO iov): freed by its destructor.
class RegionBacking {
 public:
  virtual ~RegionBacking() = default;
};

class Registrar {
 public:
  virtual ~Registrar() = default;
  virtual void Unregister(int slot) = 0;  // thread-safe; a no-op once the engine has closed
};

class Region {
 public:
  // Maps `size` bytes (rounded up to pages), or carves them from a huge-page slab when `carve`
  // and the size suits one (slab.h). Returns nullptr and sets *err on failure.
  static std::shared_ptr<Region> Map(size_t size, int* err, bool carve = true);
  // Wraps memory someone else mapped; `backing` releases it when the region dies. `block_size`
  // (0: one block) is a boundary no single I/O may cross; `iov` is set for USRBIO memory.
  static std::shared_ptr<Region> Adopt(uint8_t* data, size_t size, size_t block_size, const hf3fs_iov* iov,
                                       std::unique_ptr<RegionBacking> backing);
  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  size_t block_size() const { return block_size_; }
  const hf3fs_iov* iov() const { return iov_; }
  bool carved() const { return piece_.slab != nullptr; }
  // A client has several rings; the region has a slot in each ring's table (-1: none there).
  bool registered() const { return !registrations_.empty(); }
  int slot(size_t ring) const { return ring < slots_.size() ? slots_[ring] : -1; }
  void AddRegistration(size_t ring, int slot, std::shared_ptr<Registrar> registrar) {
    if (slots_.size() <= ring) slots_.resize(ring + 1, -1);
    slots_[ring] = slot;
    registrations_.push_back({slot, std::move(registrar)});
  }

 private:
  Region(uint8_t* data, size_t size, size_t mapped) : data_(data), size_(size), mapped_(mapped) {}
  uint8_t* data_;
  size_t size_;
  size_t mapped_;
  size_t block_size_ = 0;
  const hf3fs_iov* iov_ = nullptr;
  std::unique_ptr<RegionBacking> backing_;
  SlabPiece piece_;
  std::vector<int> slots_;
  struct Registration {
    int slot;
    std::shared_ptr<Registrar> registrar;
  };
  std::vector<Registration> registrations_;
};

}  // namespace tfs
