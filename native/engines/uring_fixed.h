// A ring's fixed-buffer table, shared by the ring-thread engine (uring_engine.cc) and the ring the
// JS thread drives (uring_direct.cc).
#pragma once

#include <liburing.h>

#include <mutex>
#include <vector>

#include "engines/engine.h"
#include "objects/region/region.h"

namespace tfs {

// The ring's fixed-buffer table. Slots are handed out to regions; a region gives its slot back
// when it dies, which may be after the ring is gone (then there is nothing left to undo).
class FixedBuffers : public Registrar {
 public:
  FixedBuffers(io_uring* ring, unsigned slots) : ring_(ring) {
    for (unsigned i = slots; i > 0; i--) free_.push_back(static_cast<int>(i - 1));
  }
  // The slot given, or -1 with *why set (kTableFull, or the kernel's errno).
  int Register(void* base, size_t size, int* why) {
    std::lock_guard<std::mutex> lock(mu_);
    *why = ring_ == nullptr ? kNoTable : kTableFull;
    if (ring_ == nullptr || free_.empty()) return -1;
    int slot = free_.back();
    iovec iov{base, size};
    __u64 tag = 0;
    const int r = io_uring_register_buffers_update_tag(ring_, slot, &iov, &tag, 1);
    if (r != 1) {
      *why = r < 0 ? -r : EIO;
      return -1;
    }
    free_.pop_back();
    return slot;
  }
  void Unregister(int slot) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (ring_ == nullptr) return;
    iovec iov{nullptr, 0};
    __u64 tag = 0;
    // The kernel keeps the pages pinned until requests still using the slot complete.
    io_uring_register_buffers_update_tag(ring_, slot, &iov, &tag, 1);
    free_.push_back(slot);
  }
  void Detach() {
    std::lock_guard<std::mutex> lock(mu_);
    ring_ = nullptr;
  }

 private:
  std::mutex mu_;
  io_uring* ring_;
  std::vector<int> free_;
};

}  // namespace tfs
