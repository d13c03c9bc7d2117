// Probes for `3fs-client doctor`: what this machine offers (io_uring, RDMA devices through
// libibverbs loaded at run time). Nothing here is on the I/O path.
#pragma once

#include <napi.h>

namespace tfs {

// ioUringProbe() -> { available, errno }
Napi::Value IoUringProbe(const Napi::CallbackInfo& info);
// rdmaDevices() -> { loaded, library, error, devices: [...] }
Napi::Value RdmaDevices(const Napi::CallbackInfo& info);

}  // namespace tfs
