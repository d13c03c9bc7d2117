// submit()'s arguments and the memory views they name: decoded in submit_args.cc, queued by
// client.cc.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>

#include "objects/client/client.h"

namespace tfs {

// submit()'s arguments, type-checked: the typed arrays' memory stays JS's, kept alive by JsBatch.
struct Client::SubmitArgs {
  bool write = false;
  bool fail_fast = false;
  Napi::Array files, views;
  Napi::Value results_js;
  double* results = nullptr;
  const double* descriptors = nullptr;
  size_t n = 0;
  const double* checksums = nullptr;  // with crcs, or neither
  uint32_t* crcs = nullptr;
  const int32_t* after = nullptr;
};

// Memory JS passed by view (not allocated by the client): a Uint8Array over each ArrayBuffer.
struct Client::View {
  uint8_t* data;
  size_t size;
};

}  // namespace tfs
