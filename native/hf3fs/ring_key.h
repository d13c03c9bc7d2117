// A defect of 3FS's client library, worked around: hf3fs_iorcreate4 registers a ring under a key
// that ends in ".f<flags in binary>", and hf3fs_iordestroy unlinks the key rebuilt with the flags
// in decimal. For flags >= 2 (HF3FS_IOR_FORBID_READ_HOLES) that name does not exist, the unlink
// fails unseen, and 3FS's daemon keeps the ring and its shared memory until the process exits.
#pragma once

#include "hf3fs/usrbio.h"

namespace tfs {

// After hf3fs_iordestroy(&ior): unlinks the ring's key as hf3fs_iorcreate4 wrote it, if it is
// still in <mount>/3fs-virt/iovs. Does nothing for flags 0 and 1, which read the same either way.
void UnlinkLeftoverRingKey(const hf3fs_ior& ior);

}  // namespace tfs
