// Small regions freed with no op in flight, kept mapped and registered for the next alloc() of
// the same size: mmap, munmap and a fixed-buffer update per ring cost far more than the I/O of a
// 4 KiB buffer. JS thread only.
#pragma once

#include <cstring>
#include <memory>
#include <unordered_map>
#include <vector>

#include "objects/region/region.h"

namespace tfs {

class RegionPool {
 public:
  static constexpr size_t kMaxSize = 64 << 10;   // bigger regions are unmapped as before
  static constexpr size_t kMaxBytes = 1 << 20;   // what the pool may hold in all
  static constexpr size_t kMaxRegions = 64;

  // A pooled region of exactly `size` bytes, registered as `registered` says, zeroed as a fresh
  // mapping is; nullptr if there is none.
  std::shared_ptr<Region> Take(size_t size, bool registered) {
    auto it = free_.find(Key(size, registered));
    if (it == free_.end() || it->second.empty()) return nullptr;
    std::shared_ptr<Region> region = std::move(it->second.back());
    it->second.pop_back();
    count_--;
    bytes_ -= size;
    std::memset(region->data(), 0, size);
    return region;
  }

  // Keeps a region nothing else holds (no op in flight, no other table entry); any other is let go.
  void Give(std::shared_ptr<Region> region) {
    const size_t size = region->size();
    if (region.use_count() != 1 || region->iov() != nullptr || size == 0 || size > kMaxSize) return;
    if (count_ >= kMaxRegions || bytes_ + size > kMaxBytes) return;
    free_[Key(size, region->registered())].push_back(std::move(region));
    count_++;
    bytes_ += size;
  }

  // Unmaps everything pooled, handing its registration slots and locked memory back. True if
  // there was anything to let go of (a failed registration is then worth trying again).
  bool Clear() {
    const bool had = count_ > 0;
    free_.clear();
    count_ = 0;
    bytes_ = 0;
    return had;
  }

 private:
  static size_t Key(size_t size, bool registered) { return size * 2 + (registered ? 1 : 0); }
  std::unordered_map<size_t, std::vector<std::shared_ptr<Region>>> free_;
  size_t count_ = 0;
  size_t bytes_ = 0;
};

}  // namespace tfs
