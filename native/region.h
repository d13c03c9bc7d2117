// Page-aligned memory owned by the native layer and lent to JS as an external ArrayBuffer.
// An engine may register it (io_uring fixed buffer, USRBIO iov); the registration is undone when
// the last holder (the ArrayBuffer or an op in flight) lets go, even if the engine closed first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace tfs {

class Registrar {
 public:
  virtual ~Registrar() = default;
  virtual void Unregister(int slot) = 0;  // thread-safe; a no-op once the engine has closed
};

class Region {
 public:
  // Maps `size` bytes (rounded up to pages). Returns nullptr and sets *err on failure.
  static std::shared_ptr<Region> Map(size_t size, int* err);
  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool registered() const { return slot_ >= 0; }
  int slot() const { return slot_; }
  void SetRegistration(int slot, std::shared_ptr<Registrar> registrar) {
    slot_ = slot;
    registrar_ = std::move(registrar);
  }

 private:
  Region(uint8_t* data, size_t size, size_t mapped) : data_(data), size_(size), mapped_(mapped) {}
  uint8_t* data_;
  size_t size_;
  size_t mapped_;
  int slot_ = -1;
  std::shared_ptr<Registrar> registrar_;
};

}  // namespace tfs
