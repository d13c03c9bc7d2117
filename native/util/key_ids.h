// KVCache key ids in one call per batch: SHA-256(namespace hash || key bytes) cut to 16 bytes, with
// the SHA256 the Node binary exports (its OpenSSL), found at run time. Where it is missing the export
// is absent and lib/kvcache hashes with node:crypto instead (the same ids).
#pragma once

#include <napi.h>

namespace tfs {

// True when the process has a SHA256 to call.
bool KeyIdsAvailable();
// keyIds(prefix: Uint8Array, keys: (string | Uint8Array)[], out: Uint8Array) -> undefined:
// out[16 * i, 16 * i + 16) = SHA-256(prefix || keys[i])[0, 16).
Napi::Value KeyIds(const Napi::CallbackInfo& info);

}  // namespace tfs
